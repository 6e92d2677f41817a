"""How well the mask region covers real face masks: detection, coverage, overreach.

Both regions are measured on the same detections, side by side: ``landmarks``
(the polygon of ``face/mask.py``) and ``segment`` (the network of
``face/segment.py``, the default region).

Two kinds of folder, searched recursively:

* **paired** (like ``data/dev/paired``): every folder holding ``gt_mask.png``
  and ``masked.*`` is one pair (``clean.*`` optional), e.g.
  ``<source>/<id>/{masked.jpg, clean.jpg, gt_mask.png}``; an ``index.csv``
  beside the pair folders may flag pairs (``other_pasted_masks_outside_gt``).
  Landmarks are found on the *masked* photo (what the tool sees in real use),
  the mask region is drawn from them and compared with the ground truth.
* **plain**: a folder of photos of masked people; only the detection rate.

Metric definitions (``docs/masks.md``):

* *coverage* = share of the GT mask **body** inside our region. The GT also
  holds the ear straps, thin lines that run outside the face to the ears. The
  body is recovered with the dataset's own recipe: opening with a disk of
  radius ``max(4, round(8 s))`` (``s = min(h, w) / 512``), largest piece,
  holes filled. *coverage_full* counts the straps too (reported alongside).
* *overreach* = share of our region not on **any** GT pixel (strap pixels
  inside our region are not overreach: they are mask).
* *eye_overlap* = share of the eye area (contours of landmarks 36-47 found on
  the **clean** photo, i.e. where the eyes really are) inside our region.
* *visible_eye_overlap* = the same for the part of the eye area the GT mask
  leaves uncovered. Where a pasted mask lies over an eye, replacing that
  fabric is the job, so only the visible eye counts as an eye the region
  must never touch.
* *detection rate* = share of photos where landmarks were found.

Pairs flagged ``other_pasted_masks_outside_gt = 1`` (the synthetic tool pasted
masks on other faces too, which the GT omits) are excluded from coverage and
overreach and counted for detection only.
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import scipy.ndimage as ndi

from ..atomic import atomic_file
from ..errors import InputImageError, UnmaskError, WeightsMissingError
from ..face.landmarks import find_landmarks
from ..face.mask import DEFAULT_MARGIN, mask_from_landmarks
from ..images import IMAGE_EXTENSIONS, ensure_not_input, load_image

PathLike = Union[str, "os.PathLike[str]"]

#: Targets the default mask must meet on the dev paired set (issue "Face front end").
TARGETS = {"coverage_median": 0.98, "coverage_p10": 0.93, "overreach_median": 0.40, "detection_rate": 0.95}

# (image RGB uint8, path) -> 68x2 points; raises an UnmaskError (NoFaceError) when there is no face.
LandmarkFn = Callable[[np.ndarray, Path], np.ndarray]


@dataclass
class ItemResult:
    """One photo's outcome; the figures are None when not measured."""

    source: str
    id: str
    path: str
    detected: bool
    coverage: Optional[float] = None
    coverage_full: Optional[float] = None
    overreach: Optional[float] = None
    eye_overlap: Optional[float] = None
    visible_eye_overlap: Optional[float] = None
    excluded: bool = False
    error: str = ""
    region: str = "landmarks"  # which region the figures are of (see REGIONS)


#: The regions ``eval-masks`` can measure.
REGIONS = ("landmarks", "segment")
# (image RGB uint8, 68x2 points) -> bool region in the image's pixels
RegionFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def region_fn(region: str, margin: float = DEFAULT_MARGIN) -> RegionFn:
    """The function that draws ``region`` for one photo."""
    if region == "landmarks":
        return lambda image, points: mask_from_landmarks(points, image.shape[:2], margin=margin)
    if region == "segment":
        from ..face.segment import segment_face

        return lambda image, points: segment_face(image, points).region
    raise ValueError(f"unknown region {region!r}; choose from {', '.join(REGIONS)}")


@dataclass
class Summary:
    """Figures over a group of items (one source, or all)."""

    name: str
    n: int
    detected: int
    measured: int
    coverage_median: Optional[float]
    coverage_p10: Optional[float]
    coverage_mean: Optional[float]
    coverage_full_median: Optional[float]
    coverage_full_p10: Optional[float]
    overreach_median: Optional[float]
    overreach_p90: Optional[float]
    eyes_checked: int = 0
    eyes_touched: int = 0  # photos whose region covers any of the (clean-photo) eye area
    visible_eyes_touched: int = 0  # ... any of the eye area that the GT mask leaves visible

    @property
    def detection_rate(self) -> float:
        return self.detected / self.n if self.n else 0.0


@dataclass
class EvalReport:
    kind: str  # "paired" or "plain"
    items: List[ItemResult]
    summaries: List[Summary] = field(default_factory=list)  # per source, then "all"
    margin: float = DEFAULT_MARGIN
    backend: str = "auto"
    region: str = "landmarks"

    @property
    def overall(self) -> Summary:
        return self.summaries[-1]

    @property
    def failures(self) -> List[ItemResult]:
        return [r for r in self.items if not r.detected]

    def meets_targets(self) -> Dict[str, bool]:
        o = self.overall
        checks = {"detection_rate": o.detection_rate >= TARGETS["detection_rate"]}
        if self.kind == "paired":
            checks["coverage_median"] = (o.coverage_median is not None
                                         and o.coverage_median >= TARGETS["coverage_median"])
            checks["coverage_p10"] = o.coverage_p10 is not None and o.coverage_p10 >= TARGETS["coverage_p10"]
            checks["overreach_median"] = (o.overreach_median is not None
                                          and o.overreach_median <= TARGETS["overreach_median"])
        return checks


# ----------------------------------------------------------------------------- metrics


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def gt_body(gt: np.ndarray) -> np.ndarray:
    """The GT mask without its ear straps (the dataset's own body/strap split)."""
    gt = np.asarray(gt, bool)
    s = min(gt.shape) / 512
    r = max(4, round(8 * s))
    # Opening with a disk, outside the image counting as empty (as scipy.ndimage.binary_opening
    # does), done by OpenCV on a zero-padded copy: same pixels, ~10x faster on 1024-px masks.
    padded = np.pad(gt.astype(np.uint8), 2 * r)
    kernel = _disk(r).astype(np.uint8)
    opened = cv2.dilate(cv2.erode(padded, kernel), kernel)[2 * r:-2 * r, 2 * r:-2 * r].astype(bool)
    labels, n = ndi.label(opened)
    if n == 0:
        return gt
    sizes = ndi.sum(opened, labels, range(1, n + 1))
    return ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def coverage_overreach(ours: np.ndarray, gt: np.ndarray) -> Tuple[float, float, float]:
    """(coverage of the GT body, coverage of the whole GT, overreach beyond the whole GT)."""
    ours = np.asarray(ours, bool)
    gt = np.asarray(gt, bool)
    if ours.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {ours.shape} vs {gt.shape}")
    body = gt_body(gt)
    coverage = float((ours & body).sum() / body.sum()) if body.any() else float("nan")
    coverage_full = float((ours & gt).sum() / gt.sum()) if gt.any() else float("nan")
    overreach = float((ours & ~gt).sum() / ours.sum()) if ours.any() else 0.0
    return coverage, coverage_full, overreach


def eye_area(points68, shape) -> np.ndarray:
    """Both eyes (filled contours of landmarks 36-41 and 42-47) as a bool mask."""
    p = np.asarray(points68, np.float64)
    canvas = np.zeros(shape[:2], np.uint8)
    for eye in (p[36:42], p[42:48]):
        cv2.fillPoly(canvas, [np.round(eye * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def eye_overlap(ours: np.ndarray, clean_points68, gt: Optional[np.ndarray] = None) -> Optional[float]:
    """Share of the true eye area inside our region (None when the eyes are off-image);
    with ``gt``, only the eye area the GT mask leaves visible counts."""
    eyes = eye_area(clean_points68, ours.shape)
    if gt is not None:
        eyes &= ~np.asarray(gt, bool)
    return float((ours & eyes).sum() / eyes.sum()) if eyes.any() else None


# ----------------------------------------------------------------------------- folders


@dataclass
class PairedItem:
    source: str
    id: str
    masked: Path
    clean: Optional[Path]
    gt: Path
    flagged: bool


def _visible_dirs(root: Path):
    """``root`` and every folder below it, sorted, skipping hidden ones."""
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath)


def _read_index(folder: Path) -> List[dict]:
    index = folder / "index.csv"
    if not index.is_file():
        return []
    with open(index, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def _first(folder: Path, stem: str) -> Optional[Path]:
    found = sorted(p for p in folder.glob(stem + ".*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return found[0] if found else None


def find_paired_items(folder: PathLike) -> List[PairedItem]:
    """Every folder below ``folder`` with ``gt_mask.png`` + ``masked.*``, sorted; [] if none.

    ``source`` is the first path component below ``folder`` (``prajnasb`` for
    ``paired/prajnasb/14``), or ``folder``'s own name when the pairs sit directly in it.
    """
    root = Path(folder)
    flags_by_dir: Dict[Path, Dict[str, bool]] = {}
    items: List[PairedItem] = []
    for d in _visible_dirs(root):
        gt = d / "gt_mask.png"
        masked = _first(d, "masked")
        if not (gt.is_file() and masked is not None):
            continue
        parent = d.parent
        if parent not in flags_by_dir:
            flags_by_dir[parent] = {row.get("id", ""): row.get("other_pasted_masks_outside_gt", "0").strip() == "1"
                                    for row in _read_index(parent)}
        rel = d.relative_to(root).parts
        source = rel[0] if len(rel) > 1 else (root.name if rel else root.parent.name)
        flagged = flags_by_dir[parent].get(d.name, False)
        items.append(PairedItem(source, d.name, masked, _first(d, "clean"), gt, flagged))
    return items


def find_plain_images(folder: PathLike) -> List[Tuple[str, Path]]:
    """(source, path) for every photo below ``folder``, sorted.

    The source comes from an ``index.csv`` (columns ``file``, ``source``) when
    there is one, else from the first sub-folder, else it is ``all``.
    """
    root = Path(folder)
    out: List[Tuple[str, Path]] = []
    for d in _visible_dirs(root):
        source_of = {row["file"]: row["source"] for row in _read_index(d) if row.get("file") and row.get("source")}
        rel = d.relative_to(root).parts
        for p in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                        and p.suffix.lower() in IMAGE_EXTENSIONS):
            out.append((source_of.get(p.name, rel[0] if rel else "all"), p))
    return out


def default_landmark_fn(backend: str = "auto") -> LandmarkFn:
    """Landmarks on the full photo with the project's detector (largest face)."""
    def find(image: np.ndarray, path: Path) -> np.ndarray:
        return find_landmarks(image, backend=backend, path=path).points

    return find


# ----------------------------------------------------------------------------- evaluation


def evaluate_folder(
    folder: PathLike,
    backend: str = "auto",
    margin: float = DEFAULT_MARGIN,
    limit: Optional[int] = None,
    landmark_fn: Optional[LandmarkFn] = None,
    progress: bool = True,
    eyes: bool = True,
    region: str = "landmarks",
) -> EvalReport:
    """Evaluate one ``region`` on every pair (or plain photo) below ``folder`` (see :func:`evaluate_regions`)."""
    return evaluate_regions(folder, (region,), backend=backend, margin=margin, limit=limit, landmark_fn=landmark_fn,
                            progress=progress, eyes=eyes)[region]


def evaluate_regions(
    folder: PathLike,
    regions: Sequence[str] = REGIONS,
    backend: str = "auto",
    margin: float = DEFAULT_MARGIN,
    limit: Optional[int] = None,
    landmark_fn: Optional[LandmarkFn] = None,
    progress: bool = True,
    eyes: bool = True,
) -> Dict[str, EvalReport]:
    """One report per region, all on the same detections; one bad file never stops the run.

    ``limit`` takes the first N items in sorted order (deterministic).
    ``landmark_fn`` replaces the detector (tests, cached landmarks).
    ``eyes`` also finds landmarks on each pair's clean photo, to check that
    the region stays off the real eyes (one more detection per pair).
    ``margin`` is the landmark region's.
    """
    from tqdm import tqdm

    root = Path(folder)
    if not root.is_dir():
        raise InputImageError(root, "not a folder")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    fns = {r: region_fn(r, margin) for r in regions}
    find = landmark_fn or default_landmark_fn(backend)
    pairs = find_paired_items(root)
    kind = "paired" if pairs else "plain"
    todo: Sequence = pairs if pairs else find_plain_images(root)
    if not todo:
        raise InputImageError(root, "no paired items (folders with masked.jpg + gt_mask.png) and no photos found")
    if limit is not None:
        todo = todo[: max(0, int(limit))]

    results: Dict[str, List[ItemResult]] = {r: [] for r in regions}
    for entry in tqdm(todo, desc=f"eval-masks {root.name}", unit="img", disable=not progress):
        if kind == "paired":
            for r, res in _evaluate_pair(entry, find, fns, eyes).items():
                results[r].append(res)
        else:
            source, path = entry
            found = _evaluate_plain(source, path, find)
            for r in regions:
                results[r].append(replace(found, region=r))
    return {r: EvalReport(kind, results[r], summarize(results[r]), margin=margin, backend=backend, region=r)
            for r in regions}


def _detect(path: Path, find: LandmarkFn):
    """(image, points or None, error text)."""
    try:
        image = load_image(path).pixels
    except UnmaskError as e:
        return None, None, str(e)
    try:
        return image, np.asarray(find(image, path), float), ""
    except WeightsMissingError:  # the backend cannot run at all: stop, rather than fail every photo
        raise
    except UnmaskError as e:  # NoFaceError and friends: the message names the file
        return image, None, str(e)


def _evaluate_plain(source: str, path: Path, find: LandmarkFn) -> ItemResult:
    _, points, err = _detect(path, find)
    return ItemResult(source, path.stem, str(path), points is not None, error=err)


def _evaluate_pair(item: PairedItem, find: LandmarkFn, fns: Dict[str, RegionFn], eyes: bool) -> Dict[str, ItemResult]:
    image, points, err = _detect(item.masked, find)
    base = ItemResult(item.source, item.id, str(item.masked), points is not None, excluded=item.flagged, error=err)
    out = {r: replace(base, region=r) for r in fns}
    if points is None or item.flagged:
        return out
    try:
        gt = load_image(item.gt).pixels.max(axis=2) > 127
    except UnmaskError as e:
        return {r: replace(res, error=str(e)) for r, res in out.items()}
    if gt.shape != image.shape[:2]:
        msg = f"{item.gt}: GT is {gt.shape[1]}x{gt.shape[0]}, photo is {image.shape[1]}x{image.shape[0]}"
        return {r: replace(res, error=msg) for r, res in out.items()}
    clean_points, clean_err = None, ""
    if eyes and item.clean is not None:
        clean, clean_points, clean_err = _detect(item.clean, find)
        if clean_points is not None and clean.shape[:2] != gt.shape:
            clean_points = None
    for r, fn in fns.items():
        res = out[r]
        ours = fn(image, points)
        res.coverage, res.coverage_full, res.overreach = coverage_overreach(ours, gt)
        if clean_points is not None:
            res.eye_overlap = eye_overlap(ours, clean_points)
            res.visible_eye_overlap = eye_overlap(ours, clean_points, gt)
        elif clean_err:
            res.error = f"eye check skipped: {clean_err}"
    return out


def _stat(values: List[float], q: Optional[float]) -> Optional[float]:
    """Percentile ``q`` (None: the mean) of ``values``; None when there are none."""
    if not values:
        return None
    return float(np.mean(values)) if q is None else float(np.percentile(values, q))


def summarize(results: List[ItemResult]) -> List[Summary]:
    """One summary per source (sorted), then the overall one named "all"."""
    groups: Dict[str, List[ItemResult]] = {}
    for r in results:
        groups.setdefault(r.source, []).append(r)
    out = []
    for name, rs in [(n, groups[n]) for n in sorted(groups)] + [("all", results)]:
        def values(attr):
            return [getattr(r, attr) for r in rs if getattr(r, attr) is not None and np.isfinite(getattr(r, attr))]

        cov, full, ovr, eye = values("coverage"), values("coverage_full"), values("overreach"), values("eye_overlap")
        out.append(Summary(name, len(rs), sum(r.detected for r in rs), len(cov),
                           _stat(cov, 50), _stat(cov, 10), _stat(cov, None), _stat(full, 50), _stat(full, 10),
                           _stat(ovr, 50), _stat(ovr, 90), len(eye), sum(v > 0 for v in eye),
                           sum(v > 0 for v in values("visible_eye_overlap"))))
    return out


def _eye_counts(s: Summary) -> Tuple[str, str]:
    """("touched/checked", "visible touched/checked") for a summary, "-" when nothing was checked."""
    if not s.eyes_checked:
        return "-", "-"
    return f"{s.eyes_touched}/{s.eyes_checked}", f"{s.visible_eyes_touched}/{s.eyes_checked}"


def format_report(report: EvalReport) -> str:
    """Human-readable table + failures, as printed by ``stylegan-unmask eval-masks``."""

    def f(v):
        return "    -  " if v is None else f"{v:7.4f}"

    where = "landmark polygon, margin " + f"{report.margin:g}" if report.region == "landmarks" else "segmenter"
    lines = [f"{report.kind} folder, region {report.region} ({where}), backend {report.backend}"]
    if report.kind == "paired":
        lines.append(f"{'source':<12}{'n':>5} {'detect':>7} {'measured':>8}  {'cov_med':>7} {'cov_p10':>7} "
                     f"{'cov_mean':>8}  {'full_med':>8} {'full_p10':>8}  {'over_med':>8} {'over_p90':>8}  eyes_hit  vis_eyes_hit")
        for s in report.summaries:
            eyes, vis = _eye_counts(s)
            lines.append(f"{s.name:<12}{s.n:>5} {s.detection_rate:>7.1%} {s.measured:>8}  {f(s.coverage_median)} "
                         f"{f(s.coverage_p10)}  {f(s.coverage_mean)}   {f(s.coverage_full_median)}  "
                         f"{f(s.coverage_full_p10)}   {f(s.overreach_median)}  {f(s.overreach_p90)}  {eyes:>8}  {vis:>12}")
        lines.append("cov = share of the GT mask body (straps removed) inside the region; full = with straps; "
                     "over = share of the region on no GT pixel; eyes_hit = photos whose region touches the eyes "
                     "of the clean photo; vis_eyes_hit = ... touches eye pixels the GT mask leaves visible")
        excluded = [r for r in report.items if r.excluded]
        if excluded:
            lines.append("excluded from coverage/overreach (other masks pasted outside the GT): "
                         + ", ".join(f"{r.source}/{r.id}" for r in excluded))
        touched = [r for r in report.items if r.eye_overlap]
        for r in touched:
            vis = "none" if not r.visible_eye_overlap else f"{r.visible_eye_overlap:.1%}"
            lines.append(f"  region touches the eyes: {r.source}/{r.id} ({r.eye_overlap:.1%} of the eye area; "
                         f"of the eye the GT mask leaves visible: {vis})")
    else:
        lines.append(f"{'source':<12}{'n':>5}{'detected':>10}{'rate':>9}")
        for s in report.summaries:
            lines.append(f"{s.name:<12}{s.n:>5}{s.detected:>10}{s.detection_rate:>9.1%}")
    fails = report.failures
    lines.append(f"failures ({len(fails)}):" if fails else "failures: none")
    for r in fails:
        lines.append(f"  {r.error}" if r.error else f"  {r.path}: no face found")
    checks = report.meets_targets()
    lines.append("targets: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in checks.items()))
    return "\n".join(lines)


def format_reports(reports: Dict[str, EvalReport]) -> str:
    """Every region's table, then the regions side by side (overall figures)."""
    parts = [format_report(rep) for rep in reports.values()]
    first = next(iter(reports.values()))
    if len(reports) > 1 and first.kind == "paired":
        def f(v):
            return "    -" if v is None else f"{v:.3f}"

        lines = ["side by side (all photos):", f"{'region':<10} {'detect':>7}  cov_med  cov_p10  over_med  eyes_hit  vis_eyes_hit"]
        for name, rep in reports.items():
            o = rep.overall
            eyes, vis = _eye_counts(o)
            lines.append(f"{name:<10} {o.detection_rate:>7.1%}  {f(o.coverage_median):>7}  {f(o.coverage_p10):>7}  "
                         f"{f(o.overreach_median):>8}  {eyes:>8}  {vis:>12}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_csv(report: Union[EvalReport, Sequence[EvalReport]], path: PathLike, protect: Sequence[PathLike] = ()) -> Path:
    """Per-item rows (one per photo and region), written atomically; refuses to overwrite the inputs."""
    reports = [report] if isinstance(report, EvalReport) else list(report)
    items = [r for rep in reports for r in rep.items]
    out = Path(path)
    ensure_not_input(out, [r.path for r in items] + list(protect))
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(ItemResult.__dataclass_fields__)
    with atomic_file(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for r in items:
            w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    return out
