"""FFHQ face alignment, and the exact map between the aligned square and the photo.

Pretrained FFHQ generators only know faces cropped the way the FFHQ dataset
was made, so this module re-implements NVIDIA's recipe
(``NVlabs/ffhq-dataset`` ``download_ffhq.py``, ``recreate_aligned_images``)
step for step — same oriented square from the eye and mouth landmarks, same
shrink / crop / reflect-blur padding, same Pillow QUAD warp at
``transform_size`` followed by a Lanczos reduction — so the crops match the
official ones (bit-exact on the 16 reference goldens).

Unlike the recipe we also keep the geometry: :class:`AlignTransform` maps
points and images between the photo and the aligned square in both
directions, which is what pasting a result back into the photo needs.

Pixel convention: integer coordinates are pixel centres in both spaces (the
convention of dlib / face-alignment landmarks and of OpenCV warps).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import cv2
import numpy as np
import scipy.ndimage
from PIL import Image

from ..images import LoadedImage, as_rgb_uint8

_RESAMPLING = getattr(Image, "Resampling", Image)
_TRANSFORM = getattr(Image, "Transform", Image)
LANCZOS = _RESAMPLING.LANCZOS  # what the recipe's ANTIALIAS always was
BILINEAR = _RESAMPLING.BILINEAR

#: The official recipe renders the quad at 4096x4096 and reduces it to 1024.
FFHQ_TRANSFORM_SIZE = 4096
MIN_OUTPUT_SIZE = 16
MAX_OUTPUT_SIZE = 4096
MAX_TRANSFORM_SIZE = 16384

# Interpolations for which a minifying warp first averages the input (INTER_AREA)
# so that shrinking a large photo or the 1024-px aligned face does not alias.
_SMOOTH_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True, eq=False)  # holds an array: no field-wise ==/hash
class AlignTransform:
    """Where the aligned square sits in the source photo.

    ``quad`` holds the source-pixel positions of the aligned image's corners
    in the order top-left, bottom-left, bottom-right, top-right (the order of
    Pillow's QUAD transform and of the goldens' ``quad.npy``), measured at the
    outer corners of the corner pixels, i.e. aligned point (-0.5, -0.5) maps to
    ``quad[0]`` and (S-0.5, S-0.5) to ``quad[2]``. Pillow's QUAD warp is
    bilinear in the unit square; for the FFHQ quad (a rotated square, so a
    parallelogram) that is exactly affine, and the affine fast path is used.
    """

    quad: np.ndarray  # (4, 2) float64, source pixel coordinates
    output_size: int
    source_size: Tuple[int, int]  # (width, height) of the source photo

    def __post_init__(self):
        q = np.array(self.quad, dtype=np.float64).reshape(4, 2)
        if not np.all(np.isfinite(q)):
            raise ValueError("AlignTransform.quad must be finite")
        object.__setattr__(self, "quad", q)
        object.__setattr__(self, "output_size", int(self.output_size))
        object.__setattr__(self, "source_size", (int(self.source_size[0]), int(self.source_size[1])))
        if self.output_size < 1:
            raise ValueError(f"output_size must be positive, got {self.output_size}")
        area = _polygon_area(q)
        if not abs(area) > 1e-9:
            raise ValueError("AlignTransform.quad is degenerate (zero area)")

    # --- the bilinear map of the unit square onto the quad -------------------
    @property
    def _uv_basis(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        nw, sw, se, ne = self.quad
        return nw, ne - nw, sw - nw, se - sw - ne + nw  # origin, d/ds, d/dt, d2/dsdt

    @property
    def is_affine(self) -> bool:
        """True when the quad is a parallelogram (always for FFHQ quads)."""
        _, a, b, k = self._uv_basis
        return float(np.abs(k).max()) <= 1e-9 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))

    @property
    def matrix(self) -> np.ndarray:
        """2x3 affine map aligned pixel -> source pixel (the parallelogram part of the quad)."""
        o, a, b, _ = self._uv_basis
        s = float(self.output_size)
        m = np.empty((2, 3), dtype=np.float64)
        m[:, 0] = a / s
        m[:, 1] = b / s
        m[:, 2] = o + (a + b) * (0.5 / s)
        return m

    @property
    def inverse_matrix(self) -> np.ndarray:
        """2x3 affine map source pixel -> aligned pixel."""
        return _invert_affine(self.matrix)

    @property
    def source_pixels_per_aligned_pixel(self) -> float:
        """Linear scale of the map (geometric mean of the two axes)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_source(self, points) -> np.ndarray:
        """Aligned pixel coordinates (..., 2) -> source pixel coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        s = (pts[..., 0:1] + 0.5) / self.output_size
        t = (pts[..., 1:2] + 0.5) / self.output_size
        o, a, b, k = self._uv_basis
        return o + a * s + b * t + k * (s * t)

    def to_aligned(self, points) -> np.ndarray:
        """Source pixel coordinates (..., 2) -> aligned pixel coordinates (inverse of :meth:`to_source`)."""
        pts = np.asarray(points, dtype=np.float64)
        inv = self.inverse_matrix
        out = pts @ inv[:, :2].T + inv[:, 2]
        if self.is_affine:
            return out
        # General quad: Newton iterations on the bilinear map, started from the affine estimate.
        o, a, b, k = self._uv_basis
        size = float(self.output_size)
        st = (out + 0.5) / size
        for _ in range(50):
            s, t = st[..., 0:1], st[..., 1:2]
            resid = o + a * s + b * t + k * (s * t) - pts
            ds = a + k * t  # d/ds
            dt = b + k * s  # d/dt
            det = ds[..., 0] * dt[..., 1] - ds[..., 1] * dt[..., 0]
            det = np.where(np.abs(det) < 1e-12, 1e-12, det)
            step_s = (resid[..., 0] * dt[..., 1] - resid[..., 1] * dt[..., 0]) / det
            step_t = (ds[..., 0] * resid[..., 1] - ds[..., 1] * resid[..., 0]) / det
            st = st - np.stack([step_s, step_t], axis=-1)
            if float(np.max(np.abs(resid), initial=0.0)) < 1e-10 * max(1.0, size):
                break
        return st * size - 0.5

    # --- image warps -----------------------------------------------------------
    def warp_to_source(self, aligned, interpolation: int = cv2.INTER_LINEAR) -> Tuple[np.ndarray, np.ndarray]:
        """Warp an aligned-space image or mask back into the source photo's frame.

        Returns ``(warped, valid)``: ``warped`` has the source size (dtype as the
        input; bool masks come back as bool = coverage >= 0.5) and ``valid`` is
        True where every interpolation tap fell inside the aligned square.
        Pixels outside the quad are 0.
        """
        arr = _check_warp_input(aligned, (self.output_size, self.output_size), "aligned")
        w, h = self.source_size
        corners = self.quad
        roi = _roi_from_points(corners, w, h, margin=2)
        return _warp(arr, (w, h), roi, self._source_to_aligned_fn, self.inverse_matrix, interpolation)

    def warp_from_source(self, source, interpolation: int = cv2.INTER_LINEAR) -> Tuple[np.ndarray, np.ndarray]:
        """Warp a source-space image or mask (e.g. a user or ground-truth mask) into aligned space.

        Returns ``(warped, valid)`` like :meth:`warp_to_source`; ``valid`` is
        False where the aligned square reaches beyond the photo.
        """
        w, h = self.source_size
        arr = _check_warp_input(source, (h, w), "source")
        s = self.output_size
        return _warp(arr, (s, s), (0, 0, s, s), self.to_source, self.matrix, interpolation)

    def _source_to_aligned_fn(self, pts: np.ndarray) -> np.ndarray:
        return self.to_aligned(pts)

    # --- serialisation -----------------------------------------------------------
    def to_dict(self) -> dict:
        return {"quad": self.quad.tolist(), "output_size": self.output_size, "source_size": list(self.source_size)}

    @classmethod
    def from_dict(cls, d: dict) -> "AlignTransform":
        return cls(quad=np.asarray(d["quad"], dtype=np.float64), output_size=int(d["output_size"]),
                   source_size=tuple(d["source_size"]))


@dataclass(frozen=True, eq=False)
class AlignmentSteps:
    """The recipe's intermediate values, kept for debugging and for checking against the goldens."""

    c0: np.ndarray  # centre of the oriented square
    x: np.ndarray  # half-side vector along the face's horizontal
    y: np.ndarray  # half-side vector along the face's vertical
    qsize: float  # side length of the square in source pixels
    shrink: int  # the recipe's shrink factor (applied only when > 1)
    border: int
    crop_ltrb: Tuple[int, int, int, int]
    pad_ltrb_computed: Tuple[int, int, int, int]
    padding_applied: bool
    pad_ltrb_applied: Tuple[int, int, int, int]
    image_size_at_transform: Tuple[int, int]
    quad_at_transform: np.ndarray  # quad in the shrunk/cropped/padded image, pixel centres
    transform_size: int


@dataclass(eq=False)
class AlignedFace:
    """An FFHQ-aligned crop with everything needed to go back to the photo."""

    image: np.ndarray  # SxSx3 uint8 RGB
    transform: AlignTransform
    landmarks: np.ndarray  # 68x2, aligned pixel coordinates
    source_landmarks: np.ndarray  # 68x2, source pixel coordinates
    steps: Optional[AlignmentSteps] = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


# ----------------------------------------------------------------------------- the recipe


def ffhq_square(landmarks68, crop_scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``c0`` and half-side vectors ``x``, ``y`` of the FFHQ crop square.

    The square is oriented by the eye line and the eye-to-mouth line together,
    sized by the larger of 2x the eye distance and 1.8x the eye-to-mouth
    distance, and centred a tenth of the way from the eyes to the mouth.
    ``crop_scale`` multiplies the side (1.0 = FFHQ exactly; < 1 zooms in, as
    for networks trained on tighter crops such as UTKFace's).
    """
    crop_scale = float(crop_scale)
    if not 0.1 <= crop_scale <= 4.0:
        raise ValueError(f"crop_scale must be in 0.1..4.0, got {crop_scale}")
    lm = _check_landmarks(landmarks68)
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # Horizontal axis: the eye line blended with the eye-to-mouth line turned by -90 degrees.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    norm = np.hypot(*x)
    if not norm > 0:
        raise ValueError("landmarks are degenerate: the eyes and mouth do not span a face")
    x /= norm
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if crop_scale != 1.0:
        x *= crop_scale
    y = np.array([-x[1], x[0]])  # the horizontal axis turned by +90 degrees (downwards in the image)
    c0 = eye_avg + eye_to_mouth * 0.1
    return c0, x, y


def align_face(
    image,
    landmarks68,
    output_size: int = 1024,
    transform_size: Optional[int] = None,
    enable_padding: bool = True,
    crop_scale: float = 1.0,
) -> AlignedFace:
    """Crop and rotate a face exactly like the FFHQ dataset.

    ``image``: HxWx3 uint8 RGB array (or a :class:`LoadedImage`);
    ``landmarks68``: 68x2 points in that image (iBUG/dlib order).
    ``transform_size`` is the size the quad is first rendered at before the
    Lanczos reduction; ``None`` means the official 4096 (or ``output_size`` if
    that is larger). We keep 4096 for small outputs too (the 64-px test
    network, 256-px models): the render costs about the same for every output
    size, small next to projection (docs/masks.md, "Alignment cost"), and
    rendering large then reducing with Lanczos keeps small crops as alias-free
    as the official pipeline's. Pass e.g.
    ``4 * output_size`` (the official 4:1 ratio) to trade that for speed.
    ``enable_padding`` reflects + blurs the photo where the square leaves it
    (the recipe's default), instead of leaving those areas black.
    ``crop_scale`` zooms the square (see :func:`ffhq_square`); a network
    records the value it was trained with and the pipeline passes it here.
    """
    if isinstance(image, LoadedImage):
        image = image.pixels
    rgb = as_rgb_uint8(image)
    output_size = int(output_size)
    if not MIN_OUTPUT_SIZE <= output_size <= MAX_OUTPUT_SIZE:
        raise ValueError(f"output_size must be in {MIN_OUTPUT_SIZE}..{MAX_OUTPUT_SIZE}, got {output_size}")
    if transform_size is None:
        transform_size = max(FFHQ_TRANSFORM_SIZE, output_size)
    transform_size = int(transform_size)
    if not output_size <= transform_size <= MAX_TRANSFORM_SIZE:
        raise ValueError(f"transform_size must be in output_size..{MAX_TRANSFORM_SIZE}, got {transform_size}")

    lm = _check_landmarks(landmarks68)
    c0, x, y = ffhq_square(lm, crop_scale)
    quad = np.stack([c0 - x - y, c0 - x + y, c0 + x + y, c0 + x - y])
    qsize = np.hypot(*x) * 2
    src_h, src_w = rgb.shape[:2]
    img = Image.fromarray(rgb, "RGB")

    # Shrink: a face much larger than the output is first reduced by an integer factor.
    shrink = int(np.floor(qsize / output_size * 0.5))
    source_quad = quad.copy()  # exact corners in the source photo, refined below if shrunk
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, LANCZOS)
        quad /= shrink
        qsize /= shrink
        # The recipe divides centre coordinates by `shrink`, but the resize maps pixel
        # edges by src/rsize; undo the latter to know where the crop really came from.
        scale = np.array([src_w / rsize[0], src_h / rsize[1]])
        source_quad = (quad + 0.5) * scale - 0.5

    # Crop to the square plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = _bounds(quad)
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    # Pad where the square (plus border) leaves the photo.
    bounds = _bounds(quad)
    pad = (max(-bounds[0] + border, 0), max(-bounds[1] + border, 0), max(bounds[2] - img.size[0] + border, 0),
           max(bounds[3] - img.size[1] + border, 0))
    pad_applied = (0, 0, 0, 0)
    padding_applied = bool(enable_padding and max(pad) > border - 4)
    if padding_applied:
        pad_arr = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = _pad_reflect_blur(img, pad_arr, qsize)
        quad += pad_arr[:2]
        pad_applied = tuple(int(v) for v in pad_arr)

    # Render the quad, then reduce to the output size.
    quad_at_transform = quad.copy()
    size_at_transform = img.size
    img = img.transform((transform_size, transform_size), _TRANSFORM.QUAD, (quad + 0.5).flatten(), BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), LANCZOS)
    aligned = np.asarray(img, dtype=np.uint8).copy()

    transform = AlignTransform(quad=source_quad, output_size=output_size, source_size=(src_w, src_h))
    steps = AlignmentSteps(
        c0=c0, x=x, y=y, qsize=float(np.hypot(*x) * 2), shrink=shrink, border=border, crop_ltrb=tuple(crop),
        pad_ltrb_computed=tuple(int(v) for v in pad), padding_applied=padding_applied, pad_ltrb_applied=pad_applied,
        image_size_at_transform=tuple(size_at_transform), quad_at_transform=quad_at_transform,
        transform_size=transform_size,
    )
    return AlignedFace(image=aligned, transform=transform, landmarks=transform.to_aligned(lm),
                       source_landmarks=lm.copy(), steps=steps)


def _pad_reflect_blur(img: Image.Image, pad: np.ndarray, qsize: float) -> Image.Image:
    """Reflect-pad, then fade the padding into a blur and the median colour (the recipe's
    ``enable_padding``), so the generator never sees a hard mirror seam."""
    left, top, right, bottom = (int(v) for v in pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = arr.shape
    # Distance into the padding as a fraction of its width: 1 at the outer edge,
    # 0 where the photo starts, negative inside the photo (float64 on purpose:
    # the reference run's arithmetic, so results stay bit-identical).
    cols = np.arange(w, dtype=np.float64)[None, :, None]
    rows = np.arange(h, dtype=np.float64)[:, None, None]
    ramp_x = 1.0 - np.minimum(cols / left, (w - 1 - cols) / right)
    ramp_y = 1.0 - np.minimum(rows / top, (h - 1 - rows) / bottom)
    ramp = np.maximum(ramp_x, ramp_y)
    sigma = qsize * 0.02
    blurred = scipy.ndimage.gaussian_filter(arr, [sigma, sigma, 0])
    # Blur fades in a third of the pad width inside the photo; the median colour over the padding.
    arr += (blurred - arr) * np.clip(1.0 + 3.0 * ramp, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(ramp, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")


def _bounds(quad: np.ndarray) -> Tuple[int, int, int, int]:
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))


def _check_landmarks(landmarks68) -> np.ndarray:
    lm = np.array(landmarks68, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68 or lm.shape[1] < 2:
        raise ValueError(f"expected 68x2 landmarks (iBUG/dlib order), got shape {lm.shape}")
    lm = np.ascontiguousarray(lm[:, :2])
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinity")
    return lm


# ----------------------------------------------------------------------------- warping helpers


def _polygon_area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _invert_affine(m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -(a @ m[:, 2:3])])


def _roi_from_points(pts: np.ndarray, w: int, h: int, margin: int) -> Tuple[int, int, int, int]:
    x0 = max(int(np.floor(pts[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + margin + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + margin + 1, h)
    return x0, y0, max(x1, x0), max(y1, y0)


def _check_warp_input(arr, expected_hw: Tuple[int, int], what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim not in (2, 3) or a.shape[:2] != tuple(expected_hw):
        raise ValueError(f"{what} image must be {expected_hw[0]}x{expected_hw[1]}(xC), got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] > 4:
        raise ValueError(f"{what} image has {a.shape[2]} channels; at most 4 are supported")
    return a


def _warp(arr: np.ndarray, dsize: Tuple[int, int], roi: Tuple[int, int, int, int], dst_to_src_fn, dst_to_src_affine,
          interpolation: int) -> Tuple[np.ndarray, np.ndarray]:
    """Resample ``arr`` onto a ``dsize`` canvas, computing only the ``roi`` (x0, y0, x1, y1) of it.

    ``dst_to_src_affine`` (2x3) maps destination pixel centres to ``arr`` pixel
    centres when the transform is affine; ``dst_to_src_fn`` is used otherwise.
    """
    dw, dh = dsize
    is_bool = arr.dtype == np.bool_
    work = arr.astype(np.uint8) * 255 if is_bool else arr
    if work.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        work = work.astype(np.float32)
    out_shape = (dh, dw) + work.shape[2:]
    out = np.zeros(out_shape, dtype=work.dtype)
    valid = np.zeros((dh, dw), dtype=bool)
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return (out > 127 if is_bool else out), valid
    rw, rh = x1 - x0, y1 - y0
    src_h, src_w = work.shape[:2]

    affine = dst_to_src_affine is not None and _is_affine_fn(dst_to_src_fn, dst_to_src_affine, roi)
    if affine:
        m = np.array(dst_to_src_affine, dtype=np.float64)
        m[:, 2] = m[:, 2] + m[:, 0] * x0 + m[:, 1] * y0  # ROI origin
        src = work
        if interpolation in _SMOOTH_INTERPOLATIONS:
            src, m = _prefilter_for_minification(src, m, roi_corners=(rw, rh))
        ones = _tap_support(src.shape[:2], interpolation)
        warped = cv2.warpAffine(src, m, (rw, rh), flags=interpolation | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cover = cv2.warpAffine(ones, m, (rw, rh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        pts = dst_to_src_fn(np.stack([gx, gy], axis=-1))
        map_x = pts[..., 0].astype(np.float32)
        map_y = pts[..., 1].astype(np.float32)
        warped = cv2.remap(work, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        ones = _tap_support((src_h, src_w), interpolation)
        cover = cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if warped.ndim == 2 and work.ndim == 3:
        warped = warped[:, :, None]
    out[y0:y1, x0:x1] = warped
    valid[y0:y1, x0:x1] = cover == 255
    if is_bool:
        return out >= 128, valid
    return out, valid


def _tap_support(shape: Tuple[int, int], interpolation: int) -> np.ndarray:
    """255 where a sample position has all of its interpolation taps inside the image.

    Warped bilinearly, a pixel stays 255 only if the position lies inside this
    region: bilinear needs 2x2 taps, bicubic 4x4, Lanczos-4 8x8.
    """
    k = {cv2.INTER_CUBIC: 1, cv2.INTER_LANCZOS4: 3}.get(interpolation, 0)
    ones = np.zeros(shape, np.uint8)
    h, w = shape
    if h > 2 * k and w > 2 * k:
        ones[k:h - k, k:w - k] = 255
    return ones


def _is_affine_fn(fn, m, roi) -> bool:
    """Check the affine matrix against the exact map at the ROI corners (false for non-parallelogram quads)."""
    x0, y0, x1, y1 = roi
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
    exact = fn(corners)
    approx = corners @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]
    return bool(np.abs(exact - approx).max() < 1e-3)


def _prefilter_for_minification(src: np.ndarray, m: np.ndarray, roi_corners) -> Tuple[np.ndarray, np.ndarray]:
    """Area-average the input first when the warp shrinks it by more than 1.5x.

    Bilinear sampling of a 1024-px face into a 200-px face would alias; INTER_AREA
    to about the destination scale, then the warp, does not. Only the part of
    the input the destination ROI can reach is reduced.
    """
    step = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # input pixels per output pixel
    if step <= 1.5:
        return src, m
    rw, rh = roi_corners
    corners = np.array([[0, 0], [rw, 0], [0, rh], [rw, rh]], dtype=np.float64) - 0.5
    reach = corners @ m[:, :2].T + m[:, 2]
    sh, sw = src.shape[:2]
    margin = int(np.ceil(2 * step)) + 2
    cx0 = max(int(np.floor(reach[:, 0].min())) - margin, 0)
    cy0 = max(int(np.floor(reach[:, 1].min())) - margin, 0)
    cx1 = min(int(np.ceil(reach[:, 0].max())) + margin + 1, sw)
    cy1 = min(int(np.ceil(reach[:, 1].max())) + margin + 1, sh)
    if cx1 <= cx0 or cy1 <= cy0:
        return src, m
    crop = src[cy0:cy1, cx0:cx1]
    m = m.copy()
    m[:, 2] -= (cx0, cy0)
    ch, cw = crop.shape[:2]
    nw, nh = max(1, int(round(cw / step))), max(1, int(round(ch / step)))
    small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    if small.ndim == 2 and crop.ndim == 3:
        small = small[:, :, None]
    sx, sy = nw / cw, nh / ch
    # crop pixel centre p <-> small pixel centre (p + 0.5) * s - 0.5
    m2 = np.empty_like(m)
    m2[0] = m[0] * sx
    m2[1] = m[1] * sy
    m2[0, 2] = (m[0, 2] + 0.5) * sx - 0.5
    m2[1, 2] = (m[1, 2] + 0.5) * sy - 0.5
    return small, m2
