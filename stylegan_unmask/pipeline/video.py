"""The optimisation as a video: frames captured from the projector's callback, written as mp4 (or GIF)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from ..atomic import atomic_file
from ..face.frontend import PreparedFace
from ..images import ensure_not_input
from ..networks.generate import to_uint8
from .pictures import comparison_grid, mask_overlay

__all__ = ["FrameRecorder", "write_video", "DEFAULT_VIDEO_FRAMES", "VIDEO_FPS"]

PathLike = Union[str, "os.PathLike[str]"]

#: Video frames are captured this many times over a run unless ``video_every`` says otherwise.
DEFAULT_VIDEO_FRAMES = 100
VIDEO_FPS = 15


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


def write_video(frames: Sequence[np.ndarray], path: PathLike, fps: int = VIDEO_FPS,
                protect: Iterable[Optional[PathLike]] = ()) -> Path:
    """An mp4 (H.264 through imageio-ffmpeg) of the frames, or a GIF beside it without ffmpeg. Atomic."""
    path = Path(path)
    try:
        import imageio_ffmpeg  # noqa: F401 - optional (the 'video' extra)

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
