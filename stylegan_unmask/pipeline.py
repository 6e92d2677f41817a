"""``unmask(photo)``: the whole chain, photo in, unmasked photo out.

This is the one function the CLI (``project``, ``batch``) and the notebook
call, so they cannot drift apart. It is split into three stages so that the
batch runner can optimise several photos in one projector call:

    prepare_face()   load -> landmarks -> align -> mask -> projection target
    project_faces()  one masked W+ projection for 1..N prepared faces
    finish_face()    upsample -> Poisson blend -> paste back

Resolutions. The face is aligned at a *working size* S, not at the network's
resolution R: S = the face square's side in the photo (its native detail),
clamped to [R, 1024]. The projection target is the aligned face reduced to R
(Lanczos), and its hidden mask is the aligned mask reduced conservatively (a
network pixel counts as hidden if any photo pixel under it is hidden, so no
face-mask colour leaks into the loss). The generated face is then upsampled
to S and Poisson-blended into the aligned photo at S, where the boundary
conditions come from the real skin at full detail, and only the masked region
is warped back into the photo. With the official 1024-px FFHQ network S = R =
1024, exactly the FFHQ crop; with a smaller network (the 64-px test network,
256-px models) the blend still happens at the photo's detail, instead of
pasting a 64-px crop back into a large photo.
"""
from __future__ import annotations

import io
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .errors import InputImageError, UnmaskError
from .images import LoadedImage, as_rgb_uint8, ensure_not_input, load_image, save_image
from .atomic import atomic_file, atomic_write_bytes
from .checkpoints.registry import DEFAULT_NETWORK  # one default for every entry point
from .report import comparison_grid, mask_overlay

PathLike = Union[str, "os.PathLike[str]"]

#: Largest aligned working size (the FFHQ crop size); larger faces are reduced to it.
MAX_WORK_SIZE = 1024
#: Video frames are captured this many times over a run unless ``video_every`` says otherwise.
DEFAULT_VIDEO_FRAMES = 100
VIDEO_FPS = 15

#: Files ``save_outputs`` always writes (``projection.mp4``/``.gif`` too with a video).
OUTPUT_FILES = ("unmasked.png", "aligned.png", "mask.png", "projection.png", "comparison.png", "projected_w.npz")


# ----------------------------------------------------------------------------- data


@dataclass
class PreparedFace:
    """A photo made ready for projection (everything before the optimisation)."""

    original: LoadedImage
    aligned: Optional["AlignedFace"]  # None when the input already was an aligned face  # noqa: F821
    aligned_image: np.ndarray  # SxSx3 uint8: the aligned photo at the working size
    mask_aligned: np.ndarray  # SxS bool, True = hidden by the face mask
    landmarks: Optional[object]  # FaceLandmarks in the photo (None for an aligned input with a user mask)
    mask_source: str  # 'landmarks' or the user mask's path
    target: np.ndarray  # RxRx3 uint8: the projection target (aligned photo at network resolution)
    hidden: np.ndarray  # RxR bool: the mask at network resolution (conservative)
    is_aligned_input: bool
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def work_size(self) -> int:
        return int(self.aligned_image.shape[0])


@dataclass
class UnmaskResult:
    """Everything one unmasking produced; ``save_outputs`` writes it to a folder."""

    original: LoadedImage
    aligned: object  # AlignedFace, or the given aligned image (np.ndarray) with --aligned
    aligned_image: np.ndarray  # SxSx3 uint8
    mask_aligned: np.ndarray  # SxS bool
    landmarks: Optional[object]
    mask_source: str
    projection: "ProjectionResult"  # noqa: F821
    projection_image: np.ndarray  # RxRx3 uint8, raw generator output
    blended_aligned: np.ndarray  # SxSx3 uint8: aligned photo with the generated face Poisson-blended in
    unmasked: np.ndarray  # original size: the photo with the face beneath the mask
    settings: Dict[str, object]
    network_source: str
    timings: Dict[str, float]
    frames: List[np.ndarray] = field(default_factory=list)  # optimisation video frames (record_video)

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


# ----------------------------------------------------------------------------- networks


_NETWORKS: Dict[Tuple[str, str], object] = {}
_FEATURES: Dict[Tuple[Tuple[str, ...], str], object] = {}
_CACHE_LOCK = threading.Lock()


def resolve_device(device=None):
    """None/'auto' -> CUDA when available, else CPU."""
    from .generate import resolve_device as _resolve

    import torch

    if isinstance(device, torch.device):
        return device
    return _resolve(device)


def _spec_key(spec) -> str:
    p = Path(str(spec)).expanduser()
    if p.exists():
        st = p.stat()
        return f"{p.resolve()}@{st.st_mtime_ns}:{st.st_size}"
    return str(spec)


def get_network(spec: PathLike = DEFAULT_NETWORK, device=None):
    """``load_generator`` with a per-process cache (by spec and device).

    Loading the 1024-px checkpoint takes seconds; the notebook and the batch
    runner call ``unmask`` many times with the same network.
    """
    from .checkpoints import load_generator

    dev = resolve_device(device)
    key = (_spec_key(spec), str(dev))
    with _CACHE_LOCK:
        G = _NETWORKS.get(key)
        if G is None:
            G = load_generator(str(spec), device=dev)
            _NETWORKS[key] = G
    return G


def _get_features(layers: Sequence[str], device):
    from .perceptual import VGG16Features

    key = (tuple(layers), str(device))
    with _CACHE_LOCK:
        f = _FEATURES.get(key)
        if f is None:
            f = VGG16Features(tuple(layers)).to(device).eval()
            _FEATURES[key] = f
    return f


def network_source(G) -> str:
    """Where a generator came from (``G.source``), for reports and the latent file."""
    return str(getattr(G, "source", None) or "<in-memory network>")


def network_crop_scale(G) -> float:
    """The alignment zoom ``G`` was trained with (recorded in our network files; NVIDIA's: 1.0)."""
    return float(getattr(G, "crop_scale", 1.0))


def network_device(G):
    """The device a loaded generator lives on."""
    import torch

    for t in G.parameters():
        return t.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- stage 1: prepare


def _as_loaded(photo) -> LoadedImage:
    if isinstance(photo, LoadedImage):
        return photo
    if isinstance(photo, (str, os.PathLike)):
        return load_image(photo)
    rgb = as_rgb_uint8(photo)
    h, w = rgb.shape[:2]
    return LoadedImage(pixels=rgb, path=None, original_size=(w, h), exif_orientation=1, original_mode="RGB",
                       format=None)


def _load_landmark_points(landmarks) -> Optional[np.ndarray]:
    """68x2 points from a FaceLandmarks, an array, or a .npy/.json/.txt/.csv file (never unpickled)."""
    if landmarks is None:
        return None
    if hasattr(landmarks, "points"):
        return np.asarray(landmarks.points, dtype=np.float64)
    if isinstance(landmarks, (str, os.PathLike)):
        from .landmarks import load_landmarks_file

        return np.asarray(load_landmarks_file(landmarks), dtype=np.float64)
    return np.asarray(landmarks, dtype=np.float64)  # validated by find_landmarks


def work_size_for(qsize: float, resolution: int, max_size: int = MAX_WORK_SIZE) -> int:
    """The aligned working size: the face square's side in the photo, clamped to [R, max(R, max_size)]."""
    return int(min(max(int(round(qsize)), int(resolution)), max(int(resolution), int(max_size))))


def _resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    resample = Image.LANCZOS if rgb.shape[0] > size else Image.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize((size, size), resample))


def _reduce_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Shrink a bool mask to size x size; a pixel is hidden if any part of it is hidden."""
    if mask.shape == (size, size):
        return mask.copy()
    import cv2

    if mask.shape[0] < size:  # enlarging (an aligned input smaller than the network)
        return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    frac = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return frac > 1e-6


def prepare_face(photo, resolution: int, *, mask: Optional[PathLike] = None, aligned: bool = False,
                 landmarks=None, box=None, face_index: Optional[int] = None, backend: str = "auto",
                 margin: Optional[float] = None, work_size: Optional[int] = None,
                 crop_scale: float = 1.0) -> PreparedFace:
    """Load, detect, align and mask one photo; returns what the projector needs.

    ``crop_scale``: the FFHQ-crop zoom the network was trained with
    (``G.crop_scale``; 1.0 for NVIDIA's networks), so the photo is framed as
    the network's training faces were.

    ``mask``: a user mask PNG (255 = hidden). For a normal photo it is drawn
    over the photo (same size) and warped into aligned space; with
    ``aligned=True`` it is drawn over the aligned face. Without a mask, the
    region comes from the 68 landmarks (``margin`` passed to
    ``mask_from_landmarks``). ``work_size`` overrides the automatic choice
    described in the module docstring.
    """
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    original = _as_loaded(photo)
    timings["load"] = time.perf_counter() - t0
    path = original.path
    pts = _load_landmark_points(landmarks)
    mask_kwargs = {} if margin is None else {"margin": margin}

    if aligned:
        return _prepare_aligned_input(original, resolution, mask, pts, box, face_index, backend, mask_kwargs, timings)

    from .align import align_face, ffhq_square
    from .landmarks import find_landmarks
    from .mask import load_user_mask, mask_from_landmarks

    t0 = time.perf_counter()
    lm = find_landmarks(original.pixels, backend=backend, face_index=face_index, box=box, points=pts, path=path)
    timings["landmarks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if work_size is None:
        _, x, _ = ffhq_square(lm.points, crop_scale)
        work_size = work_size_for(float(np.hypot(*x) * 2), resolution)
    face = align_face(original.pixels, lm.points, output_size=int(work_size), crop_scale=crop_scale)
    timings["align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if mask is not None:
        user = load_user_mask(mask, expected_size=original.size)
        hidden_aligned, _ = face.transform.warp_from_source(user)
        mask_source = str(mask)
    else:
        hidden_aligned = mask_from_landmarks(face.landmarks, face.image.shape[:2], **mask_kwargs)
        mask_source = "landmarks"
    hidden_aligned = np.asarray(hidden_aligned, dtype=bool)
    _check_mask(hidden_aligned, mask if mask is not None else path, face.image.shape[0])
    target = _resize_rgb(face.image, resolution)
    hidden = _reduce_mask(hidden_aligned, resolution)
    timings["mask"] = time.perf_counter() - t0
    return PreparedFace(original=original, aligned=face, aligned_image=face.image, mask_aligned=hidden_aligned,
                        landmarks=lm, mask_source=mask_source, target=target, hidden=hidden,
                        is_aligned_input=False, timings=timings)


def _prepare_aligned_input(original: LoadedImage, resolution: int, mask, pts, box, face_index, backend,
                           mask_kwargs, timings) -> PreparedFace:
    """--aligned: the photo already is an FFHQ-aligned face; no alignment, no paste back."""
    from .mask import load_user_mask, mask_from_landmarks

    w, h = original.size
    if w != h:
        raise InputImageError(original.path, f"--aligned expects a square FFHQ-aligned face, got {w}x{h} pixels")
    lm = None
    t0 = time.perf_counter()
    if mask is not None:
        hidden_aligned = np.asarray(load_user_mask(mask, expected_size=original.size), dtype=bool)
        mask_source = str(mask)
    else:
        from .landmarks import find_landmarks

        lm = find_landmarks(original.pixels, backend=backend, face_index=face_index, box=box, points=pts,
                            path=original.path)
        timings["landmarks"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hidden_aligned = np.asarray(mask_from_landmarks(lm.points, (h, w), **mask_kwargs), dtype=bool)
        mask_source = "landmarks"
    _check_mask(hidden_aligned, mask if mask is not None else original.path, w)
    target = _resize_rgb(original.pixels, resolution)
    hidden = _reduce_mask(hidden_aligned, resolution)
    timings["mask"] = time.perf_counter() - t0
    return PreparedFace(original=original, aligned=None, aligned_image=original.pixels, mask_aligned=hidden_aligned,
                        landmarks=lm, mask_source=mask_source, target=target, hidden=hidden,
                        is_aligned_input=True, timings=timings)


def _check_mask(hidden: np.ndarray, where, size: int) -> None:
    if hidden.shape != (size, size):
        raise InputImageError(where, f"mask is {hidden.shape[1]}x{hidden.shape[0]} in aligned space, "
                                     f"expected {size}x{size}")
    if not hidden.any():
        raise InputImageError(where, "the mask region is empty in the aligned face: nothing to unmask")
    if hidden.all():
        raise InputImageError(where, "the mask hides the whole aligned face: nothing visible to project from")


# ----------------------------------------------------------------------------- stage 2: project


def projection_config(steps: int = 1000, lambda_perceptual: float = 0.8, init: str = "avg", seed: int = 0,
                      optimize_noise: bool = False, noise_mode: str = "const", device=None, **extra):
    """A :class:`~stylegan_unmask.projector.ProjectionConfig` from the user-facing options.

    Off CUDA the generator runs in float32 (``force_fp32``, recorded in
    ``projected_w.npz``): CPUs have no fast float16 convolutions. On CUDA the
    checkpoint's mixed precision is kept, as in NVIDIA's projector.
    """
    from .projector import ProjectionConfig

    if "force_fp32" not in extra:
        extra["force_fp32"] = resolve_device(device).type != "cuda"
    try:
        return ProjectionConfig(steps=steps, lambda_perceptual=lambda_perceptual, init=init, seed=seed,
                                optimize_noise=optimize_noise, noise_mode=noise_mode, **extra)
    except ValueError as exc:
        raise UnmaskError(f"invalid projection settings: {exc}") from None


def _to_tensor(rgb: np.ndarray):
    import torch

    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float() / 127.5 - 1.0


class FrameRecorder:
    """Collects optimisation frames (target | current | composite) from the projector callback.

    The composite is the current generated face inside the mask and the
    target outside, i.e. what the result would look like if stopped now.
    """

    def __init__(self, faces: Sequence[PreparedFace], every: int, panel_size: Optional[int] = None):
        self.every = max(1, int(every))
        self.faces = list(faces)
        r = faces[0].target.shape[0]
        self.panel_size = panel_size or int(min(512, max(256, r)))
        self.panel_size -= self.panel_size % 16
        self.frames: List[List[np.ndarray]] = [[] for _ in faces]
        self._targets = [mask_overlay(f.target, f.hidden) for f in faces]

    def __call__(self, step: int, info) -> None:
        if step % self.every and step != info.steps - 1:
            return
        from .generate import to_uint8

        current = to_uint8(info.images)
        for i, face in enumerate(self.faces):
            composite = face.target.copy()
            composite[face.hidden] = current[i][face.hidden]
            loss = float(info.losses["total"][i])
            frame = comparison_grid([("target (mask tinted)", self._targets[i]),
                                     (f"step {step + 1}/{info.steps}", current[i]),
                                     (f"composite, loss {loss:.4f}", composite)], panel_size=self.panel_size)
            self.frames[i].append(_pad_to_multiple(frame, 16))


def _pad_to_multiple(frame: np.ndarray, k: int) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = (-h) % k, (-w) % k
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return frame


def project_faces(G, faces: Sequence[PreparedFace], config, device=None, callback=None, progress: bool = True,
                  record_video: bool = False, video_every: Optional[int] = None,
                  preview_every: Optional[int] = None):
    """One projector call for all ``faces`` -> (results, frames per face).

    ``callback(step, info)`` is the projector's (see ``ProjectionStep``); it is
    called every ``preview_every`` steps (default: the config's). With
    ``record_video`` a frame is captured every ``video_every`` steps.
    """
    import dataclasses

    import torch

    from .projector import project

    if not faces:
        return [], []
    dev = network_device(G) if device is None else resolve_device(device)
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

    features = _get_features(cfg.perceptual_layers, dev) if cfg.lambda_perceptual > 0 else None
    results = project(G, target, hidden, cfg, device=dev, callback=on_step if wanted else None,
                      progress=progress, features=features)
    frames = recorder.frames if recorder is not None else [[] for _ in faces]
    return results, frames


# ----------------------------------------------------------------------------- stage 3: blend


def finish_face(face: PreparedFace, projection, *, settings: Dict[str, object], source: str,
                frames: Optional[List[np.ndarray]] = None, feather_px: Optional[float] = None) -> UnmaskResult:
    """Generated face -> aligned blend -> paste back into the photo."""
    from .blend import paste_back, poisson_blend
    from .generate import to_uint8

    timings = dict(face.timings)
    t0 = time.perf_counter()
    projection_image = to_uint8(projection.image[None])[0]
    generated_up = _resize_rgb(projection_image, face.work_size)
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


# ----------------------------------------------------------------------------- the one function


def unmask(photo, *, network: PathLike = DEFAULT_NETWORK, steps: int = 1000, lambda_perceptual: float = 0.8,
           init: str = "avg", seed: int = 0, device=None, mask: Optional[PathLike] = None, aligned: bool = False,
           landmarks=None, box=None, face_index: Optional[int] = None, backend: str = "auto",
           margin: Optional[float] = None, optimize_noise: bool = False, noise_mode: str = "const",
           callback: Optional[Callable] = None, preview_every: int = 50, progress: bool = True, G=None,
           record_video: bool = False, video_every: Optional[int] = None, work_size: Optional[int] = None,
           feather_px: Optional[float] = None, schedule: str = "fast",
           precision: str = "auto", compile: str = "auto") -> UnmaskResult:
    """Show the face beneath the mask in ``photo`` (path, LoadedImage or RGB array).

    ``network``: registry name, URL or checkpoint path (ignored when ``G`` is
    given: pass a loaded generator to reuse it). ``callback(step, info)``
    receives a :class:`~stylegan_unmask.projector.ProjectionStep` every
    ``preview_every`` steps (return True to stop early). Other options are
    those of ``stylegan-unmask project``.
    """
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    if G is None:
        G = get_network(network, device)
    dev = network_device(G) if device is None else resolve_device(device)
    t_network = time.perf_counter() - t0
    config = projection_config(steps=steps, lambda_perceptual=lambda_perceptual, init=init, seed=seed,
                               optimize_noise=optimize_noise, noise_mode=noise_mode, preview_every=preview_every,
                               device=dev, schedule=schedule, precision=precision, compile=compile)
    face = prepare_face(photo, G.img_resolution, mask=mask, aligned=aligned, landmarks=landmarks, box=box,
                        face_index=face_index, backend=backend, margin=margin, work_size=work_size,
                        crop_scale=network_crop_scale(G))
    t0 = time.perf_counter()
    results, frames = project_faces(G, [face], config, device=dev, callback=callback, progress=progress,
                                    record_video=record_video, video_every=video_every)
    t_project = time.perf_counter() - t0
    settings = run_settings(network_source(G), config, margin=margin, mask=mask, aligned=aligned,
                            backend=backend, device=str(dev))
    result = finish_face(face, results[0], settings=settings, source=network_source(G), frames=frames[0],
                         feather_px=feather_px)
    result.timings["network"] = t_network
    result.timings["projection"] = t_project
    result.timings["total"] = time.perf_counter() - t_start
    return result


def run_settings(source: str, config, **extra) -> Dict[str, object]:
    """What a result depends on (saved in the latent file and the batch's done markers)."""
    return {
        "network": source, "steps": config.steps, "lambda_perceptual": config.lambda_perceptual,
        "init": config.init, "seed": config.seed, "optimize_noise": config.optimize_noise,
        "noise_mode": config.noise_mode, "force_fp32": config.force_fp32,
        "schedule": getattr(config, "schedule", "official"), "precision": getattr(config, "precision", "fp32"),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in extra.items()},
    }


# ----------------------------------------------------------------------------- outputs


def comparison_image(result: UnmaskResult, panel_size: Optional[int] = None) -> np.ndarray:
    """input | mask | projection | result, all in aligned space at one size."""
    size = panel_size or int(min(512, max(256, result.aligned_image.shape[0])))
    return comparison_grid([
        ("input (aligned)", result.aligned_image),
        ("mask", mask_overlay(result.aligned_image, result.mask_aligned)),
        (f"projection {result.projection_image.shape[0]}px", result.projection_image),
        ("result", result.blended_aligned),
    ], panel_size=size)


def latent_archive(result: UnmaskResult) -> bytes:
    """``projected_w.npz`` bytes: ``w`` [1, num_ws, w_dim] (NVIDIA's layout), ``noise_<i>``, ``meta_json``."""
    proj = result.projection
    arrays = {"w": proj.w_plus.detach().cpu().numpy().astype(np.float32)[None]}
    for i, n in enumerate(proj.noise):
        arrays[f"noise_{i}"] = n.detach().cpu().numpy().astype(np.float32)
    for k, v in proj.losses.items():
        arrays[f"loss_{k}"] = np.asarray(v, dtype=np.float32)
    meta = {
        **result.settings,
        "network": result.network_source,
        "resolution": int(result.projection_image.shape[0]),
        "num_ws": int(proj.w_plus.shape[0]), "w_dim": int(proj.w_plus.shape[1]),
        "steps_run": int(proj.steps_run), "stopped_early": bool(proj.stopped_early),
        "init_used": proj.init, "noise_source": proj.noise_source,
        "final_loss": float(proj.final_loss), "final_mse": float(proj.final_mse),
        "final_perceptual": float(proj.final_perceptual), "psnr_visible_db": float(proj.psnr),
        "input": None if result.original.path is None else str(result.original.path),
        "input_size": list(result.original.size),
        "mask_source": result.mask_source,
        "aligned_input": result.is_aligned_input,
        "transform": None if result.is_aligned_input else result.aligned.transform.to_dict(),
        "render_hint": ("stylegan-unmask generate --ws renders this latent with the network's const noise "
                        "(add --force-fp32 when force_fp32 is true); that equals projection.png when "
                        "noise_source is 'const'"),
    }
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def save_outputs(result: UnmaskResult, outdir: PathLike, *, protect: Iterable[Optional[PathLike]] = (),
                 video: Optional[bool] = None) -> Dict[str, Path]:
    """Write the result files into ``outdir`` (atomically, never over an input); returns name -> path.

    ``unmasked.png`` keeps the input's ICC profile, EXIF (upright) and alpha.
    ``video`` (default: when frames were recorded) adds ``projection.mp4``,
    or ``projection.gif`` when no ffmpeg is available.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [result.original.path, *protect]
    if result.mask_source not in ("landmarks",):
        inputs.append(result.mask_source)
    written: Dict[str, Path] = {}

    def img(name: str, pixels, like=None):
        written[name] = save_image(out / name, pixels, like=like, protect=inputs)

    img("unmasked.png", result.unmasked, like=result.original)
    img("aligned.png", result.aligned_image)
    img("mask.png", result.mask_aligned)
    img("projection.png", result.projection_image)
    img("comparison.png", comparison_image(result))
    npz = out / "projected_w.npz"
    ensure_not_input(npz, inputs)
    written["projected_w.npz"] = atomic_write_bytes(npz, latent_archive(result))
    if video if video is not None else bool(result.frames):
        if not result.frames:
            raise UnmaskError("no video frames were recorded: run with record_video=True (--save-video)")
        written["video"] = write_video(result.frames, out / "projection.mp4", protect=inputs)
    return written


def write_video(frames: Sequence[np.ndarray], path: PathLike, fps: int = VIDEO_FPS,
                protect: Iterable[Optional[PathLike]] = ()) -> Path:
    """An mp4 (H.264 through imageio-ffmpeg) of the frames, or a GIF beside it without ffmpeg. Atomic."""
    path = Path(path)
    try:
        import imageio_ffmpeg  # noqa: F401

        imageio_ffmpeg.get_ffmpeg_exe()
        use_mp4 = True
    except Exception:  # noqa: BLE001 - not installed or no binary: fall back to GIF
        use_mp4 = False
    if not use_mp4:
        path = path.with_suffix(".gif")
    ensure_not_input(path, list(protect))
    with atomic_file(path, suffix=path.suffix) as tmp:
        if use_mp4:
            import imageio.v2 as imageio

            with imageio.get_writer(str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                    pixelformat="yuv420p", macro_block_size=16, ffmpeg_log_level="error") as w:
                for f in frames:
                    w.append_data(np.ascontiguousarray(f))
        else:
            pil = [Image.fromarray(f) for f in frames]
            pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path
