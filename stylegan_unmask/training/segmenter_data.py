"""Training pairs for the face-mask segmenter, drawn on UTKFace training faces.

Real masks come in every colour (skin tones included), print and fit, worn
over or under the nose, on faces cut by the frame, with hands and hair in
front. The landmark-fitted shapes of ``evaluation/synth_masks.py`` are the
starting point; here every part of the appearance is randomised far beyond
its four styles, so that the network learns "fabric over the lower face", not
a colour. Each sample is rendered into the segmenter's face-centred frame
(``face/segment.py``) with a jittered frame (landmarks on masked faces are
guesses) and a random tight crop window (the photo may end inside the frame),
and stored as uint8 arrays: the frame, the label (1 = mask fabric) and a
weight (0 where the answer is unknown: outside the photo, on ear loops).

Only ``data/train/utkface`` faces are used; evaluation faces never are.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import cv2
import numpy as np

from ..face.segment import FRAME_SIZE, frame_matrix
from ..images import blurred_luminance

PathLike = Union[str, "os.PathLike[str]"]
_SHIFT = 4
#: Extra rows below / columns beside a UTKFace crop (fractions of its side) so mask bottoms can show.
PAD_BOTTOM, PAD_SIDE = 0.3, 0.12


def cache_landmarks(faces_dir: PathLike, out: PathLike, limit: Optional[int] = None, seed: int = 0,
                    progress: bool = True) -> Path:
    """68 landmarks of (a seeded random subset of) the faces, saved as ``out`` (npz: files, points).

    Faces with no detectable face are left out. Done once; drawing then needs no detector.
    """
    from tqdm import tqdm

    from ..errors import UnmaskError
    from ..face.landmarks import find_landmarks

    files = sorted(p.name for p in Path(faces_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit is not None and limit < len(files):
        rng = np.random.default_rng(seed)
        files = sorted(rng.choice(files, size=int(limit), replace=False).tolist())
    kept, points = [], []
    for name in tqdm(files, desc="landmarks", unit="face", disable=not progress):
        img = cv2.imread(str(Path(faces_dir) / name), cv2.IMREAD_COLOR)
        if img is None:
            continue
        try:
            lm = find_landmarks(np.ascontiguousarray(img[:, :, ::-1]), backend="dlib", detector="fast")
        except UnmaskError:
            continue
        kept.append(name)
        points.append(lm.points)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, files=np.array(kept), points=np.array(points, np.float32), faces_dir=str(faces_dir))
    return out


# ----------------------------------------------------------------------------- shape
# (the same ideas as evaluation/synth_masks.py, which this layer may not import: a smooth curve
# through landmark-fitted points, and the photo's own light under the mask)


def _catmull_rom(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """A smooth curve through ``points`` (uniform Catmull-Rom, end points repeated)."""
    p = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    basis = np.hstack([-t + 2 * t ** 2 - t ** 3, 2 - 5 * t ** 2 + 3 * t ** 3, t + 4 * t ** 2 - 3 * t ** 3,
                       -t ** 2 + t ** 3]) / 2
    segments = [basis @ p[i - 1:i + 3] for i in range(1, len(p) - 2)]
    return np.vstack(segments + [points[-1:]])


@dataclass
class Sample:
    """One training pair in the segmenter's frame."""

    frame: np.ndarray  # SxSx3 uint8
    label: np.ndarray  # SxS uint8, 1 = mask fabric
    weight: np.ndarray  # SxS uint8, 0 = unknown (outside the photo, ear loops)


def _fixed(pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _axes(p: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    le, re = p[36:42].mean(0), p[42:48].mean(0)
    iod = float(np.linalg.norm(re - le))
    right = (re - le) / max(iod, 1e-6)
    down = np.array([-right[1], right[0]])
    return iod, right, down


def random_outline(p: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """A mask body polygon fitted to the landmarks with randomised fit, and the fit's name."""
    iod, right, down = _axes(p)
    fit = str(rng.choice(["over_nose", "under_nose", "low", "kn95"], p=[0.6, 0.12, 0.08, 0.2]))
    side = rng.uniform(-0.05, 0.45) * iod
    chin = rng.uniform(0.0, 0.75 if fit != "kn95" else 0.9) * iod

    def lowest(eye):
        return eye[int(np.argmax(eye @ down))]

    if fit in ("over_nose", "kn95"):
        gap = rng.uniform(0.1, 0.5) * iod
        ul = lowest(p[36:42]) + gap * down + rng.uniform(-0.3, 0.3) * iod * right
        ur = lowest(p[42:48]) + gap * down + rng.uniform(-0.3, 0.3) * iod * right
        bridge = p[28] + rng.uniform(-0.4, 1.0) * (p[30] - p[28])
        if fit == "kn95":
            bridge = bridge - rng.uniform(0.0, 0.15) * iod * down
    else:  # the top edge under the nose, or even under the mouth
        base = p[33] if fit == "under_nose" else p[62]
        level = base + rng.uniform(0.02, 0.25) * iod * down
        bridge = level + rng.uniform(-0.05, 0.1) * iod * down
        ul = level - 0.5 * iod * right + rng.uniform(-0.1, 0.15) * iod * down
        ur = level + 0.5 * iod * right + rng.uniform(-0.1, 0.15) * iod * down
    cheek_l = p[1] - side * right
    cheek_r = p[15] + side * right
    top_l, top_r = float((ul - cheek_l) @ down), float((ur - cheek_r) @ down)
    cheek_l = cheek_l + max(0.0, top_l - rng.uniform(0.0, 0.25) * iod) * down
    cheek_r = cheek_r + max(0.0, top_r - rng.uniform(0.0, 0.25) * iod) * down
    top = _catmull_rom(np.array([cheek_l, ul, bridge, ur, cheek_r]))
    centre = p[33]
    jaw = []
    for i in range(14, 1, -1):
        out = p[i] - centre
        out = out / max(np.linalg.norm(out), 1e-6)
        w = np.cos((i - 8) / 6 * np.pi / 2) ** 2
        if fit == "kn95":
            w = w ** 0.5
        jaw.append(p[i] + (side + (chin - side) * w) * out + rng.normal(0, 0.03 * iod, 2))
    bottom = _catmull_rom(np.vstack([cheek_r, np.array(jaw), cheek_l]))
    return np.vstack([top, bottom[1:-1]]), fit


def _eye_zone(p: np.ndarray, shape, iod: float, clearance: float = 0.1) -> np.ndarray:
    zone = np.zeros(shape[:2], np.uint8)
    for eye in (p[36:42], p[42:48]):
        hull = cv2.convexHull(eye.astype(np.float32))[:, 0]
        cv2.fillPoly(zone, [_fixed(hull)], 1, cv2.LINE_8, _SHIFT)
        cv2.polylines(zone, [_fixed(np.vstack([hull, hull[:1]]))], False, 1,
                      max(1, int(round(2 * clearance * iod))), cv2.LINE_8, _SHIFT)
    return zone.astype(bool)


# ----------------------------------------------------------------------------- appearance


def _random_colour(rng, skin: np.ndarray) -> np.ndarray:
    kind = rng.choice(["surgical", "dark", "hsv", "skin", "white"], p=[0.2, 0.18, 0.42, 0.12, 0.08])
    if kind == "surgical":
        base = [(150, 193, 226), (120, 170, 215), (150, 206, 192), (232, 183, 198), (200, 205, 210)]
        c = np.array(base[rng.integers(len(base))], np.float32)
    elif kind == "dark":
        c = np.full(3, rng.uniform(10, 60), np.float32) + rng.normal(0, 5, 3)
    elif kind == "skin":
        c = skin * rng.uniform(0.8, 1.2) + rng.normal(0, 10, 3)
    elif kind == "white":
        c = np.full(3, rng.uniform(200, 250), np.float32) + rng.normal(0, 6, 3)
    else:
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 256), rng.integers(40, 256)]]])
        c = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    return np.clip(c, 0, 255).astype(np.float32)


def _pattern(h: int, w: int, rng, iod: float, base: np.ndarray, skin: np.ndarray, other: Optional[np.ndarray]):
    """HxWx3 float colour field: plain, stripes, checks, dots, blobs, text-like marks or a photo patch."""
    kind = rng.choice(["plain", "stripes", "checks", "dots", "blobs", "text", "photo"],
                      p=[0.42, 0.1, 0.08, 0.1, 0.12, 0.08, 0.1])
    col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    second = _random_colour(rng, skin)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    s, t = xx * np.cos(ang) + yy * np.sin(ang), -xx * np.sin(ang) + yy * np.cos(ang)
    period = max(3.0, rng.uniform(0.08, 0.5) * iod)
    m = None
    if kind == "stripes":
        m = (np.sin(2 * np.pi * t / period) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    elif kind == "checks":
        m = 0.5 * ((np.sin(2 * np.pi * t / period) > 0) + (np.sin(2 * np.pi * s / period) > 0)).astype(np.float32)
    elif kind == "dots":
        cs, ct = np.mod(s, period) - period / 2, np.mod(t, period) - period / 2
        m = (cs ** 2 + ct ** 2 < (rng.uniform(0.15, 0.4) * period) ** 2).astype(np.float32)
    elif kind == "blobs":
        m = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(4, 25)):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            ax = (int(rng.uniform(0.03, 0.3) * iod) + 1, int(rng.uniform(0.03, 0.3) * iod) + 1)
            cv2.ellipse(m, c, ax, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.5, 1)), -1, cv2.LINE_AA)
    elif kind == "text":
        m = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 6)):
            txt = "".join(rng.choice(list(string.ascii_letters + string.digits), size=rng.integers(2, 8)))
            scale = rng.uniform(0.15, 0.6) * iod / 20
            cv2.putText(m, txt, (int(rng.integers(-w // 4, w)), int(rng.integers(0, h))), int(rng.integers(0, 8)),
                        scale, 1.0, max(1, int(scale * 2)), cv2.LINE_AA)
    elif kind == "photo" and other is not None:
        oh, ow = other.shape[:2]
        y0, x0 = rng.integers(0, oh // 2), rng.integers(0, ow // 2)
        patch = other[y0:y0 + oh // 2, x0:x0 + ow // 2]
        patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        a = rng.uniform(0.5, 1.0)
        return col * (1 - a) + patch * a
    if m is not None:
        m = cv2.GaussianBlur(m, (0, 0), 0.6)
        col = col * (1 - m[:, :, None]) + second[None, None, :] * m[:, :, None]
    return col


def _shading(img, body: np.ndarray, rng, p, iod: float, fit: str) -> np.ndarray:
    """HxW multiplicative light: the photo's own light, a gradient, pleats or folds, cloth noise, edge shadow."""
    h, w = body.shape
    _, right, down = _axes(p)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rel = np.stack([xx - p[33][0], yy - p[33][1]], -1)
    u = (rel @ right.astype(np.float32)) / iod
    v = (rel @ down.astype(np.float32)) / iod
    lum = blurred_luminance(img, max(1.0, 0.2 * iod))
    ref = float(np.median(lum[body])) if body.any() else 1.0
    light = np.clip(1 + rng.uniform(0.2, 0.8) * (lum / max(ref, 1.0) - 1), 0.6, 1.3)
    light *= 1 + rng.uniform(-0.25, 0.25) * u + rng.uniform(-0.2, 0.2) * v
    light *= 1 - rng.uniform(0.0, 0.25) * np.clip(u, -1.2, 1.2) ** 2
    kind = rng.choice(["none", "pleats", "folds", "seam"], p=[0.3, 0.25, 0.3, 0.15])
    if kind == "pleats":
        for c in rng.uniform(-0.3, 0.8, size=rng.integers(2, 4)):
            cc = c + 0.1 * u ** 2
            light -= rng.uniform(0.05, 0.2) * np.exp(-((v - cc) / 0.03) ** 2)
    elif kind == "folds":
        for _ in range(rng.integers(1, 4)):
            c, ph = rng.uniform(-0.2, 0.9), rng.uniform(0, 6.3)
            light += rng.uniform(-0.15, 0.15) * np.exp(-((v - c - 0.1 * np.sin(3 * u + ph)) / 0.12) ** 2)
    elif kind == "seam":
        light -= rng.uniform(0.1, 0.3) * np.exp(-(u / 0.03) ** 2)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 2.5))
    light *= 1 + rng.uniform(0.0, 0.25) * noise
    dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 3)
    light *= 1 - rng.uniform(0.0, 0.25) * np.exp(-dist / max(1.0, 0.05 * iod))
    return light.astype(np.float32)


def _loops(shape, p, iod, rng) -> np.ndarray:
    """Ear loops as a float alpha (thin curves from the mask's sides towards the ears)."""
    _, right, down = _axes(p)
    canvas = np.zeros(shape[:2], np.uint8)
    thick = max(1, int(round(rng.uniform(0.02, 0.06) * iod)))
    for start, ear, sgn in ((p[2], p[0] - 0.3 * iod * right, -1), (p[14], p[16] + 0.3 * iod * right, 1)):
        for off in (-0.7, 0.2):
            s = start + off * iod * down
            mid = (s + ear) / 2 + 0.15 * iod * (down if off > 0 else -down)
            t = np.linspace(0, 1, 20)[:, None]
            curve = (1 - t) ** 2 * s + 2 * (1 - t) * t * mid + t ** 2 * ear
            cv2.polylines(canvas, [_fixed(curve)], False, 255, thick, cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) / 255


def _occluders(img: np.ndarray, p, iod, rng, skin) -> np.ndarray:
    """Draw a hand and/or hair strands over the face in place; returns their alpha."""
    h, w = img.shape[:2]
    _, right, down = _axes(p)
    alpha = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    if rng.random() < 0.15:  # a hand-like blob: palm + fingers, skin coloured, over the mask's edge
        c = p[int(rng.choice([3, 5, 8, 11, 13, 31, 35]))] + rng.normal(0, 0.3 * iod, 2)
        ang = rng.uniform(0, 2 * np.pi)
        layer = np.zeros((h, w), np.uint8)
        palm = (int(rng.uniform(0.35, 0.6) * iod), int(rng.uniform(0.45, 0.8) * iod))
        cv2.ellipse(layer, (int(c[0]), int(c[1])), palm, np.degrees(ang), 0, 360, 255, -1, cv2.LINE_AA)
        d = np.array([np.cos(ang + np.pi / 2), np.sin(ang + np.pi / 2)])
        n = np.array([-d[1], d[0]])
        for k in range(4):
            base = c + d * palm[1] * 0.7 + n * (k - 1.5) * 0.22 * iod
            tip = base + d * rng.uniform(0.4, 0.8) * iod
            cv2.line(layer, tuple(_fixed(base)), tuple(_fixed(tip)), 255, max(1, int(0.18 * iod)), cv2.LINE_AA, _SHIFT)
        a = layer.astype(np.float32) / 255
        tone = skin * rng.uniform(0.85, 1.15) + rng.normal(0, 8, 3)
        shade = 1 + 0.15 * cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.3 * iod + 1) * 3
        colour = colour * (1 - a[..., None]) + np.clip(tone, 0, 255)[None, None] * shade[..., None] * a[..., None]
        alpha = 1 - (1 - alpha) * (1 - a)
    if rng.random() < 0.15:  # hair strands across a cheek
        layer = np.zeros((h, w), np.uint8)
        tone = np.array([rng.uniform(10, 120)] * 3, np.float32) * np.array([1.0, 0.85, 0.7])
        side = p[int(rng.choice([2, 4, 12, 14]))]
        for _ in range(rng.integers(3, 20)):
            s = side + rng.normal(0, 0.3 * iod, 2) - rng.uniform(0.5, 1.5) * iod * down
            e = s + rng.uniform(1.0, 2.0) * iod * down + rng.normal(0, 0.3 * iod, 2)
            m = (s + e) / 2 + rng.normal(0, 0.3 * iod, 2)
            t = np.linspace(0, 1, 16)[:, None]
            curve = (1 - t) ** 2 * s + 2 * (1 - t) * t * m + t ** 2 * e
            cv2.polylines(layer, [_fixed(curve)], False, 255, int(rng.integers(1, 4)), cv2.LINE_AA, _SHIFT)
        a = layer.astype(np.float32) / 255 * rng.uniform(0.7, 1.0)
        colour = colour * (1 - a[..., None]) + tone[None, None] * a[..., None]
        alpha = 1 - (1 - alpha) * (1 - a)
    if alpha.any():  # colour is premultiplied by its alpha
        img[:] = np.clip(img.astype(np.float32) * (1 - alpha[..., None]) + colour, 0, 255).astype(np.uint8)
    return alpha


# ----------------------------------------------------------------------------- one sample


def _skin_colour(img: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Median colour of the forehead/nose-bridge area between and above the eyes (never under a mask)."""
    iod, _, down = _axes(p)
    c = (p[36:42].mean(0) + p[42:48].mean(0)) / 2 - 0.15 * iod * down
    r = max(2, int(0.2 * iod))
    x, y = int(c[0]), int(c[1])
    patch = img[max(0, y - r):y + r, max(0, x - r):x + r].reshape(-1, 3)
    return np.median(patch, 0).astype(np.float32) if len(patch) else np.array([180, 140, 120], np.float32)


def _pad_face(img: np.ndarray, p: np.ndarray, rng) -> Tuple[np.ndarray, np.ndarray]:
    """UTKFace crops end at the chin: extend them (edge rows smeared + noise, like neck and clothes)."""
    h, w = img.shape[:2]
    b, s = int(PAD_BOTTOM * h), int(PAD_SIDE * w)
    out = cv2.copyMakeBorder(img, 0, b, s, s, cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:  # clothing: a darker or coloured band below
        tone = rng.uniform(0, 255, 3)
        ystart = h + int(rng.integers(0, b))
        a = rng.uniform(0.4, 1.0)
        out[ystart:] = np.clip(out[ystart:] * (1 - a) + tone * a, 0, 255).astype(np.uint8)
    noise = rng.normal(0, rng.uniform(2, 8), out.shape).astype(np.float32)
    grown = np.zeros(out.shape[:2], bool)
    grown[h:] = True
    grown[:, :s] = True
    grown[:, s + w:] = True
    out = np.where(grown[..., None], np.clip(out + noise, 0, 255), out).astype(np.uint8)
    return out, p + np.array([s, 0.0])


def _photometric(img: np.ndarray, rng) -> np.ndarray:
    """Camera and web damage over the whole photo: colour cast, gamma, blur, down-up sampling, noise, JPEG."""
    x = img.astype(np.float32)
    x = x * rng.uniform(0.85, 1.15, 3) + rng.uniform(-20, 20)
    x = 255 * np.clip(x / 255, 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.8))
    h, w = x.shape[:2]
    if rng.random() < 0.3:
        f = rng.uniform(0.35, 0.8)
        x = cv2.resize(cv2.resize(x, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    x += rng.normal(0, rng.uniform(0, 6), x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 96))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def draw_sample(face: np.ndarray, points68, rng: np.random.Generator, other: Optional[np.ndarray] = None) -> Sample:
    """A random mask on ``face`` (RGB uint8, a UTKFace crop), rendered into the segmenter's frame."""
    img, p = _pad_face(np.asarray(face), np.asarray(points68, np.float64), rng)
    h, w = img.shape[:2]
    if rng.random() < 0.3:  # narrower or wider faces (turned heads, other builds)
        fx = rng.uniform(0.8, 1.1)
        img = cv2.resize(img, (int(w * fx), h), interpolation=cv2.INTER_AREA)
        p = p * np.array([img.shape[1] / w, 1.0])
        h, w = img.shape[:2]
    iod, _, _ = _axes(p)
    skin = _skin_colour(img, p)
    polygon, fit = random_outline(p, rng)
    body_u8 = np.zeros((h, w), np.uint8)
    cv2.fillPoly(body_u8, [_fixed(polygon)], 255, cv2.LINE_AA, _SHIFT)
    alpha = body_u8.astype(np.float32) / 255
    alpha[_eye_zone(p, img.shape, iod)] = 0
    body = alpha > 0.5
    colour = _pattern(h, w, rng, iod, _random_colour(rng, skin), skin, other)
    colour *= _shading(img, body, rng, p, iod, fit)[..., None]
    loops = _loops(img.shape, p, iod, rng) * (alpha < 0.05) if rng.random() < 0.5 else np.zeros((h, w), np.float32)
    loop_col = np.clip(colour[body].mean(0) if body.any() else skin, 0, 255)
    a3 = alpha[..., None]
    out = img.astype(np.float32) * (1 - a3) + colour * a3
    out = out * (1 - loops[..., None]) + loop_col * loops[..., None]
    out = np.clip(out, 0, 255).astype(np.uint8)
    occl = _occluders(out, p, iod, rng, skin)
    out = _photometric(out, rng)
    label = (alpha > 0.5) & (occl < 0.5)
    unknown = loops > 0.3
    return _to_frame(out, label, unknown, p, rng)


def _to_frame(img: np.ndarray, label: np.ndarray, unknown: np.ndarray, p: np.ndarray, rng) -> Sample:
    """A random tight crop window (the photo), then the jittered face frame with a random border mode."""
    h, w = img.shape[:2]
    iod, _, _ = _axes(p)
    eyes = (p[36:42].mean(0) + p[42:48].mean(0)) / 2
    if rng.random() < 0.75:  # a tight crop around the face, sometimes cutting it
        half = rng.uniform(1.1, 2.2) * iod
        cx, cy = eyes[0] + rng.normal(0, 0.2) * iod, eyes[1] + rng.uniform(0.2, 1.0) * iod
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
        y0, y1 = int(max(0, cy - half * rng.uniform(0.8, 1.2))), int(min(h, cy + half * rng.uniform(0.8, 1.2)))
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    crop, lab, unk = img[y0:y1, x0:x1], label[y0:y1, x0:x1], unknown[y0:y1, x0:x1]
    q = p - np.array([x0, y0], np.float64)
    jitter = (rng.normal(0, 0.1), rng.normal(0, 0.08), rng.normal(0, 0.1), rng.normal(0, 0.12))
    m = frame_matrix(q, jitter)
    border = int(rng.choice([cv2.BORDER_REPLICATE, cv2.BORDER_REFLECT, cv2.BORDER_CONSTANT], p=[0.8, 0.1, 0.1]))
    from ..face.segment import to_frame

    frame = to_frame(crop, m, border)
    size = (FRAME_SIZE, FRAME_SIZE)
    lab_f = cv2.warpAffine(lab.astype(np.float32), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(lab.shape, np.float32), m, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    unk_f = cv2.warpAffine(unk.astype(np.float32), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    weight = (inside > 0.99) & (unk_f < 0.01)
    return Sample(frame, (lab_f > 0.5).astype(np.uint8), weight.astype(np.uint8))


# ----------------------------------------------------------------------------- the dataset


def build_dataset(landmarks_npz: PathLike, out: PathLike, count: int, seed: int = 0, progress: bool = True) -> Path:
    """``count`` samples drawn on the cached faces, saved as one npz (frames, labels, weights, faces)."""
    from tqdm import tqdm

    cache = np.load(landmarks_npz, allow_pickle=False)
    files, points, faces_dir = cache["files"], cache["points"], Path(str(cache["faces_dir"]))
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    labels = np.zeros((count, FRAME_SIZE, FRAME_SIZE), np.uint8)
    weights = np.zeros((count, FRAME_SIZE, FRAME_SIZE), np.uint8)
    order = rng.permutation(len(files))
    face_of = np.zeros(count, np.int64)

    def load(i):
        return np.ascontiguousarray(cv2.imread(str(faces_dir / files[i]), cv2.IMREAD_COLOR)[:, :, ::-1])

    for k in tqdm(range(count), desc="segmenter data", unit="sample", disable=not progress):
        i = int(order[k % len(order)])
        other = load(int(rng.integers(len(files))))
        s = draw_sample(load(i), points[i], rng, other)
        frames[k], labels[k], weights[k], face_of[k] = s.frame, s.label, s.weight, i
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, frames=frames, labels=labels, weights=weights, faces=files[face_of])
    return out
