"""What ``unmask`` writes: the result pictures, the latent archive, the optional video."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import UnmaskError
from ..images import ensure_not_input, save_image
from .chain import UnmaskResult
from .pictures import comparison_grid, mask_overlay
from .video import write_video

__all__ = ["OUTPUT_FILES", "CHOSEN_FILES", "comparison_image", "completions_image", "latent_archive", "save_outputs",
           "pick_completion", "save_chosen"]

PathLike = Union[str, "os.PathLike[str]"]

#: Files ``save_outputs`` always writes (``projection.mp4``/``.gif`` too with a video).
OUTPUT_FILES = ("unmasked.png", "aligned.png", "mask.png", "projection.png", "comparison.png", "projected_w.npz")
#: What ``save_chosen`` writes: the completion the user picked, as unmasked.png and projected_w.npz are written.
CHOSEN_FILES = ("unmasked_chosen.png", "projected_w_chosen.npz")


def comparison_image(result: UnmaskResult, panel_size: Optional[int] = None) -> np.ndarray:
    """input | mask | projection | result, all in aligned space at one size."""
    size = panel_size or int(min(512, max(256, result.aligned_image.shape[0])))
    return comparison_grid([
        ("input (aligned)", result.aligned_image),
        ("mask", mask_overlay(result.aligned_image, result.mask_aligned)),
        (f"projection {result.projection_image.shape[0]}px", result.projection_image),
        ("result", result.blended_aligned),
    ], panel_size=size)


def completions_image(result: UnmaskResult, panel_size: int = 256) -> np.ndarray:
    """The aligned photo, then every completion (best first), each labelled with its visible-region loss."""
    panels = [("input (aligned)", result.aligned_image)]
    panels += [(f"#{k} loss {c.projection.final_loss:.4f}", c.blended_aligned)
               for k, c in enumerate(result.completions, 1)]
    return comparison_grid(panels, panel_size=panel_size)


def completions_record(result: UnmaskResult) -> dict:
    """``completions.json``: the ranked completions and what ranks them."""
    return {"ranked_by": "final visible-region loss (lower first); unmasked.png is #1",
            "note": "plausible alternatives under the mask that fit the visible face, not guesses of the hidden face",
            "completions": [{"rank": k, "file": f"unmasked_{k}.png", "sample": c.projection.sample,
                             "start": c.projection.init, "final_loss": float(c.projection.final_loss),
                             "final_mse": float(c.projection.final_mse),
                             "final_perceptual": float(c.projection.final_perceptual),
                             "psnr_visible_db": float(c.projection.psnr)}
                            for k, c in enumerate(result.completions, 1)]}


def latent_archive(result: UnmaskResult, **meta_extra) -> bytes:
    """``projected_w.npz`` bytes: ``w`` [K, num_ws, w_dim] (NVIDIA's layout; K = 1, or the completions best
    first), ``noise_<i>``, ``meta_json`` (with ``meta_extra`` added)."""
    proj = result.projection
    results = [c.projection for c in result.completions] or [proj]
    arrays = {"w": np.stack([p.w_plus.detach().cpu().numpy().astype(np.float32) for p in results])}
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
        "samples_final_loss": [float(p.final_loss) for p in results],
        "input": None if result.original.path is None else str(result.original.path),
        "input_size": list(result.original.size),
        "mask_source": result.mask_source,
        "aligned_input": result.is_aligned_input,
        "transform": None if result.is_aligned_input else result.aligned.transform.to_dict(),
        "render_hint": ("stylegan-unmask generate --ws renders this latent with the network's const noise "
                        "(add --force-fp32 when force_fp32 is true); that equals projection.png when "
                        "noise_source is 'const'"),
        **meta_extra,
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
    inputs = _inputs(result, protect)
    written: Dict[str, Path] = {}

    def img(name: str, pixels, like=None):
        written[name] = save_image(out / name, pixels, like=like, protect=inputs)

    img("unmasked.png", result.unmasked, like=result.original)
    img("aligned.png", result.aligned_image)
    img("mask.png", result.mask_aligned)
    img("projection.png", result.projection_image)
    img("comparison.png", comparison_image(result))
    if result.completions:
        for k, c in enumerate(result.completions, 1):
            img(f"unmasked_{k}.png", c.unmasked, like=result.original)
        img("completions.png", completions_image(result))
        path = out / "completions.json"
        ensure_not_input(path, inputs)
        written["completions.json"] = atomic_write_bytes(path, json.dumps(completions_record(result),
                                                                           indent=2).encode())
    npz = out / "projected_w.npz"
    ensure_not_input(npz, inputs)
    written["projected_w.npz"] = atomic_write_bytes(npz, latent_archive(result))
    if video if video is not None else bool(result.frames):
        if not result.frames:
            raise UnmaskError("no video frames were recorded: run with record_video=True (--save-video)")
        written["video"] = write_video(result.frames, out / "projection.mp4", protect=inputs)
    return written


def _inputs(result: UnmaskResult, protect: Iterable[Optional[PathLike]]) -> list:
    """The files no output may replace: the photo, a given mask, and ``protect``."""
    inputs = [result.original.path, *protect]
    if result.mask_source not in ("landmarks",):
        inputs.append(result.mask_source)
    return inputs


def pick_completion(result: UnmaskResult, rank: int) -> UnmaskResult:
    """Completion ``rank`` of a ``samples`` result, numbered as in completions.png (1 = lowest visible loss);
    a single projection is its own rank 1."""
    completions = result.completions or [result]
    if int(rank) != rank or not 1 <= rank <= len(completions):
        raise UnmaskError(f"completion #{rank}: choose 1..{len(completions)}")
    return completions[int(rank) - 1]


def save_chosen(result: UnmaskResult, rank: int, outdir: PathLike, *,
                protect: Iterable[Optional[PathLike]] = ()) -> Dict[str, Path]:
    """Write the completion the user picked (see :func:`pick_completion`) beside the other outputs, under names of
    its own (:data:`CHOSEN_FILES`), so the ranked files stay as written; never over an input. Returns name -> path.

    The user's eye may prefer another completion than the visible loss does: under the mask the photo does not
    decide, so the pick is a choice among plausible faces, recorded with its rank and start in the latent file.
    """
    chosen = pick_completion(result, rank)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(result, protect)
    written = {"unmasked_chosen.png": save_image(out / "unmasked_chosen.png", chosen.unmasked, like=result.original,
                                                 protect=inputs)}
    npz = out / "projected_w_chosen.npz"
    ensure_not_input(npz, inputs)
    archive = latent_archive(chosen, chosen_rank=int(rank), chosen_sample=int(chosen.projection.sample))
    written["projected_w_chosen.npz"] = atomic_write_bytes(npz, archive)
    return written
