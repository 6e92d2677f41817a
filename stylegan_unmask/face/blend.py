"""Put the generated lower face into the photo without visible seams.

Two steps, two spaces:

* :func:`poisson_blend` works in aligned space: the generated pixels are
  cloned into the aligned photo inside the mask with OpenCV's Poisson
  (gradient-domain) cloning, so colour and lighting follow the real skin at
  the mask's edge. Pixels outside the mask are the aligned photo, exactly.
* :func:`paste_back` warps the blended square back onto the original photo and
  mixes it in with a feathered alpha that is 1 on the (warped) mask and falls
  to 0 a few pixels outside it. Wherever that alpha is 0 the output is the
  input photo bit for bit; only the masked region and its feather change.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .align import AlignTransform

#: OpenCV erodes the clone mask by this many pixels (3x3 kernel, 3 passes)
#: before taking the source gradients; we grow the mask by as much first so
#: the generated gradients are used over the whole mask we were given.
_OPENCV_MASK_EROSION = 3
#: Padding added around the images before cloning. OpenCV ignores the outer
#: pixel of the mask, erodes it, and solves with the bounding box edge as the
#: fixed boundary; 8 px keeps a mask touching the image edge clear of all that.
_CLONE_PAD = 8


def _as_bool_mask(mask, shape: Tuple[int, int], what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape != tuple(shape):
        raise ValueError(f"{what} must be {shape[0]}x{shape[1]}, got shape {m.shape}")
    return m.astype(bool) if m.dtype == np.bool_ else m > (127 if m.dtype == np.uint8 else 0.5)


def _check_rgb(img, what: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"{what} must be an HxWx3 uint8 RGB image, got {a.dtype} {a.shape}")
    return a


def poisson_blend(aligned_photo, generated, mask, method: int = cv2.NORMAL_CLONE) -> np.ndarray:
    """Clone ``generated`` into ``aligned_photo`` inside ``mask`` (gradient-domain blending).

    ``aligned_photo``, ``generated``: HxWx3 uint8; ``mask``: HxW bool (True =
    replace). ``method`` is ``cv2.NORMAL_CLONE`` (take the generated texture)
    or ``cv2.MIXED_CLONE`` (keep the stronger gradient of the two).
    Returns a new array; outside the mask it equals ``aligned_photo``.
    """
    photo = _check_rgb(aligned_photo, "aligned_photo")
    gen = _check_rgb(generated, "generated")
    if gen.shape != photo.shape:
        raise ValueError(f"generated {gen.shape} and aligned_photo {photo.shape} differ in shape")
    m = _as_bool_mask(mask, photo.shape[:2], "mask")
    if not m.any():
        return photo.copy()

    p = _CLONE_PAD
    # Where the mask reaches the image edge there is no photo to match, so the
    # padding there shows the generated face (reflected): the solution then has
    # no reason to drift toward the face mask's colour along the edge.
    mask_p = np.pad(m, p, mode="edge")
    gen_p = np.pad(gen, ((p, p), (p, p), (0, 0)), mode="reflect")
    dst_p = np.pad(photo, ((p, p), (p, p), (0, 0)), mode="reflect")
    band = np.ones_like(mask_p)
    band[p:-p, p:-p] = False
    fill = band & mask_p
    dst_p[fill] = gen_p[fill]

    e = _OPENCV_MASK_EROSION
    mask_u8 = cv2.dilate(mask_p.astype(np.uint8) * 255, np.ones((3, 3), np.uint8), iterations=e)
    # OpenCV zeroes the mask's outer 1-px frame, then pastes the mask's bounding
    # box centred on `center` with integer halving; choose `center` so the box
    # lands exactly where it came from (no shift).
    inner = np.zeros(mask_u8.shape, bool)
    inner[1:-1, 1:-1] = mask_u8[1:-1, 1:-1] > 0
    ys, xs = np.nonzero(inner)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    center = (x0 + bw // 2, y0 + bh // 2)
    # OpenCV expects BGR only by convention; the solver treats channels independently.
    cloned = cv2.seamlessClone(np.ascontiguousarray(gen_p), np.ascontiguousarray(dst_p), mask_u8, center, method)
    out = photo.copy()
    out[m] = cloned[p:-p, p:-p][m]
    return out


def feathered_alpha(mask, feather_px: float, dilate_px: float = 0.0) -> np.ndarray:
    """Soft alpha (float32, 0..1): 1 on ``mask`` grown by ``dilate_px``, easing to 0 over ``feather_px`` beyond it.

    Built from the exact Euclidean distance to the mask, so alpha is exactly 0
    from ``dilate_px + feather_px`` outward — the guarantee behind paste-back's
    untouched pixels. The ease is a smoothstep (no visible kink at either end).
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if feather_px < 0 or dilate_px < 0:
        raise ValueError("feather_px and dilate_px must be >= 0")
    if not m.any():
        return np.zeros(m.shape, np.float32)
    dist = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist = dist - np.float32(dilate_px)
    if feather_px == 0:
        return (dist <= 0).astype(np.float32)
    t = np.clip(1.0 - dist / np.float32(feather_px), 0.0, 1.0)
    alpha = t * t * (3.0 - 2.0 * t)
    alpha[dist >= feather_px] = 0.0
    return alpha.astype(np.float32)


def default_feather_px(transform: AlignTransform) -> float:
    """2 % of the face square's side in source pixels (about 8 px for a 400-px face), at least 2 px."""
    side = float(np.hypot(*(transform.quad[3] - transform.quad[0])))
    return max(2.0, 0.02 * side)


def paste_back(
    original_rgb,
    aligned_result,
    transform: AlignTransform,
    region_mask_aligned,
    feather_px: Optional[float] = None,
    dilate_px: float = 0.0,
    interpolation: int = cv2.INTER_CUBIC,
) -> np.ndarray:
    """Warp ``aligned_result`` into ``original_rgb`` over the masked region only.

    ``region_mask_aligned`` (SxS bool) is the region that changed in aligned
    space (the face mask); it is warped to the photo, grown by ``dilate_px``,
    and feathered over ``feather_px`` source pixels (default:
    :func:`default_feather_px`). Returns a new image of the original's size;
    every pixel where the alpha is 0 is copied from ``original_rgb`` unchanged.
    """
    orig = _check_rgb(original_rgb, "original_rgb")
    h, w = orig.shape[:2]
    if (w, h) != tuple(transform.source_size):
        raise ValueError(f"original_rgb is {w}x{h} but the transform was made for {transform.source_size[0]}x"
                         f"{transform.source_size[1]}")
    s = transform.output_size
    res = _check_rgb(aligned_result, "aligned_result")
    if res.shape[:2] != (s, s):
        raise ValueError(f"aligned_result must be {s}x{s}, got {res.shape[:2]}")
    region = _as_bool_mask(region_mask_aligned, (s, s), "region_mask_aligned")
    out = orig.copy()
    if not region.any():
        return out
    if feather_px is None:
        feather_px = default_feather_px(transform)

    # Coverage of the mask in the photo; any partly covered pixel belongs to the region.
    coverage, _ = transform.warp_to_source(region.astype(np.float32), cv2.INTER_LINEAR)
    region_src = coverage > 1e-3
    if not region_src.any():
        return out
    # Work inside the bounding box of what can change (cheap on large photos).
    reach = int(np.ceil(feather_px + dilate_px)) + 2
    ys, xs = np.nonzero(region_src)
    x0, x1 = max(int(xs.min()) - reach, 0), min(int(xs.max()) + reach + 1, w)
    y0, y1 = max(int(ys.min()) - reach, 0), min(int(ys.max()) + reach + 1, h)
    alpha = feathered_alpha(region_src[y0:y1, x0:x1], feather_px, dilate_px)

    warped, valid = transform.warp_to_source(res, interpolation)
    alpha *= valid[y0:y1, x0:x1]  # never mix in black from beyond the aligned square
    sel = alpha > 0
    if not sel.any():
        return out
    a = alpha[sel][:, None].astype(np.float32)
    base = orig[y0:y1, x0:x1][sel].astype(np.float32)
    top = warped[y0:y1, x0:x1][sel].astype(np.float32)
    mixed = np.clip(np.rint(base + (top - base) * a), 0, 255).astype(np.uint8)
    roi = out[y0:y1, x0:x1]
    roi[sel] = mixed
    return out
