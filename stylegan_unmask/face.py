"""The face front end the ``align`` / ``mask`` commands share: landmarks for a photo, alignment, a debug overlay.

Kept apart from the click layer so the notebook and tests can call the same
functions the commands do.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import UnmaskError

PathLike = Union[str, "os.PathLike[str]"]


def parse_box(text: Optional[str]) -> Optional[Tuple[float, float, float, float]]:
    """``"x0,y0,x1,y1"`` -> a tuple of floats (source pixels), validated."""
    if text is None:
        return None
    parts = [t.strip() for t in str(text).split(",")]
    try:
        x0, y0, x1, y1 = (float(t) for t in parts)
    except ValueError:
        raise UnmaskError(f"--box {text!r}: expected four numbers x0,y0,x1,y1") from None
    if not (x1 > x0 and y1 > y0):
        raise UnmaskError(f"--box {text!r}: need x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


def photo_landmarks(
    pixels: np.ndarray,
    path: Optional[PathLike] = None,
    landmarks_file: Optional[PathLike] = None,
    box: Optional[Sequence[float]] = None,
    face_index: Optional[int] = None,
    backend: str = "auto",
) -> np.ndarray:
    """68x2 landmarks in the photo's (EXIF-upright) pixels: from a file if given, else detected."""
    if landmarks_file is not None:
        from .landmarks import load_landmarks_file

        points = np.asarray(load_landmarks_file(landmarks_file), dtype=np.float64)
    else:
        from .landmarks import find_landmarks

        points = np.asarray(find_landmarks(pixels, backend=backend, face_index=face_index, box=box,
                                           path=path).points, dtype=np.float64)
    h, w = pixels.shape[:2]
    inside = (points[:, 0] > -w) & (points[:, 0] < 2 * w) & (points[:, 1] > -h) & (points[:, 1] < 2 * h)
    if not inside.all():
        where = landmarks_file if landmarks_file is not None else path
        raise UnmaskError(f"{where}: landmarks lie far outside the {w}x{h} photo; were they made for another image?")
    return points


def debug_overlay(pixels: np.ndarray, points: np.ndarray, quad: Optional[np.ndarray] = None,
                  mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The photo with the mask outline (red), FFHQ quad (green) and 68 landmarks (yellow) drawn on it."""
    out = np.ascontiguousarray(pixels.copy())
    h, w = out.shape[:2]
    thick = max(1, int(round(min(h, w) / 400)))
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 40, 40), thick, cv2.LINE_AA)
    if quad is not None:
        q = np.round(np.asarray(quad) * 16).astype(np.int32)
        cv2.polylines(out, [q], True, (40, 230, 40), thick, cv2.LINE_AA, shift=4)
        cv2.circle(out, tuple(int(v) for v in q[0]), 3 * thick * 16, (40, 230, 40), -1, cv2.LINE_AA, shift=4)
    for x, y in np.round(np.asarray(points) * 16).astype(np.int32):
        cv2.circle(out, (int(x), int(y)), 2 * thick * 16, (255, 230, 0), -1, cv2.LINE_AA, shift=4)
    return out


def align_photo(photo: PathLike, size: int = 1024, *, landmarks_file: Optional[PathLike] = None,
                box: Optional[Sequence[float]] = None, face_index: Optional[int] = None, backend: str = "auto"):
    """Load ``photo``, find its landmarks and FFHQ-align it: ``(LoadedImage, points68, AlignedFace)``.

    What ``stylegan-unmask align`` runs; landmarks are in the upright photo's
    pixels (EXIF orientation applied).
    """
    from .align import align_face
    from .images import load_image

    loaded = load_image(photo)
    points = photo_landmarks(loaded.pixels, path=photo, landmarks_file=landmarks_file, box=box,
                             face_index=face_index, backend=backend)
    return loaded, points, align_face(loaded.pixels, points, output_size=int(size))
