"""The face front end: a photo in, its landmarks, FFHQ-aligned face and mask region out.

:func:`prepare_face` is what a projection needs from a photo (load ->
landmarks -> align -> mask -> projection target); :func:`align_photo` and
:func:`mask_photo` are what the ``align`` / ``mask`` commands run, with
:func:`debug_overlay` for their ``--debug`` picture. Kept apart from the click
layer so the notebook and tests call the same functions the commands do.

Resolutions. The face is aligned at a *working size* S, not at the network's
resolution R: S = the face square's side in the photo (its native detail),
clamped to [R, 1024]. The projection target is the aligned face reduced to R
(Lanczos), and its hidden mask is the aligned mask reduced conservatively (a
network pixel counts as hidden if any photo pixel under it is hidden, so no
face-mask colour leaks into the loss). The pipeline upsamples the generated
face back to S and blends it there (``blend.py``), where the boundary
conditions come from the real skin at full detail. With the official 1024-px
FFHQ network S = R = 1024, exactly the FFHQ crop; with a smaller network the
blend still happens at the photo's detail.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from ..errors import InputImageError, UnmaskError
from ..images import LoadedImage, as_rgb_uint8, load_image
from .align import AlignedFace, align_face, ffhq_square
from .landmarks import FaceLandmarks, find_landmarks, load_landmarks_file
from .mask import DEFAULT_MARGIN, load_user_mask, mask_from_landmarks

__all__ = ["FaceOptions", "PreparedFace", "prepare_face", "work_size_for", "MAX_WORK_SIZE", "parse_box",
           "photo_landmarks", "align_photo", "mask_photo", "debug_overlay", "resize_rgb", "face_region", "REGIONS",
           "DEFAULT_REGION", "region_overlay"]

PathLike = Union[str, "os.PathLike[str]"]

#: Largest aligned working size (the FFHQ crop size); larger faces are reduced to it.
MAX_WORK_SIZE = 1024
#: How the hidden region is found: the segmenter (``segment.py``, the default: it follows the
#: physical mask) or the landmark polygon (``mask.py``). A user mask (``--mask``) wins over both.
REGIONS = ("segment", "landmarks")
DEFAULT_REGION = "segment"


@dataclass(frozen=True)
class FaceOptions:
    """How a photo becomes an aligned face and a mask region: the face flags of ``project``, ``batch`` and
    ``eval-unmask``, in one object."""

    aligned: bool = False                     # the input already is an FFHQ-aligned face: no detection/alignment
    mask: Optional[PathLike] = None           # a user mask PNG (255 = hidden) instead of the landmark region
    landmarks: object = None                  # FaceLandmarks, 68x2 points or a .npy/.json/.txt/.csv file
    box: Optional[Sequence[float]] = None     # the face box (x0, y0, x1, y1) in photo pixels: no detection
    face_index: Optional[int] = None          # which detected face (default: the largest)
    backend: str = "auto"                     # landmark model: auto | dlib | face-alignment
    margin: Optional[float] = None            # the landmark region's reach beyond the jaw (None: mask.DEFAULT_MARGIN)
    work_size: Optional[int] = None           # the aligned working size (None: see the module docstring)
    region: str = DEFAULT_REGION              # segment | landmarks (see REGIONS)

    def __post_init__(self):
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")

    def mask_kwargs(self) -> Dict[str, float]:
        """``mask_from_landmarks`` keywords: the margin when one was given."""
        return {} if self.margin is None else {"margin": self.margin}


@dataclass
class PreparedFace:
    """A photo made ready for projection (everything before the optimisation)."""

    original: LoadedImage
    aligned: Optional[AlignedFace]  # None when the input already was an aligned face
    aligned_image: np.ndarray  # SxSx3 uint8: the aligned photo at the working size
    mask_aligned: np.ndarray  # SxS bool, True = hidden by the face mask
    landmarks: Optional[FaceLandmarks]  # in the photo (None for an aligned input with a user mask)
    mask_source: str  # 'segment', 'landmarks' or the user mask's path
    target: np.ndarray  # RxRx3 uint8: the projection target (aligned photo at network resolution)
    hidden: np.ndarray  # RxR bool: the mask at network resolution (conservative)
    is_aligned_input: bool
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def work_size(self) -> int:
        return int(self.aligned_image.shape[0])


# ----------------------------------------------------------------------------- the projection's front end


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
        return np.asarray(load_landmarks_file(landmarks), dtype=np.float64)
    return np.asarray(landmarks, dtype=np.float64)  # validated by find_landmarks


def work_size_for(qsize: float, resolution: int, max_size: int = MAX_WORK_SIZE) -> int:
    """The aligned working size: the face square's side in the photo, clamped to [R, max(R, max_size)]."""
    return int(min(max(int(round(qsize)), int(resolution)), max(int(resolution), int(max_size))))


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """A square RGB image at size x size: Lanczos down (the projection target), bicubic up (the generated face)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    resample = Image.LANCZOS if rgb.shape[0] > size else Image.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize((size, size), resample))


def _reduce_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Shrink a bool mask to size x size; a pixel is hidden if any part of it is hidden."""
    if mask.shape == (size, size):
        return mask.copy()
    if mask.shape[0] < size:  # enlarging (an aligned input smaller than the network)
        return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    frac = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return frac > 1e-6


def prepare_face(photo, resolution: int, options: Optional[FaceOptions] = None, *,
                 crop_scale: float = 1.0) -> PreparedFace:
    """Load, detect, align and mask one photo; returns what the projector needs.

    ``resolution``: the network's. ``options``: how (see :class:`FaceOptions`).
    ``crop_scale``: the FFHQ-crop zoom the network was trained with
    (``G.crop_scale``; 1.0 for NVIDIA's networks), so the photo is framed as
    the network's training faces were.
    """
    o = options if options is not None else FaceOptions()
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    original = _as_loaded(photo)
    timings["load"] = time.perf_counter() - t0
    pts = _load_landmark_points(o.landmarks)
    if o.aligned:
        return _prepare_aligned_input(original, resolution, o, pts, timings)

    t0 = time.perf_counter()
    lm = find_landmarks(original.pixels, backend=o.backend, face_index=o.face_index, box=o.box, points=pts,
                        path=original.path)
    timings["landmarks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    work_size = o.work_size
    if work_size is None:
        _, x, _ = ffhq_square(lm.points, crop_scale)
        work_size = work_size_for(float(np.hypot(*x) * 2), resolution)
    face = align_face(original.pixels, lm.points, output_size=int(work_size), crop_scale=crop_scale)
    timings["align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if o.mask is not None:
        hidden_aligned, _ = face.transform.warp_from_source(load_user_mask(o.mask, expected_size=original.size))
        mask_source = str(o.mask)
    elif o.region == "segment":  # segmented in the photo itself (the network's view), then warped
        region, mask_source = face_region(original.pixels, lm.points, o.region, o.margin)
        warped, valid = face.transform.warp_from_source(region)
        hidden_aligned = _with_padding_beyond(warped, valid)
    else:
        hidden_aligned = mask_from_landmarks(face.landmarks, face.image.shape[:2], **o.mask_kwargs())
        mask_source = "landmarks"
    return _prepared(original, face, face.image, np.asarray(hidden_aligned, dtype=bool), lm, o, resolution,
                     timings, t0, mask_source)


def _prepare_aligned_input(original: LoadedImage, resolution: int, o: FaceOptions, pts,
                           timings: Dict[str, float]) -> PreparedFace:
    """--aligned: the photo already is an FFHQ-aligned face; no alignment, no paste back."""
    w, h = original.size
    if w != h:
        raise InputImageError(original.path, f"--aligned expects a square FFHQ-aligned face, got {w}x{h} pixels")
    lm = None
    t0 = time.perf_counter()
    if o.mask is not None:
        hidden_aligned = load_user_mask(o.mask, expected_size=original.size)
        mask_source = str(o.mask)
    else:
        lm = find_landmarks(original.pixels, backend=o.backend, face_index=o.face_index, box=o.box, points=pts,
                            path=original.path)
        timings["landmarks"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hidden_aligned, mask_source = face_region(original.pixels, lm.points, o.region, o.margin)
    return _prepared(original, None, original.pixels, np.asarray(hidden_aligned, dtype=bool), lm, o, resolution,
                     timings, t0, mask_source)


def _prepared(original: LoadedImage, face: Optional[AlignedFace], image: np.ndarray, hidden_aligned: np.ndarray,
              lm: Optional[FaceLandmarks], o: FaceOptions, resolution: int, timings: Dict[str, float],
              t0: float, mask_source: str) -> PreparedFace:
    """Check the aligned mask, reduce image and mask to the network's resolution, bundle it all."""
    _check_mask(hidden_aligned, o.mask if o.mask is not None else original.path, image.shape[0])
    target = resize_rgb(image, resolution)
    hidden = _reduce_mask(hidden_aligned, resolution)
    timings["mask"] = time.perf_counter() - t0
    return PreparedFace(original=original, aligned=face, aligned_image=image, mask_aligned=hidden_aligned,
                        landmarks=lm, mask_source=mask_source, target=target, hidden=hidden,
                        is_aligned_input=face is None, timings=timings)


def face_region(pixels: np.ndarray, points, region: str = DEFAULT_REGION,
                margin: Optional[float] = None) -> Tuple[np.ndarray, str]:
    """(bool mask in ``pixels``' space, where it came from) for one face.

    ``segment`` falls back to the landmark region (and says so in the source)
    when the segmenter finds no face mask at all.
    """
    kw = {} if margin is None else {"margin": margin}
    if region == "landmarks":
        return mask_from_landmarks(points, pixels.shape[:2], **kw), "landmarks"
    if region != "segment":
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    from .segment import segment_face

    found = segment_face(pixels, points).region
    if not found.any():
        return mask_from_landmarks(points, pixels.shape[:2], **kw), "landmarks (the segmenter found no face mask)"
    return found, "segment"


def _with_padding_beyond(warped: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The warped region plus the aligned square's padding beyond the photo that touches it: a mask cut
    by the photo's edge goes on there, and the padding (a reflection of the photo) would show its fabric."""
    import scipy.ndimage as ndi

    m = np.asarray(warped, bool)
    labels, _ = ndi.label(m | ~valid)
    keep = np.unique(labels[m])
    return np.isin(labels, keep[keep > 0])


def _check_mask(hidden: np.ndarray, where, size: int) -> None:
    if hidden.shape != (size, size):
        raise InputImageError(where, f"mask is {hidden.shape[1]}x{hidden.shape[0]} in aligned space, "
                                     f"expected {size}x{size}")
    if not hidden.any():
        raise InputImageError(where, "the mask region is empty in the aligned face: nothing to unmask")
    if hidden.all():
        raise InputImageError(where, "the mask hides the whole aligned face: nothing visible to project from")


# ----------------------------------------------------------------------------- the align / mask commands


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
        points = np.asarray(load_landmarks_file(landmarks_file), dtype=np.float64)
    else:
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
    loaded = load_image(photo)
    points = photo_landmarks(loaded.pixels, path=photo, landmarks_file=landmarks_file, box=box,
                             face_index=face_index, backend=backend)
    return loaded, points, align_face(loaded.pixels, points, output_size=int(size))


def mask_photo(photo: PathLike, margin: Optional[float] = None, *, landmarks_file: Optional[PathLike] = None,
               box=None, face_index: Optional[int] = None, backend: str = "auto", region: str = DEFAULT_REGION):
    """Load ``photo``, find its landmarks and return ``(LoadedImage, points68, mask, source)``.

    The mask is in the upright photo's pixels (EXIF orientation applied, as
    :func:`stylegan_unmask.images.load_image` gives them), so written as a PNG
    it lines up with the photo as every viewer shows it. ``region``: segment |
    landmarks (``margin`` is the landmark region's). What ``stylegan-unmask
    mask`` runs.
    """
    loaded = load_image(photo)
    points = photo_landmarks(loaded.pixels, path=photo, landmarks_file=landmarks_file, box=box,
                             face_index=face_index, backend=backend)
    m, source = face_region(loaded.pixels, points, region, DEFAULT_MARGIN if margin is None else margin)
    return loaded, points, m, source


def region_overlay(pixels: np.ndarray, mask: np.ndarray, colour=(255, 40, 80)) -> np.ndarray:
    """The photo with the region tinted and outlined: to check a region by eye."""
    out = pixels.astype(np.float32).copy()
    m = np.asarray(mask, bool)
    out[m] = 0.55 * out[m] + 0.45 * np.asarray(colour, np.float32)
    out = np.ascontiguousarray(out.astype(np.uint8))
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, int(round(min(m.shape) / 300))), cv2.LINE_AA)
    return out
