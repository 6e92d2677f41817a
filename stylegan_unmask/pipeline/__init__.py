"""One photo through the whole chain: ``unmask(photo)``, the function the CLI and the notebook call.

=================  ============================================================
``chain``          :func:`unmask` = prepare (``face``) -> project
                   (``projector``) -> finish (``face.blend``)
``network``        the loaded network and features, cached per process
``outputs``        ``save_outputs``: the result files and ``projected_w.npz``;
                   ``save_chosen``: the completion a user picked
``video``          the optimisation as frames and an mp4/GIF
``pictures``       mask overlays, comparison grids, thumbnails
=================  ============================================================
"""
from ..face.frontend import FaceOptions, PreparedFace, prepare_face
from ..projector import ProjectionConfig
from .chain import UnmaskResult, finish_face, finish_samples, project_faces, run_settings, unmask
from .network import get_network, network_crop_scale, network_source
from .outputs import OUTPUT_FILES, comparison_image, latent_archive, pick_completion, save_chosen, save_outputs

__all__ = ["unmask", "save_outputs", "UnmaskResult", "ProjectionConfig", "FaceOptions", "PreparedFace",
           "prepare_face", "project_faces", "finish_face", "finish_samples", "run_settings", "get_network", "network_source",
           "network_crop_scale", "OUTPUT_FILES", "comparison_image", "latent_archive", "pick_completion", "save_chosen"]
