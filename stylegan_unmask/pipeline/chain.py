"""``unmask(photo)``: the whole chain, photo in, unmasked photo out.

This is the one function the CLI (``project``), the folder runs and the
notebook call, so they cannot drift apart. It is three stages, so that a
folder run can optimise several photos in one projector call:

    prepare_face()   load -> landmarks -> align -> mask -> projection target  (face/frontend.py)
    project_faces()  one masked W+ projection for 1..N prepared faces          (projector/)
    finish_face()    upsample -> Poisson blend -> paste back                   (face/blend.py)

Settings come as two objects: a :class:`~stylegan_unmask.projector.ProjectionConfig`
(how to optimise) and a :class:`~stylegan_unmask.face.frontend.FaceOptions`
(how the photo becomes an aligned face and a mask).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .. import DEFAULT_NETWORK
from ..errors import UnmaskError
from ..face.blend import paste_back, poisson_blend
from ..face.frontend import FaceOptions, PreparedFace, prepare_face, resize_rgb
from ..face.landmarks import FaceLandmarks
from ..images import LoadedImage
from ..networks.generate import to_uint8
from ..projector import ProjectionConfig, ProjectionResult, project
from ..runtime.device import module_device, resolve_device
from .network import get_features, get_network, network_crop_scale, network_source
from .video import DEFAULT_VIDEO_FRAMES, FrameRecorder

__all__ = ["UnmaskResult", "unmask", "project_faces", "finish_face", "run_settings"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class UnmaskResult:
    """Everything one unmasking produced; ``save_outputs`` writes it to a folder."""

    original: LoadedImage
    aligned: object  # AlignedFace, or the given aligned image (np.ndarray) with --aligned
    aligned_image: np.ndarray  # SxSx3 uint8
    mask_aligned: np.ndarray  # SxS bool
    landmarks: Optional[FaceLandmarks]
    mask_source: str
    projection: ProjectionResult
    projection_image: np.ndarray  # RxRx3 uint8, raw generator output
    blended_aligned: np.ndarray  # SxSx3 uint8: aligned photo with the generated face Poisson-blended in
    unmasked: np.ndarray  # original size: the photo with the face beneath the mask
    settings: Dict[str, object]
    network_source: str
    timings: Dict[str, float]
    frames: List[np.ndarray] = field(default_factory=list)  # optimisation video frames (record_video)
    # With samples > 1: every completion, best first (by visible-region loss); this result is completions[0].
    completions: List["UnmaskResult"] = field(default_factory=list)

    @property
    def losses(self) -> Dict[str, np.ndarray]:
        return self.projection.losses

    @property
    def final_loss(self) -> float:
        return self.projection.final_loss

    @property
    def psnr(self) -> float:
        return self.projection.psnr

    @property
    def is_aligned_input(self) -> bool:
        return not hasattr(self.aligned, "transform")


# ----------------------------------------------------------------------------- the one function


def unmask(photo, config: Optional[ProjectionConfig] = None, face: Optional[FaceOptions] = None, *,
           network: PathLike = DEFAULT_NETWORK, G=None, device=None, callback: Optional[Callable] = None,
           progress: bool = True, record_video: bool = False, video_every: Optional[int] = None,
           feather_px: Optional[float] = None, samples: int = 1) -> UnmaskResult:
    """Show the face beneath the mask in ``photo`` (path, LoadedImage or RGB array).

    ``config``: how to project (default: ``ProjectionConfig()``); ``face``:
    how to find the face and its mask (default: ``FaceOptions()``).
    ``network``: registry name, URL or checkpoint path (ignored when ``G`` is
    given: pass a loaded generator to reuse it). ``callback(step, info)``
    receives a :class:`~stylegan_unmask.projector.ProjectionStep` every
    ``config.preview_every`` steps (return True to stop early). With
    ``record_video`` a frame is kept every ``video_every`` steps.
    ``samples`` K > 1: K completions, forked from one projection and optimised as one batch;
    the result is the best by visible-region loss and lists all K in
    ``completions`` (plausible alternatives under the mask, not guesses of it).
    """
    if samples > 1 and record_video:
        raise UnmaskError("a video records one projection: use --save-video without --samples")
    face = face if face is not None else FaceOptions()
    t_start = t0 = time.perf_counter()
    if G is None:
        G = get_network(network, device)
    dev = module_device(G) if device is None else resolve_device(device)
    t_network = time.perf_counter() - t0
    config = (config if config is not None else ProjectionConfig()).for_device(dev).for_network(G)
    prepared = prepare_face(photo, G.img_resolution, face, crop_scale=network_crop_scale(G))
    t0 = time.perf_counter()
    results, frames = project_faces(G, [prepared], config, device=dev, callback=callback, progress=progress,
                                    record_video=record_video, video_every=video_every, samples=samples)
    t_project = time.perf_counter() - t0
    settings = run_settings(network_source(G), config, margin=face.margin, region=face.region, mask=face.mask,
                            aligned=face.aligned, backend=face.backend, device=str(dev), samples=samples)
    result = finish_samples(prepared, results, settings=settings, source=network_source(G), frames=frames[0],
                            feather_px=feather_px)
    result.timings["network"] = t_network
    result.timings["projection"] = t_project
    result.timings["total"] = time.perf_counter() - t_start
    return result


def run_settings(source: str, config: ProjectionConfig, samples: int = 1, **extra) -> Dict[str, object]:
    """What a result depends on (saved in the latent file and the folder runs' done markers)."""
    several = {"samples": int(samples), "sample_fork": config.sample_fork} if samples > 1 else {}
    return {
        "network": source, "steps": config.steps, "lambda_perceptual": config.lambda_perceptual,
        "init": config.init, "seed": config.seed, "optimize_noise": config.optimize_noise,
        "noise_mode": config.noise_mode, "force_fp32": config.force_fp32,
        "schedule": config.schedule, "precision": config.precision, "w_prior": config.w_prior,
        **several, **{k: (str(v) if isinstance(v, Path) else v) for k, v in extra.items()},
    }


# ----------------------------------------------------------------------------- stage 2: project


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float() / 127.5 - 1.0


def project_faces(G, faces: Sequence[PreparedFace], config: ProjectionConfig, device=None, callback=None,
                  progress: bool = True, record_video: bool = False, video_every: Optional[int] = None,
                  preview_every: Optional[int] = None, samples: int = 1):
    """One projector call for all ``faces`` -> (results, frames per face); ``samples`` results per face
    (face-major) when ``samples`` > 1.

    ``callback(step, info)`` is the projector's (see ``ProjectionStep``); it is
    called every ``preview_every`` steps (default: the config's). With
    ``record_video`` a frame is captured every ``video_every`` steps.
    """
    if not faces:
        return [], []
    dev = module_device(G) if device is None else resolve_device(device)
    target = torch.stack([_to_tensor(f.target) for f in faces])
    hidden = torch.stack([torch.from_numpy(f.hidden)[None] for f in faces])
    preview_every = int(preview_every if preview_every is not None else config.preview_every)
    recorder = None
    if record_video:
        every = video_every or max(1, config.steps // DEFAULT_VIDEO_FRAMES)
        recorder = FrameRecorder(faces, every)
    wanted = callback is not None or recorder is not None
    cadences = [c for c in ((preview_every if callback is not None else 0), (recorder.every if recorder else 0))
                if c > 0]
    # The projector calls back every `preview_every` steps (0: only after the last step).
    cfg = dataclasses.replace(config, preview_every=math.gcd(*cadences) if cadences else 0) if wanted else config

    def on_step(step, info):
        stop = None
        if recorder is not None:
            recorder(step, info)
        last = step == info.steps - 1
        if callback is not None and (last or (preview_every > 0 and step % preview_every == 0)):
            stop = callback(step, info)
        return stop

    features = get_features(cfg.perceptual_layers, dev) if cfg.lambda_perceptual > 0 else None
    results = project(G, target, hidden, cfg, device=dev, callback=on_step if wanted else None,
                      progress=progress, features=features, samples=samples)
    frames = recorder.frames if recorder is not None else [[] for _ in faces]
    return results, frames


# ----------------------------------------------------------------------------- stage 3: blend


def finish_samples(face: PreparedFace, projections: Sequence[ProjectionResult], **finish) -> UnmaskResult:
    """One face's projections (one, or its K samples) finished, best first by visible-region loss; the best
    result lists every completion in ``completions`` when there are several."""
    ranked = sorted(projections, key=lambda r: r.final_loss)
    completions = [finish_face(face, r, **finish) for r in ranked]
    result = completions[0]
    result.completions = completions if len(completions) > 1 else []
    return result


def finish_face(face: PreparedFace, projection: ProjectionResult, *, settings: Dict[str, object], source: str,
                frames: Optional[List[np.ndarray]] = None, feather_px: Optional[float] = None) -> UnmaskResult:
    """Generated face -> aligned blend -> paste back into the photo."""
    timings = dict(face.timings)
    t0 = time.perf_counter()
    projection_image = to_uint8(projection.image[None])[0]
    generated_up = resize_rgb(projection_image, face.work_size)
    blended = poisson_blend(face.aligned_image, generated_up, face.mask_aligned)
    timings["blend"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if face.is_aligned_input:
        unmasked = blended
    else:
        unmasked = paste_back(face.original.pixels, blended, face.aligned.transform, face.mask_aligned,
                              feather_px=feather_px)
    timings["paste_back"] = time.perf_counter() - t0
    return UnmaskResult(
        original=face.original, aligned=face.aligned if face.aligned is not None else face.aligned_image,
        aligned_image=face.aligned_image, mask_aligned=face.mask_aligned, landmarks=face.landmarks,
        mask_source=face.mask_source, projection=projection, projection_image=projection_image,
        blended_aligned=blended, unmasked=unmasked, settings=dict(settings), network_source=source,
        timings=timings, frames=list(frames or []))
