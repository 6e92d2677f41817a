"""The region a face mask hides, from 68 landmarks; and user-drawn masks.

The projector reproduces every pixel left *outside* this region, so a mask
region that misses a strip of fabric puts that fabric into the "unmasked" face.
The region is therefore deliberately generous: the jaw outline (points 0-16)
grown outward by a margin proportional to the face size (inter-ocular
distance, so it works the same in a 300-px web photo, a 4000-px camera photo
or the 1024-px aligned square), and cut from above by a line that runs up the
nose bridge but stays below the eyes. The geometry only uses landmark
positions, so it works in any coordinate space (source photo or aligned).

On a masked photo the detector has to *guess* the lower-face landmarks (the
chin is hidden), and it tends to guess a jaw that is too small; the default
margin was chosen by measurement on the paired dev set with landmarks found on
the masked photos (see ``docs/masks.md`` and ``stylegan-unmask eval-masks``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

from .errors import InputImageError

#: How far (in inter-ocular distances) the region reaches beyond the jaw line.
DEFAULT_MARGIN = 0.3

#: Gap (inter-ocular distances) kept between the lower eyelids and the mask's top edge.
EYE_GAP = 0.12
#: Where the top edge crosses the nose: fraction of the way from landmark 28 to 29
#: (0 = level with 28; measured: higher covers more pasted masks at equal overreach).
BRIDGE_LEVEL = 0.0

_JAW = slice(0, 17)
_LEFT_EYE = slice(36, 42)   # image-left eye (the subject's right)
_RIGHT_EYE = slice(42, 48)
_SUBPIXEL_BITS = 4          # cv2 fixed-point precision for polygon vertices


def inter_ocular_distance(points68) -> float:
    """Distance between the two eye centres: the face-size unit for margins."""
    p = _check_points(points68)
    return float(np.linalg.norm(p[_LEFT_EYE].mean(0) - p[_RIGHT_EYE].mean(0)))


def mask_from_landmarks(points68, image_shape, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Boolean ``(H, W)`` array, True where a worn face mask would hide the face.

    ``points68``: 68x2 (x, y) landmarks (iBUG/dlib order) in the same pixel
    space as ``image_shape`` (``(H, W)`` or ``(H, W, C)``). ``margin`` is the
    distance, in inter-ocular distances, by which the region extends beyond the
    jaw line (below the chin and out along the cheeks); 0 gives the bare jaw
    polygon cut below the eyes.
    """
    p = _check_points(points68)
    if len(image_shape) < 2 or image_shape[0] <= 0 or image_shape[1] <= 0:
        raise ValueError(f"image_shape must be (H, W[, C]) with positive sizes, got {tuple(image_shape)}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    h, w = int(image_shape[0]), int(image_shape[1])
    iod = inter_ocular_distance(p)
    if iod < 1e-6:
        raise ValueError("landmarks are degenerate: both eye centres coincide")

    # Face frame: `right` along the eye line, `down` perpendicular to it, pointing to the mouth.
    right = p[_RIGHT_EYE].mean(0) - p[_LEFT_EYE].mean(0)
    right /= np.linalg.norm(right)
    down = np.array([-right[1], right[0]])
    if np.dot(p[48:68].mean(0) - p[36:48].mean(0), down) < 0:  # mirrored landmarks
        down = -down

    # Jaw polygon grown by the margin (a thick outline = Minkowski sum with a disk).
    region = np.zeros((h, w), np.uint8)
    jaw = p[_JAW]
    _fill(region, jaw)
    radius = margin * iod
    if radius >= 0.5:
        scale = 1 << _SUBPIXEL_BITS
        pts = np.round(np.vstack([jaw, jaw[:1]]) * scale).astype(np.int64)
        pts = np.clip(pts, -(1 << 28), 1 << 28).astype(np.int32)
        cv2.polylines(region, [pts], False, 1, thickness=max(1, int(round(2 * radius))),
                      lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)

    # Keep only what lies below the top edge: under each eye (with a gap), up to the nose bridge.
    size = 4.0 * (np.ptp(p[:, 0]) + np.ptp(p[:, 1]) + radius + iod)
    bridge = p[28] + BRIDGE_LEVEL * (p[29] - p[28])
    under_left = _lowest(p[_LEFT_EYE], down) + EYE_GAP * iod * down
    under_right = _lowest(p[_RIGHT_EYE], down) + EYE_GAP * iod * down
    far_left = under_left - size * right
    far_right = under_right + size * right
    below = np.zeros((h, w), np.uint8)
    _fill(below, np.array([far_left, under_left, bridge, under_right, far_right,
                           far_right + size * down, far_left + size * down]))
    return (region & below).astype(bool)


def load_user_mask(path: Union[str, "os.PathLike[str]"], expected_size: Tuple[int, int]) -> np.ndarray:
    """Read a user-drawn mask image as bool ``(H, W)``: grey value > 127 means masked.

    ``expected_size`` is ``(width, height)`` of the photo (as ``LoadedImage.size``);
    the mask must match it exactly, since a silently resized mask would be
    misplaced on the face. Colour or alpha images are converted to grey first.
    """
    from .images import load_image

    p = Path(path)
    loaded = load_image(p)
    h, w = loaded.pixels.shape[:2]
    ew, eh = int(expected_size[0]), int(expected_size[1])
    if (w, h) != (ew, eh):
        raise InputImageError(p, f"mask is {w}x{h} pixels but the photo is {ew}x{eh}; "
                                 "draw the mask on the photo itself (same size, same orientation)")
    grey = cv2.cvtColor(loaded.pixels, cv2.COLOR_RGB2GRAY)
    mask = grey > 127
    if not mask.any():
        raise InputImageError(p, "mask is empty (no pixel brighter than 127); white (255) marks the masked area")
    return mask


def _check_points(points68) -> np.ndarray:
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return p


def _lowest(points: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The point of an eye contour furthest towards the mouth."""
    return points[int(np.argmax(points @ down))]


def _fill(canvas: np.ndarray, polygon: np.ndarray) -> None:
    scale = 1 << _SUBPIXEL_BITS
    pts = np.clip(np.round(polygon * scale), -(1 << 28), 1 << 28).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
