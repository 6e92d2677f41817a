"""How well the landmark mask region covers real face masks: detection, coverage, overreach.

Two kinds of folder:

* **paired** (like ``data/dev/paired``): ``<source>/<id>/{masked.jpg, clean.*, gt_mask.png}``
  with ``<source>/index.csv``. Landmarks are found on the *masked* photo (what
  the tool sees in real use), the mask region is drawn from them and compared
  with the ground truth.
* **plain**: a folder of photos of masked people; only the detection rate.

Metric definitions (``docs/masks.md``):

* *coverage* = share of the GT mask **body** inside our region. The GT also
  holds the ear straps, thin lines that run outside the face to the ears; the
  projector does not need them hidden and no face region should reach them. The
  body is recovered with the dataset's own recipe: opening with a disk of
  radius ``max(4, round(8 s))`` (``s = min(h, w) / 512``), largest piece, holes filled.
* *overreach* = share of our region not on **any** GT pixel (strap pixels
  inside our region are not overreach: they are mask).
* *detection rate* = share of photos where landmarks were found.

Pairs flagged ``other_pasted_masks_outside_gt = 1`` (the synthetic tool pasted
masks on other faces too, which the GT omits) are excluded from coverage and
overreach and counted for detection only.
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import scipy.ndimage as ndi

from .atomic import atomic_file
from .errors import InputImageError, NoFaceError, UnmaskError
from .images import load_image
from .mask import DEFAULT_MARGIN, mask_from_landmarks

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: Targets the default mask must meet on the dev paired set (issue "Face front end").
TARGETS = {"coverage_median": 0.98, "coverage_p10": 0.93, "overreach_median": 0.40, "detection_rate": 0.95}

# (image RGB uint8, path) -> 68x2 points; raises NoFaceError when there is no face.
LandmarkFn = Callable[[np.ndarray, Path], np.ndarray]


@dataclass
class ItemResult:
    """One photo's outcome; coverage/overreach are None when not measured."""

    source: str
    id: str
    path: str
    detected: bool
    coverage: Optional[float] = None
    overreach: Optional[float] = None
    excluded: bool = False
    error: str = ""


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
    overreach_median: Optional[float]
    overreach_p90: Optional[float]

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
            checks["coverage_median"] = o.coverage_median is not None and o.coverage_median >= TARGETS["coverage_median"]
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
    opened = ndi.binary_opening(gt, structure=_disk(max(4, round(8 * s))))
    labels, n = ndi.label(opened)
    if n == 0:
        return gt
    sizes = ndi.sum(opened, labels, range(1, n + 1))
    return ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def coverage_overreach(ours: np.ndarray, gt: np.ndarray) -> tuple:
    """(coverage of the GT body, overreach beyond the whole GT); see the module docstring."""
    ours = np.asarray(ours, bool)
    gt = np.asarray(gt, bool)
    if ours.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {ours.shape} vs {gt.shape}")
    body = gt_body(gt)
    coverage = float((ours & body).sum() / body.sum()) if body.any() else float("nan")
    overreach = float((ours & ~gt).sum() / ours.sum()) if ours.any() else 0.0
    return coverage, overreach


# ----------------------------------------------------------------------------- folders


@dataclass
class PairedItem:
    source: str
    id: str
    masked: Path
    clean: Optional[Path]
    gt: Path
    flagged: bool


def find_paired_items(folder: PathLike) -> List[PairedItem]:
    """Pairs under ``folder`` (the ``paired`` root or one ``<source>`` folder); [] if none."""
    root = Path(folder)
    sources = [root] if (root / "index.csv").is_file() else sorted(d for d in root.iterdir() if d.is_dir())
    items: List[PairedItem] = []
    for src in sources:
        flags = {}
        index = src / "index.csv"
        if index.is_file():
            with open(index, newline="") as f:
                for row in csv.DictReader(f):
                    flags[row.get("id", "")] = row.get("other_pasted_masks_outside_gt", "0").strip() == "1"
        for d in sorted(p for p in src.iterdir() if p.is_dir()):
            masked, gt = d / "masked.jpg", d / "gt_mask.png"
            if not masked.is_file():
                masked = next(iter(sorted(d.glob("masked.*"))), masked)
            if not (masked.is_file() and gt.is_file()):
                continue
            clean = next(iter(sorted(d.glob("clean.*"))), None)
            items.append(PairedItem(src.name, d.name, masked, clean, gt, flags.get(d.name, False)))
    return items


def find_plain_images(folder: PathLike) -> List[tuple]:
    """(source, path) for every photo directly in ``folder``; source from index.csv when given."""
    root = Path(folder)
    source_of = {}
    index = root / "index.csv"
    if index.is_file():
        with open(index, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("file") and row.get("source"):
                    source_of[row["file"]] = row["source"]
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return [(source_of.get(p.name, "all"), p) for p in files]


def default_landmark_fn(backend: str = "auto") -> LandmarkFn:
    """Landmarks on the full photo with the project's detector (largest face)."""
    from .landmarks import find_landmarks

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
) -> EvalReport:
    """Evaluate every pair (or plain photo) in ``folder``; one bad file never stops the run.

    ``limit`` takes the first N items in sorted order (deterministic).
    ``landmark_fn`` replaces the detector (tests, cached landmarks).
    """
    from tqdm import tqdm

    root = Path(folder)
    if not root.is_dir():
        raise InputImageError(root, "not a folder")
    find = landmark_fn or default_landmark_fn(backend)
    pairs = find_paired_items(root)
    kind = "paired" if pairs else "plain"
    todo: Sequence = pairs if pairs else find_plain_images(root)
    if not todo:
        raise InputImageError(root, "no paired items (<source>/<id>/masked.jpg + gt_mask.png) and no photos found")
    if limit is not None:
        todo = todo[: max(0, int(limit))]

    results: List[ItemResult] = []
    for entry in tqdm(todo, desc=f"eval-masks {root.name}", unit="img", disable=not progress):
        if kind == "paired":
            results.append(_evaluate_pair(entry, find, margin))
        else:
            source, path = entry
            results.append(_evaluate_plain(source, path, find))
    return EvalReport(kind, results, summarize(results), margin=margin, backend=backend)


def _detect(path: Path, find: LandmarkFn):
    """(image, points or None, error text)."""
    try:
        image = load_image(path).pixels
    except UnmaskError as e:
        return None, None, str(e)
    try:
        return image, np.asarray(find(image, path), float), ""
    except NoFaceError as e:
        return image, None, str(e)
    except UnmaskError as e:
        return image, None, str(e)


def _evaluate_plain(source: str, path: Path, find: LandmarkFn) -> ItemResult:
    _, points, err = _detect(path, find)
    return ItemResult(source, path.stem, str(path), points is not None, error=err)


def _evaluate_pair(item: PairedItem, find: LandmarkFn, margin: float) -> ItemResult:
    image, points, err = _detect(item.masked, find)
    res = ItemResult(item.source, item.id, str(item.masked), points is not None, excluded=item.flagged, error=err)
    if points is None or item.flagged:
        return res
    try:
        gt = load_image(item.gt).pixels.max(axis=2) > 127
    except UnmaskError as e:
        res.error = str(e)
        return res
    if gt.shape != image.shape[:2]:
        res.error = f"{item.gt}: GT is {gt.shape[1]}x{gt.shape[0]}, photo is {image.shape[1]}x{image.shape[0]}"
        return res
    ours = mask_from_landmarks(points, gt.shape, margin=margin)
    res.coverage, res.overreach = coverage_overreach(ours, gt)
    return res


def _pct(values: List[float], q: float, fn=None) -> Optional[float]:
    if not values:
        return None
    return float(fn(values)) if fn else float(np.percentile(values, q))


def summarize(results: List[ItemResult]) -> List[Summary]:
    """One summary per source (sorted), then the overall one named "all"."""
    groups: Dict[str, List[ItemResult]] = {}
    for r in results:
        groups.setdefault(r.source, []).append(r)
    names = sorted(groups)
    out = []
    for name, rs in [(n, groups[n]) for n in names] + [("all", results)]:
        cov = [r.coverage for r in rs if r.coverage is not None and np.isfinite(r.coverage)]
        ovr = [r.overreach for r in rs if r.overreach is not None]
        out.append(Summary(name, len(rs), sum(r.detected for r in rs), len(cov),
                           _pct(cov, 50), _pct(cov, 10), _pct(cov, 0, np.mean), _pct(ovr, 50), _pct(ovr, 90)))
    return out


def format_report(report: EvalReport) -> str:
    """Human-readable table + failures, as printed by ``stylegan-unmask eval-masks``."""

    def f(v):
        return "   -  " if v is None else f"{v:6.4f}"

    lines = [f"{report.kind} folder, margin {report.margin:g}, backend {report.backend}"]
    if report.kind == "paired":
        lines.append(f"{'source':<12}{'n':>5}{'detect':>9}{'measured':>10}  cov_med  cov_p10 cov_mean  "
                     f"over_med over_p90")
        for s in report.summaries:
            lines.append(f"{s.name:<12}{s.n:>5}{s.detection_rate:>9.1%}{s.measured:>10}  {f(s.coverage_median)}   "
                         f"{f(s.coverage_p10)}  {f(s.coverage_mean)}   {f(s.overreach_median)}   "
                         f"{f(s.overreach_p90)}")
        excluded = [r for r in report.items if r.excluded]
        if excluded:
            lines.append("excluded from coverage/overreach (other masks pasted outside the GT): "
                         + ", ".join(f"{r.source}/{r.id}" for r in excluded))
    else:
        lines.append(f"{'source':<12}{'n':>5}{'detected':>10}{'rate':>9}")
        for s in report.summaries:
            lines.append(f"{s.name:<12}{s.n:>5}{s.detected:>10}{s.detection_rate:>9.1%}")
    fails = report.failures
    lines.append(f"failures ({len(fails)}):" if fails else "failures: none")
    for r in fails:
        lines.append(f"  {r.source}/{r.id}: {r.error or 'no face found'}")
    checks = report.meets_targets()
    lines.append("targets: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in checks.items()))
    return "\n".join(lines)


def write_csv(report: EvalReport, path: PathLike, protect: Sequence[PathLike] = ()) -> Path:
    """Per-item rows, written atomically; refuses to overwrite the inputs."""

    from .images import ensure_not_input

    out = Path(path)
    ensure_not_input(out, [r.path for r in report.items] + list(protect))
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(asdict(report.items[0]).keys()) if report.items else list(ItemResult.__dataclass_fields__)
    with atomic_file(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for r in report.items:
            w.writerow(asdict(r))
    return out
