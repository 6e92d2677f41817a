"""Synthetic face masks on clean faces, with the exact ground truth kept (``stylegan-unmask synth-masks``).

For each clean face the 68 landmarks are found with our front end, and a mask
is drawn fitted to them:

* **shape**: the top edge is a smooth curve from the left cheek (landmark 1)
  under the left eye, over the nose bridge (between landmarks 28 and 29), under
  the right eye to the right cheek (landmark 15); the bottom edge follows the
  jaw (landmarks 2-14) pushed outward, furthest under the chin. It always
  covers the mouth (48-67) and the nose tip and wings (30-35), and never the
  eyes: the eye contours (36-41, 42-47) grown by :data:`EYE_CLEARANCE`
  inter-ocular distances are cut out of everything drawn.
* **styles** (:data:`STYLES`): ``surgical`` (blue/white/green/pink, three
  horizontal pleats, ear loops), ``kn95`` (white/grey, a centre seam, a
  stitched border, ear loops), ``cloth`` (a palette colour, solid, striped,
  dotted or checked, soft folds, loops sometimes), ``black`` (dark fabric,
  faint highlights). Every mask is shaded: the photo's own lighting (blurred
  luminance under the mask), a random light gradient, darkening toward the
  sides and along the edge.
* **randomness**: one generator per face seeded from ``(seed, crc32(face id))``,
  so a rerun, or a run over a subset, draws the same mask for the same face.

Output, in the paired layout ``eval-unmask`` reads::

    OUT/<id>/masked.png   the face with the mask (PNG: lossless)
    OUT/<id>/clean.png    the clean face (the decoded input pixels)
    OUT/<id>/gt_mask.png  255 wherever masked differs from clean may differ (mask body + ear loops), else 0
    OUT/index.csv         id, source file, style, colour, pattern, ear loops, seed, mask share, detected

``masked`` equals ``clean`` bit for bit outside ``gt_mask``: the mask is
rasterised anti-aliased into an alpha, alpha below 1/8 is dropped, and
``gt_mask`` is exactly ``alpha > 0``.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..errors import UnmaskError
from ..face import detect
from ..face.landmarks import find_landmarks
from ..images import blurred_luminance, load_image, save_image
from ..runs.bookkeeping import describe_error
from ..runs.files import list_images, plan_items
from .metrics import FACE_IOU

PathLike = Union[str, "os.PathLike[str]"]

STYLES = ("surgical", "cloth", "kn95", "black")
#: The eye contours grown by this many inter-ocular distances are never covered.
EYE_CLEARANCE = 0.15
#: Alpha below this is not drawn (so every pixel in gt_mask is visibly covered).
MIN_ALPHA = 1 / 8
_SHIFT = 4  # OpenCV sub-pixel bits for drawing
INDEX_FIELDS = ("id", "source", "style", "colour", "pattern", "ear_loops", "seed", "mask_frac", "detected")

_SURGICAL = {"blue": (150, 193, 226), "white": (236, 238, 240), "green": (150, 206, 192), "pink": (232, 183, 198)}
_KN95 = {"white": (238, 236, 231), "grey": (200, 201, 204), "ivory": (243, 238, 222)}
_CLOTH = {"navy": (36, 46, 84), "red": (158, 32, 44), "grey": (118, 119, 124), "olive": (96, 106, 62),
          "rose": (208, 140, 160), "denim": (72, 96, 140), "mustard": (196, 156, 48), "teal": (32, 120, 124)}
_BLACK = {"black": (27, 27, 31), "charcoal": (46, 46, 50)}


@dataclass
class MaskStyle:
    """What was drawn on one face (a row of index.csv)."""

    style: str
    colour_name: str
    colour: Tuple[int, int, int]
    pattern: str = "plain"
    ear_loops: bool = True
    params: Dict[str, float] = field(default_factory=dict)

    @property
    def colour_hex(self) -> str:
        return "#%02x%02x%02x" % self.colour


@dataclass
class SynthMask:
    masked: np.ndarray  # HxWx3 uint8
    gt: np.ndarray  # HxW bool
    style: MaskStyle
    alpha: np.ndarray  # HxW float32


def face_rng(seed: int, face_id: str) -> np.random.Generator:
    """The per-face generator: the same (seed, id) always draws the same mask."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(face_id.encode("utf-8"))])


def choose_style(rng: np.random.Generator, styles: Sequence[str] = STYLES) -> MaskStyle:
    name = str(rng.choice(list(styles)))
    palette = {"surgical": _SURGICAL, "kn95": _KN95, "cloth": _CLOTH, "black": _BLACK}[name]
    colour_name = str(rng.choice(list(palette)))
    jitter = rng.integers(-8, 9, size=3)
    colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(palette[colour_name], jitter))
    pattern = "pleats" if name == "surgical" else "seam" if name == "kn95" else "plain"
    if name == "cloth":
        pattern = str(rng.choice(["plain", "stripes", "dots", "checks"]))
    loops = name in ("surgical", "kn95") or (name == "cloth" and bool(rng.random() < 0.5))
    params = {
        "top_gap": float(rng.uniform(0.20, 0.30)),  # top edge below the eyes, in IOD
        "bridge": float(rng.uniform(0.0, 0.6)),  # nose-bridge point between landmarks 28 (0) and 29 (1)
        "side_out": float(rng.uniform(0.02, 0.10)),  # beyond the cheek line
        "chin_out": float(rng.uniform(0.12, 0.30)),  # under the chin
        "light_u": float(rng.uniform(-0.12, 0.12)),
        "light_v": float(rng.uniform(-0.10, 0.10)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "angle": float(rng.uniform(-0.5, 0.5)),
    }
    return MaskStyle(name, colour_name, colour, pattern, loops, params)


# ----------------------------------------------------------------------------- geometry


def _frame(p: np.ndarray):
    left_eye, right_eye = p[36:42].mean(0), p[42:48].mean(0)
    iod = float(np.linalg.norm(right_eye - left_eye))
    if not np.isfinite(iod) or iod < 2:
        raise UnmaskError(f"landmarks are degenerate (eye distance {iod:.2g} px)")
    right = (right_eye - left_eye) / iod
    down = np.array([-right[1], right[0]])
    if np.dot(p[48:68].mean(0) - p[36:48].mean(0), down) < 0:
        down = -down
    return iod, right, down


def _catmull_rom(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """A smooth curve through ``points`` (centripetal-free, uniform Catmull-Rom; ends repeated)."""
    pts = np.vstack([points[:1], points, points[-1:]])
    out = []
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[i + 1], pts[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1:])
    return np.vstack(out)


def mask_outline(points68, style: MaskStyle) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The mask body's polygon (Nx2, photo pixels) and named anchor points (for loops and shading)."""
    p = np.asarray(points68, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        raise UnmaskError(f"expected 68x2 finite landmarks, got shape {p.shape}")
    iod, right, down = _frame(p)
    k = style.params

    def lowest(eye):
        return eye[int(np.argmax(eye @ down))]

    cheek_l = p[1] - k["side_out"] * iod * right
    cheek_r = p[15] + k["side_out"] * iod * right
    under_l = lowest(p[36:42]) + k["top_gap"] * iod * down
    under_r = lowest(p[42:48]) + k["top_gap"] * iod * down
    under_l = under_l + (p[36:42].mean(0) - under_l) @ right * right  # below the eye centre
    under_r = under_r + (p[42:48].mean(0) - under_r) @ right * right
    # the cheek ends sit no higher than just above the under-eye points (clear of the eyes' outer corners)
    cheek_l = cheek_l + max(0.0, float((under_l - cheek_l) @ down) - 0.1 * iod) * down
    cheek_r = cheek_r + max(0.0, float((under_r - cheek_r) @ down) - 0.1 * iod) * down
    bridge = p[28] + k["bridge"] * (p[29] - p[28])
    top = _catmull_rom(np.array([cheek_l, under_l, bridge, under_r, cheek_r]))

    centre = p[33]
    jaw = []
    for i in range(14, 1, -1):  # right jaw to left jaw, under the chin
        out = p[i] - centre
        n = np.linalg.norm(out)
        out = out / n if n > 1e-6 else down
        w = np.cos((i - 8) / 6 * np.pi / 2) ** 2  # 1 at the chin (8), ~0 at the cheeks
        jaw.append(p[i] + iod * (k["side_out"] + (k["chin_out"] - k["side_out"]) * w) * out)
    bottom = _catmull_rom(np.vstack([cheek_r, np.array(jaw), cheek_l]))
    polygon = np.vstack([top, bottom[1:-1]])
    chin = np.array(jaw)[6]
    anchors = {"cheek_l": cheek_l, "cheek_r": cheek_r, "bridge": bridge, "chin": chin,
               "low_l": np.array(jaw)[-2], "low_r": np.array(jaw)[1],
               "ear_l": p[0] - 0.25 * iod * right + 0.05 * iod * down,
               "ear_r": p[16] + 0.25 * iod * right + 0.05 * iod * down,
               "right": right, "down": down, "iod": np.array(iod)}
    return polygon, anchors


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * (1 << _SHIFT)).astype(np.int32)


def eye_zone(points68, shape, clearance: float = EYE_CLEARANCE) -> np.ndarray:
    """Both eye contours (hulls of 36-41, 42-47) grown by ``clearance`` IOD: never covered by a mask."""
    p = np.asarray(points68, np.float64)
    iod, _, _ = _frame(p)
    zone = np.zeros(shape[:2], np.uint8)
    grow = max(1, int(round(2 * clearance * iod)))
    for eye in (p[36:42], p[42:48]):
        hull = cv2.convexHull(eye.astype(np.float32))[:, 0].astype(np.float64)
        cv2.fillPoly(zone, [_fixed(hull)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.polylines(zone, [_fixed(np.vstack([hull, hull[:1]]))], False, 1, thickness=grow,
                      lineType=cv2.LINE_8, shift=_SHIFT)
    return zone.astype(bool)


def must_cover(points68) -> np.ndarray:
    """Points a mask must cover: the mouth (48-67) and the nose tip and wings (30-35)."""
    p = np.asarray(points68, np.float64)
    return np.vstack([p[30:36], p[48:68]])


# ----------------------------------------------------------------------------- drawing


def _coverage(shape, draw) -> np.ndarray:
    canvas = np.zeros(shape[:2], np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255.0


def draw_mask(clean, points68, rng: np.random.Generator, styles: Sequence[str] = STYLES,
              style: Optional[MaskStyle] = None) -> SynthMask:
    """Draw a mask on ``clean`` (HxWx3 uint8) fitted to its 68 landmarks."""
    img = np.asarray(clean)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    p = np.asarray(points68, np.float64)
    style = style or choose_style(rng, styles)
    h, w = img.shape[:2]
    polygon, a = mask_outline(p, style)
    iod = float(a["iod"])
    right, down = a["right"], a["down"]

    # the body (anti-aliased), plus the mouth/nose hull so they are always covered
    def body_draw(c):
        cv2.fillPoly(c, [_fixed(polygon)], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        hull = cv2.convexHull(must_cover(p).astype(np.float32))[:, 0]
        cv2.fillPoly(c, [_fixed(hull)], 255, lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.polylines(c, [_fixed(np.vstack([hull, hull[:1]]))], False, 255,
                      thickness=max(1, int(round(0.16 * iod))), lineType=cv2.LINE_AA, shift=_SHIFT)

    body = _coverage(img.shape, body_draw)
    loops = np.zeros((h, w), np.float32)
    if style.ear_loops:
        thick = max(1, int(round(0.03 * iod)))

        def loops_draw(c):
            for side in ("l", "r"):
                ear, hi, lo = a[f"ear_{side}"], a[f"cheek_{side}"], a[f"low_{side}"]
                for start in (hi, lo):
                    mid = (start + ear) / 2 + (0.12 * iod) * (-down if start is hi else down)
                    t = np.linspace(0, 1, 24)[:, None]
                    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * mid + t ** 2 * ear
                    cv2.polylines(c, [_fixed(curve)], False, 255, thickness=thick, lineType=cv2.LINE_AA,
                                  shift=_SHIFT)

        loops = _coverage(img.shape, loops_draw)
    alpha = np.maximum(body, loops)
    alpha[alpha < MIN_ALPHA] = 0.0
    alpha[eye_zone(p, img.shape)] = 0.0
    gt = alpha > 0
    if not gt.any():
        raise UnmaskError("the mask falls outside the photo")

    # colour only in the bounding box of what is drawn (with context for the lighting blur)
    ys, xs = np.nonzero(gt)
    pad = int(np.ceil(0.7 * iod)) + 4
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    offset = np.array([x0, y0], np.float64)
    local = {k: (v - offset if isinstance(v, np.ndarray) and v.shape == (2,) and k not in ("right", "down") else v)
             for k, v in a.items()}
    colour = _texture(img[y0:y1, x0:x1], style, rng, local, gt[y0:y1, x0:x1], body[y0:y1, x0:x1] > 0)
    loop_colour = np.clip(np.asarray(style.colour, np.float32) * 0.92 + 8, 0, 255)
    is_loop = (loops[y0:y1, x0:x1] > body[y0:y1, x0:x1])[:, :, None]
    colour = np.where(is_loop, loop_colour[None, None, :], colour)
    out = img.copy()
    a3 = alpha[ys, xs][:, None]
    out[ys, xs] = np.clip(np.rint(img[ys, xs].astype(np.float32) * (1 - a3) + colour[ys - y0, xs - x0] * a3),
                          0, 255).astype(np.uint8)
    return SynthMask(masked=out, gt=gt, style=style, alpha=alpha)


def _texture(img, style: MaskStyle, rng, a, gt, body) -> np.ndarray:
    """HxWx3 float colour of the mask (only meaningful where gt)."""
    h, w = img.shape[:2]
    iod = float(a["iod"])
    right, down = [float(v) for v in a["right"]], [float(v) for v in a["down"]]  # python floats keep float32
    k = style.params
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rel_x, rel_y = xx - a["bridge"][0], yy - a["bridge"][1]
    along = rel_x * right[0] + rel_y * right[1]  # px along the eye line, 0 at the bridge
    depth = rel_x * down[0] + rel_y * down[1]  # px downward from the bridge
    half = max(1.0, float(np.linalg.norm(a["cheek_r"] - a["cheek_l"])) / 2)
    height = max(1.0, float((a["chin"] - a["bridge"]) @ down))
    u = np.clip(along / half, -1.5, 1.5)
    v = depth / height

    base = np.asarray(style.colour, np.float32)
    col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    shade = np.ones((h, w), np.float32)
    add = np.zeros((h, w), np.float32)
    if style.pattern == "pleats":
        for vk in (0.34, 0.52, 0.70):
            c = vk + rng.uniform(-0.03, 0.03) + 0.06 * u ** 2
            shade -= 0.16 * np.exp(-((v - c) / 0.018) ** 2)
            shade += 0.07 * np.exp(-((v - c + 0.045) / 0.03) ** 2)
    elif style.pattern == "seam":
        shade -= 0.25 * np.exp(-(along / max(1.0, 0.012 * iod)) ** 2)
        shade *= np.where(along < 0, 1.0 - 0.06 * np.sign(k["light_u"] + 1e-6), 1.0)
        dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 3)
        stitch = np.abs(dist - 0.06 * iod) < max(0.6, 0.008 * iod)
        shade -= 0.10 * stitch
    elif style.pattern in ("stripes", "checks", "dots"):
        ang = k["angle"]
        s = along * np.cos(ang) + depth * np.sin(ang)
        t = -along * np.sin(ang) + depth * np.cos(ang)
        period = max(3.0, 0.22 * iod)
        second = np.asarray(rng.integers(0, 256, size=3), np.float32)
        if style.pattern == "stripes":
            m = (np.sin(2 * np.pi * t / period + k["phase"]) > 0.3).astype(np.float32)
        elif style.pattern == "checks":
            m = 0.5 * ((np.sin(2 * np.pi * t / period) > 0).astype(np.float32)
                       + (np.sin(2 * np.pi * s / period) > 0).astype(np.float32))
        else:
            cs, ct = np.mod(s, period) - period / 2, np.mod(t, period) - period / 2
            m = (cs ** 2 + ct ** 2 < (0.22 * period) ** 2).astype(np.float32)
        m = cv2.GaussianBlur(m, (0, 0), 0.6)
        col = col * (1 - 0.8 * m[:, :, None]) + second[None, None, :] * 0.8 * m[:, :, None]
    if style.style in ("cloth", "black"):  # soft folds
        for _ in range(2):
            c = rng.uniform(0.3, 0.8)
            add += rng.uniform(-0.08, 0.08) * np.exp(-((v - c - 0.08 * np.sin(3 * u + k["phase"])) / 0.06) ** 2)
        if style.style == "black":  # faint sheen along the nose ridge
            add += 0.5 * np.exp(-(along / (0.25 * iod)) ** 2 - ((v - 0.2) / 0.25) ** 2)
    # lighting: the photo's own (blurred luminance under the mask), a gradient, curvature, edge darkening
    lum = blurred_luminance(img, max(1.0, 0.2 * iod))
    ref = float(np.median(lum[gt])) if gt.any() else 1.0
    photo_light = np.clip(1 + 0.5 * (lum / max(ref, 1.0) - 1), 0.7, 1.25)
    gradient = 1 + k["light_u"] * u + k["light_v"] * (v - 0.5)
    curvature = 1 - 0.14 * np.clip(u, -1, 1) ** 2
    dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 3)
    edge = 1 - 0.12 * np.exp(-dist / max(1.0, 0.05 * iod))
    light = (shade * photo_light * gradient * curvature * edge)[:, :, None]
    grain = rng.normal(0, 2.5 if style.style != "black" else 1.5, size=(h, w, 1)).astype(np.float32)
    col = col * light + grain + (add * 40)[:, :, None]
    return np.clip(col, 0, 255)


# ----------------------------------------------------------------------------- folders


@dataclass
class SynthRecord:
    """One face of a ``synth-masks`` run (a row of index.csv, or a failure)."""

    id: str
    source: str
    status: str  # ok | failed
    error: str = ""
    style: Optional[MaskStyle] = None
    seed: int = 0
    mask_frac: Optional[float] = None
    detected: Optional[bool] = None  # our detector finds the face once masked (realism check)

    def row(self) -> Dict[str, str]:
        s = self.style
        return {"id": self.id, "source": self.source, "style": s.style if s else "",
                "colour": f"{s.colour_name} {s.colour_hex}" if s else "", "pattern": s.pattern if s else "",
                "ear_loops": ("1" if s.ear_loops else "0") if s else "", "seed": str(self.seed),
                "mask_frac": "" if self.mask_frac is None else f"{self.mask_frac:.4f}",
                "detected": "" if self.detected is None else ("1" if self.detected else "0")}


@dataclass
class SynthReport:
    out_dir: Path
    records: List[SynthRecord]
    index_csv: Path

    @property
    def ok(self) -> List[SynthRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def failed(self) -> List[SynthRecord]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def detection_rate(self) -> Optional[float]:
        checked = [r.detected for r in self.ok if r.detected is not None]
        return sum(checked) / len(checked) if checked else None


def parse_styles(text: Union[str, Sequence[str]]) -> List[str]:
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [s for s in names if s not in STYLES]
    if bad or not names:
        raise UnmaskError(f"--styles {','.join(names) or '(empty)'}: choose from {', '.join(STYLES)}")
    return list(dict.fromkeys(names))


def masked_face_found(masked: np.ndarray, face_box, detector: str = "auto") -> bool:
    """Does our detector find the face (IoU >= 0.3 with its box on the clean photo) once it wears the mask?"""
    return any(detect.box_iou(f.box, face_box) >= FACE_IOU for f in detect.detect_faces(masked, backend=detector))


def synth_folder(faces_dir: PathLike, out_dir: PathLike, *, styles: Union[str, Sequence[str]] = STYLES,
                 seed: int = 0, limit: Optional[int] = None, backend: str = "auto", check: bool = True,
                 recursive: bool = False, progress: bool = True, echo=None) -> SynthReport:
    """Draw a mask on every face in ``faces_dir``; write the paired layout into ``out_dir``.

    A face that cannot be read or has no detectable face is reported and
    skipped. ``check``: run our detector on every masked face (``detected``).
    """
    styles = parse_styles(styles)
    faces_dir, out_dir = Path(faces_dir), Path(out_dir)
    if not faces_dir.is_dir():
        raise UnmaskError(f"{faces_dir}: input folder not found")
    if out_dir.exists() and not out_dir.is_dir():
        raise UnmaskError(f"{out_dir}: exists and is not a folder")
    files = list_images(faces_dir, recursive=recursive, exclude=[out_dir])
    if not files:
        raise UnmaskError(f"{faces_dir}: no images found")
    items = plan_items(faces_dir, files, out_dir)
    if limit is not None:
        items = items[: max(0, int(limit))]
    out_dir.mkdir(parents=True, exist_ok=True)
    records: List[SynthRecord] = []
    bar = tqdm(items, desc="synth-masks", unit="face", disable=not progress)
    say = echo or (lambda line: bar.write(line, file=sys.stderr))

    def write_index() -> Path:
        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, lineterminator="\n")
        wr.writeheader()
        for r in records:
            if r.status == "ok":
                wr.writerow(r.row())
        return atomic_write_text(out_dir / "index.csv", buf.getvalue())

    try:
        for it in bar:
            face_id = it.out_rel
            rec = SynthRecord(id=face_id, source=it.file, status="failed", seed=int(seed))
            try:
                clean = load_image(it.source).pixels
                lm = find_landmarks(clean, backend=backend, path=it.source)
                synth = draw_mask(clean, lm.points, face_rng(seed, face_id), styles)
                protect = [it.source]
                # masked.* last: a pair folder counts as a pair only once masked + gt_mask exist
                save_image(it.outdir / "clean.png", clean, protect=protect)
                save_image(it.outdir / "gt_mask.png", synth.gt, protect=protect)
                save_image(it.outdir / "masked.png", synth.masked, protect=protect)
                rec.status, rec.style, rec.mask_frac = "ok", synth.style, float(synth.gt.mean())
                if check:
                    rec.detected = masked_face_found(synth.masked, lm.box if lm.box is not None else
                                                     (0, 0, clean.shape[1], clean.shape[0]))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one bad face never stops the run
                rec.error = describe_error(exc)
                say(f"failed: {it.file}: {rec.error}")
            records.append(rec)
            if check and rec.status == "ok":
                found = [r.detected for r in records if r.detected is not None]
                bar.set_postfix(detected=f"{sum(found)}/{len(found)}")
    finally:
        bar.close()
        index = write_index()
    return SynthReport(out_dir=out_dir, records=records, index_csv=index)
