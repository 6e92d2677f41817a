"""Face detectors on masked faces: detection rate, speed, and landmark error.

Usage (from the repository root)::

    python benchmarks/bench_detectors.py                          # all detectors, dev data
    python benchmarks/bench_detectors.py --detectors auto dlib-hog --limit 50
    python benchmarks/bench_detectors.py --cnn-limit 20 --threads 2

Data: ``masked_real/*.jpg`` (real photos of masked people, no ground truth) and
``paired/*/*/masked.jpg`` (synthetic masks pasted on photos, each with its clean
twin) of the dev set (``../shared/data/dev``, see its SOURCES.md).

Prints a Markdown table: share of photos where the detector finds the face
(a returned box overlaps the reference box: IoU >= 0.3 or its centre inside
it; reference = the YuNet box in ``masked_real/index.csv``, and for a paired
photo the box of the 68 dlib-HOG landmarks of its clean twin), share where it
returns any box at all, and mean wall seconds per photo (model loading excluded). For detectors
whose boxes feed the landmark stage (``auto``) it also runs
:func:`stylegan_unmask.face.landmarks.find_landmarks` on the masked photo and
compares the 68 points with dlib-HOG landmarks of the clean twin, in units of
the clean twin's inter-ocular distance (per photo: mean over the points of a
region; table: median / 90th percentile over photos).

Why these detectors and thresholds: docs/detectors.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: 68-point (iBUG 300-W) index ranges of the regions reported.
REGIONS = {
    "eyes": range(36, 48),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "jaw": range(0, 17),
    "mouth": range(48, 68),
}

ALL_DETECTORS = ("centerface-0.5", "centerface-0.3", "auto", "dlib-hog", "dlib-cnn", "haar")
#: Detectors whose boxes go to the landmark stage in the product.
LANDMARK_DETECTORS = ("auto",)


@dataclass
class SetResult:
    found: int = 0      # a box overlaps the reference face
    any_box: int = 0    # at least one box returned
    total: int = 0
    seconds: List[float] = field(default_factory=list)
    landmarks_ok: int = 0
    landmarks_tried: int = 0
    errors: Dict[str, List[float]] = field(default_factory=lambda: {k: [] for k in REGIONS})


def _subset(paths: Sequence[Path], limit: Optional[int]) -> List[Path]:
    """Every k-th path so that a limited run still spans all sources (files are sorted by source)."""
    paths = sorted(paths)
    if limit is None or limit >= len(paths):
        return list(paths)
    step = len(paths) / limit
    return [paths[int(i * step)] for i in range(limit)]


def _haar_detector() -> Callable:
    import cv2

    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_alt2.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise SystemExit(f"cannot load the OpenCV Haar cascade {path}")

    def detect(image):
        from stylegan_unmask.face.detect import _downscaled

        small, scale = _downscaled(image)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(30, 30))
        return [tuple(v / scale for v in (x, y, x + w, y + h)) for x, y, w, h in found]  # source-pixel boxes

    return detect


def _detector(name: str) -> Callable:
    """Image -> list of faces, through the package's own entry points."""
    from stylegan_unmask.face import detect as d

    if name.startswith("centerface-"):
        threshold = float(name.split("-", 1)[1])
        # Same downscaling as detect_faces, then one CenterFace pass at 640.
        return lambda im: d.detect_centerface(d._downscaled(im)[0], side=640, threshold=threshold)
    if name in ("auto", "dlib-hog", "dlib-cnn"):
        return lambda im: d.detect_faces(im, backend=name)
    if name == "haar":
        return _haar_detector()
    raise SystemExit(f"unknown detector {name!r}; choose from {', '.join(ALL_DETECTORS)}")


def _overlaps(box, ref) -> bool:
    """The benchmark's match rule: IoU >= 0.3, or the box centre inside the reference box."""
    from stylegan_unmask.face.detect import box_iou

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return box_iou(box, ref) >= 0.3 or (ref[0] <= cx <= ref[2] and ref[1] <= cy <= ref[3])


def _index_boxes(real_dir: Path) -> Dict[str, tuple]:
    """masked_real/index.csv: file name -> reference (YuNet) face box x0, y0, x1, y1."""
    import csv

    boxes = {}
    index = real_dir / "index.csv"
    if index.is_file():
        with open(index, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                x, y, w, h = (float(v) for v in row["face_box_xywh"].split(","))
                boxes[row["file"]] = (x, y, x + w, y + h)
    return boxes


def _reference_landmarks(clean_path: Path, cache: Dict[Path, Optional["object"]]):
    """dlib-HOG box + dlib 68 points on the clean twin (None when HOG finds no face)."""
    from stylegan_unmask.errors import NoFaceError
    from stylegan_unmask.images import load_image
    from stylegan_unmask.face.landmarks import find_landmarks

    if clean_path not in cache:
        try:
            cache[clean_path] = find_landmarks(load_image(clean_path).pixels, backend="dlib",
                                               detector="dlib-hog", path=clean_path).points
        except NoFaceError:
            cache[clean_path] = None
    return cache[clean_path]


def _landmark_errors(points, reference) -> Dict[str, float]:
    import numpy as np

    interocular = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
    dist = np.linalg.norm(points - reference, axis=1) / interocular
    return {k: float(dist[list(idx)].mean()) for k, idx in REGIONS.items()}


def _reference_box(path: Path, clean_of: Dict[Path, Path], real_boxes: Dict[str, tuple], ref_cache: Dict):
    if path in clean_of:
        ref = _reference_landmarks(clean_of[path], ref_cache)
        return None if ref is None else (*ref.min(axis=0), *ref.max(axis=0))
    return real_boxes.get(path.name)


def run_detector(name: str, sets: Dict[str, List[Path]], clean_of: Dict[Path, Path],
                 ref_cache: Dict, with_landmarks: bool, real_boxes: Dict[str, tuple]) -> Dict[str, SetResult]:
    from tqdm import tqdm

    from stylegan_unmask.errors import NoFaceError
    from stylegan_unmask.images import load_image
    from stylegan_unmask.face.landmarks import find_landmarks

    detect = _detector(name)
    results: Dict[str, SetResult] = {}
    first = next((p for paths in sets.values() for p in paths), None)
    if first is not None:
        detect(load_image(first).pixels)  # load the model outside the timed calls
    for set_name, paths in sets.items():
        res = results[set_name] = SetResult()
        for path in tqdm(paths, desc=f"{name} / {set_name}", leave=False, unit="img"):
            image = load_image(path).pixels
            t0 = time.perf_counter()
            faces = detect(image)
            res.seconds.append(time.perf_counter() - t0)
            res.total += 1
            res.any_box += bool(len(faces))
            ref_box = _reference_box(path, clean_of, real_boxes, ref_cache)
            boxes = [tuple(f.box) if hasattr(f, "box") else tuple(f) for f in faces]
            res.found += any(_overlaps(b, ref_box) for b in boxes) if ref_box is not None else bool(boxes)
            if not with_landmarks:
                continue
            res.landmarks_tried += 1
            try:
                lm = find_landmarks(image, backend="auto", detector=name, path=path)
            except NoFaceError:
                continue
            if ref_box is not None and not _overlaps(lm.box, ref_box):
                continue  # landmarks of another face (or of no face) do not count
            res.landmarks_ok += 1
            clean = clean_of.get(path)
            if clean is None:
                continue
            reference = _reference_landmarks(clean, ref_cache)
            if reference is None:
                continue
            for k, v in _landmark_errors(lm.points, reference).items():
                res.errors[k].append(v)
    return results


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100.0 * n / d:.1f} %)" if d else "-"


def _err(values: List[float]) -> str:
    import numpy as np

    if not values:
        return "-"
    return f"{np.median(values):.3f} / {np.percentile(values, 90):.3f}"


def print_table(all_results: Dict[str, Dict[str, SetResult]]) -> None:
    print("\n| detector | masked_real found | paired masked found | any box (real, paired) | s / image (real, paired) |"
          " landmarks found (real, paired) |")
    print("|---|---|---|---|---|---|")
    for name, res in all_results.items():
        real, paired = res.get("masked_real", SetResult()), res.get("paired", SetResult())
        secs = ", ".join(f"{sum(r.seconds) / len(r.seconds):.3f}" if r.seconds else "-" for r in (real, paired))
        lms = ", ".join(_pct(r.landmarks_ok, r.landmarks_tried) for r in (real, paired)) \
            if real.landmarks_tried or paired.landmarks_tried else "-"
        anyb = f"{real.any_box}, {paired.any_box}"
        print(f"| {name} | {_pct(real.found, real.total)} | {_pct(paired.found, paired.total)} | {anyb} | {secs} | {lms} |")
    with_lm = {n: r["paired"] for n, r in all_results.items() if r.get("paired") and r["paired"].landmarks_tried}
    if with_lm:
        print("\nLandmark error on paired masked photos vs dlib-HOG landmarks of the clean twin, "
              "/ inter-ocular distance (median / p90 over photos):\n")
        print("| detector | photos | " + " | ".join(REGIONS) + " |")
        print("|---|---|" + "---|" * len(REGIONS))
        for name, r in with_lm.items():
            n = len(r.errors["eyes"])
            print(f"| {name} | {n} | " + " | ".join(_err(r.errors[k]) for k in REGIONS) + " |")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dev",
                        help="dev data folder (default: ../shared/data/dev from the repository root)")
    parser.add_argument("--detectors", nargs="+", default=list(ALL_DETECTORS), choices=ALL_DETECTORS)
    parser.add_argument("--limit", type=int, default=None, help="at most N photos per set (spread over sources)")
    parser.add_argument("--cnn-limit", type=int, default=40,
                        help="at most N photos per set for dlib-cnn, which is slow on a CPU (default 40)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for OpenCV / BLAS (default 2)")
    args = parser.parse_args(argv)

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)

    real = sorted((args.data / "masked_real").glob("*.jpg"))
    paired = sorted(args.data.glob("paired/*/*/masked.jpg"))
    if not real and not paired:
        raise SystemExit(f"{args.data}: no masked_real/*.jpg or paired/*/*/masked.jpg found")
    clean_of: Dict[Path, Path] = {}
    for m in paired:
        twins = sorted(m.parent.glob("clean.*"))
        if twins:
            clean_of[m] = twins[0]

    real_boxes = _index_boxes(args.data / "masked_real")
    from stylegan_unmask.face.landmarks import resolve_backend

    print(f"data: {args.data}  threads: {args.threads}  landmark backend (auto): {resolve_backend('auto')}")
    ref_cache: Dict = {}
    all_results: Dict[str, Dict[str, SetResult]] = {}
    start = time.perf_counter()
    for name in args.detectors:
        limit = args.limit
        if name == "dlib-cnn":
            limit = args.cnn_limit if limit is None else min(limit, args.cnn_limit)
        sets = {"masked_real": _subset(real, limit), "paired": _subset(paired, limit)}
        t0 = time.perf_counter()
        all_results[name] = run_detector(name, sets, clean_of, ref_cache, name in LANDMARK_DETECTORS, real_boxes)
        print(f"{name}: {time.perf_counter() - t0:.1f} s "
              f"({len(sets['masked_real'])} masked_real + {len(sets['paired'])} paired photos)", flush=True)
    print_table(all_results)
    print(f"\ntotal: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
