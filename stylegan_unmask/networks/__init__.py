"""The StyleGAN2 generator, with the official module and parameter names so official weights load as-is.

=================  ============================================================
``stylegan2``      :class:`Generator` (mapping + synthesis), on the ops in
                   ``torch_utils/ops``
``generate``       seeds and saved W+ latents -> images, as NVIDIA's
                   ``gen_images.py``; the float -> uint8 conversion
=================  ============================================================
"""
from .stylegan2 import FFHQ_1024_KWARGS, Generator, MappingNetwork, SynthesisNetwork

__all__ = ["FFHQ_1024_KWARGS", "Generator", "MappingNetwork", "SynthesisNetwork"]
