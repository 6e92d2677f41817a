"""The region a face mask hides, from 68 landmarks; and user-drawn masks.

The projector reproduces every pixel left *outside* this region, so a mask
region that misses a strip of fabric puts that fabric into the "unmasked" face.
The region is therefore deliberately generous: the jaw outline (points 0-16)
grown outward by a margin proportional to the face size (inter-ocular
distance, so it works the same in a 300-px web photo, a 4000-px camera photo
or the 1024-px aligned square), and cut from above by a line that runs under
the eyes and up the nose bridge to between landmarks 27 and 28, where the
nose wire of a mask sits. The eyes themselves (with a small clearance) are
always left out. The geometry only uses landmark positions, so it works in any
coordinate space (source photo or aligned).

On a masked photo the detector has to *guess* the lower-face landmarks (the
chin is hidden) and often draws it too short; the region assumes a minimum
chin depth, and the default margin and the top edge were chosen by
measurement on the paired dev set with landmarks found on the masked photos
(see ``docs/masks.md`` and ``stylegan-unmask eval-masks``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

from ..errors import InputImageError
from ..images import load_image
from .blend import feathered_alpha

#: How far (in inter-ocular distances) the region reaches beyond the jaw line.
DEFAULT_MARGIN = 0.25

#: Gap (inter-ocular distances) between the lowest point of each eye and the top edge under it.
EYE_GAP = 0.12
#: Clearance (inter-ocular distances) kept around each eye contour whatever the other settings.
EYE_CLEARANCE = 0.08
#: Shortest chin depth (eye line to landmark 8, in inter-ocular distances) the region assumes.
#: Under a mask the predictor often pulls the chin up onto the fabric (median 1.70 on real
#: masked dev photos, 10th percentile 1.43, against 1.80 / 1.58 on unmasked dev faces); a
#: shorter predicted jaw is stretched down to this depth.
CHIN_FLOOR = 1.7
#: Where the top edge crosses the nose: fraction of the way from landmark 28 up to 27
#: (0 = level with 28, 1 = level with 27). Pasted and real masks ride up the bridge.
BRIDGE_LEVEL = 0.75

_JAW = slice(0, 17)
_LEFT_EYE = slice(36, 42)   # image-left eye (the subject's right)
_RIGHT_EYE = slice(42, 48)
_SUBPIXEL_BITS = 4          # cv2 fixed-point precision for polygon vertices

PathLike = Union[str, "os.PathLike[str]"]


def inter_ocular_distance(points68) -> float:
    """Distance between the two eye centres: the face-size unit for margins."""
    p = _check_points(points68)
    return float(np.linalg.norm(p[_LEFT_EYE].mean(0) - p[_RIGHT_EYE].mean(0)))


def mask_from_landmarks(points68, image_shape, margin: float = DEFAULT_MARGIN,
                        chin_floor: float = CHIN_FLOOR) -> np.ndarray:
    """Boolean ``(H, W)`` array, True where a worn face mask would hide the face.

    ``points68``: 68x2 (x, y) landmarks (iBUG/dlib order) in the same pixel
    space as ``image_shape`` (``(H, W)`` or ``(H, W, C)``): source photo or
    aligned square alike. ``margin`` is the distance, in inter-ocular
    distances, by which the region extends beyond the jaw line (below the chin
    and out along the cheeks); 0 gives the bare jaw polygon cut below the eyes.
    A larger margin always gives a superset of a smaller one. ``chin_floor``:
    a jaw whose chin lies less than this many inter-ocular distances below the
    eye line is stretched down to it (0 uses the landmarks as they are).
    """
    p = _check_points(points68)
    if len(image_shape) < 2 or image_shape[0] <= 0 or image_shape[1] <= 0:
        raise ValueError(f"image_shape must be (H, W[, C]) with positive sizes, got {tuple(image_shape)}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if not np.isfinite(chin_floor) or chin_floor < 0:
        raise ValueError(f"chin_floor must be a finite number >= 0, got {chin_floor}")
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
    jaw = _jaw_with_chin_floor(p, down, iod, chin_floor)
    _fill(region, jaw)
    radius = margin * iod
    if radius >= 0.5:
        pts = _fixed_point(np.vstack([jaw, jaw[:1]]))
        cv2.polylines(region, [pts], False, 1, thickness=max(1, int(round(2 * radius))),
                      lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)

    # Keep only what lies below the top edge: under each eye (with a gap), up the nose bridge.
    size = 4.0 * (np.ptp(p[:, 0]) + np.ptp(p[:, 1]) + radius + iod)
    bridge = p[28] + BRIDGE_LEVEL * (p[27] - p[28])
    under_left = _lowest(p[_LEFT_EYE], down) + EYE_GAP * iod * down
    under_right = _lowest(p[_RIGHT_EYE], down) + EYE_GAP * iod * down
    far_left = under_left - size * right
    far_right = under_right + size * right
    below = np.zeros((h, w), np.uint8)
    _fill(below, np.array([far_left, under_left, bridge, under_right, far_right,
                           far_right + size * down, far_left + size * down]))
    region &= below

    # Never the eyes: their contours (convex hulls) grown by the clearance are cut out.
    eyes = np.zeros((h, w), np.uint8)
    clearance = max(1, int(round(2 * EYE_CLEARANCE * iod)))
    for eye in (p[_LEFT_EYE], p[_RIGHT_EYE]):
        hull = cv2.convexHull(eye.astype(np.float32))[:, 0].astype(np.float64)
        _fill(eyes, hull)
        cv2.polylines(eyes, [_fixed_point(np.vstack([hull, hull[:1]]))], False, 1, thickness=clearance,
                      lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    region[eyes.astype(bool)] = 0
    return region.astype(bool)


def _jaw_with_chin_floor(p: np.ndarray, down: np.ndarray, iod: float, chin_floor: float) -> np.ndarray:
    """Jaw points 0-16, stretched away from the eye line (along ``down`` only, so a turned
    face keeps its sideways shape) when the chin is closer than ``chin_floor`` IOD."""
    centre = (p[_LEFT_EYE].mean(0) + p[_RIGHT_EYE].mean(0)) / 2
    jaw = p[_JAW] - centre
    depth = jaw @ down
    chin = depth[8] / iod
    if chin <= 0 or chin >= chin_floor:  # chin above the eyes: nonsense landmarks, leave them be
        return p[_JAW].copy()
    stretch = chin_floor / chin
    return centre + jaw + np.outer(depth * (stretch - 1.0), down)


def grow_mask(mask: np.ndarray, pixels: float) -> np.ndarray:
    """``mask`` grown by a disk of radius ``pixels`` (exact Euclidean distance); 0 returns a copy.

    For a user who wants a safety band in pixels rather than face-relative units,
    e.g. after warping a mask between spaces, where resampling nibbles the edge.
    """
    m = _check_mask(mask)
    if not np.isfinite(pixels) or pixels < 0:
        raise ValueError(f"pixels must be a finite number >= 0, got {pixels}")
    if pixels == 0 or not m.any():
        return m.copy()
    dist = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= np.float32(pixels)


def feather_mask(mask: np.ndarray, pixels: float, grow: float = 0.0) -> np.ndarray:
    """Soft float32 alpha: 1 on ``mask`` (grown by ``grow`` px), easing to exactly 0 over ``pixels``.

    The same profile paste-back uses (:func:`stylegan_unmask.face.blend.feathered_alpha`),
    exposed here for users compositing their own results.
    """
    return feathered_alpha(_check_mask(mask), float(pixels), float(grow))


def load_user_mask(path: PathLike, expected_size: Tuple[int, int], space: str = "photo") -> np.ndarray:
    """Read a user-drawn mask image as bool ``(H, W)``: grey value > 127 means masked.

    ``expected_size`` is ``(width, height)`` of the image the mask was drawn on
    (``LoadedImage.size``: the upright photo, EXIF orientation applied, which is
    also how the mask file's own EXIF orientation is read). ``space`` names
    that image in errors (``"photo"`` or ``"aligned face"``): the mask must
    match it exactly, since a silently resized mask would be misplaced; a
    square mask refused for a non-square photo is pointed out as probably
    drawn on the aligned face. Colour is converted to grey; transparent pixels
    count as unmasked (grey is composited over black by the alpha).
    """
    p = Path(path)
    loaded = load_image(p)
    h, w = loaded.pixels.shape[:2]
    ew, eh = int(expected_size[0]), int(expected_size[1])
    if (w, h) != (ew, eh):
        hint = ("draw the mask on the photo itself (same size, same orientation)" if space == "photo"
                else f"draw the mask on the {space} itself")
        if space == "photo" and w == h and ew != eh:
            hint += "; a square mask looks like one drawn on an aligned face, which belongs with --aligned"
        raise InputImageError(p, f"mask is {w}x{h} pixels but the {space} is {ew}x{eh}; {hint}")
    grey = cv2.cvtColor(loaded.pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if loaded.alpha is not None:
        grey *= loaded.alpha.astype(np.float32) / 255.0
    mask = grey > 127
    if not mask.any():
        raise InputImageError(p, "mask is empty (no pixel brighter than 127); white (255) marks the masked area")
    if mask.all():
        raise InputImageError(p, "mask covers every pixel, leaving no face to match; white (255) marks the "
                                 "masked area and black the visible face (is the mask inverted?)")
    return mask


def _check_points(points68) -> np.ndarray:
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return p


def _check_mask(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    return m.astype(bool)


def _lowest(points: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The point of an eye contour furthest towards the mouth."""
    return points[int(np.argmax(points @ down))]


def _fixed_point(polygon: np.ndarray) -> np.ndarray:
    """Vertices in cv2's sub-pixel fixed point, clipped so far-away points cannot overflow int32."""
    scale = 1 << _SUBPIXEL_BITS
    return np.clip(np.round(np.asarray(polygon) * scale), -(1 << 28), 1 << 28).astype(np.int32)


def _fill(canvas: np.ndarray, polygon: np.ndarray) -> None:
    cv2.fillPoly(canvas, [_fixed_point(polygon)], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
