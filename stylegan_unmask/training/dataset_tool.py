"""Face photos → FFHQ-aligned R×R PNGs in NVIDIA's dataset layout.

Every photo goes through our own detect → landmarks → align stages, so a
network trained on the result sees faces framed exactly as the unmasking
pipeline frames them. The output (a folder, or a ``.zip`` written at the end)
holds ``00000/img00000000.png``... and ``dataset.json`` (``{"labels": null}``
plus our own ``stylegan_unmask`` record: resolution, crop scale, sources), so
NVIDIA's ``train.py`` reads it too. Runs are resumable: each photo's outcome
is appended to ``progress.jsonl`` as it is done.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic import atomic_file, atomic_write_text
from ..errors import InputImageError, NoFaceError, UnmaskError
from ..face.align import align_face, ffhq_square
from ..face.landmarks import find_landmarks
from ..images import IMAGE_EXTENSIONS, load_image

DATASET_FORMAT = "stylegan-unmask-dataset"
#: The recipe renders the quad at 4x the output (4096 for FFHQ's 1024) before the
#: Lanczos reduction; a 64 px dataset therefore renders at 256 px, much faster.
TRANSFORM_RATIO = 4


@dataclass
class DatasetOptions:
    resolution: int
    crop_scale: float = 1.0
    mirror: bool = False
    detector: str = "fast"
    #: Skip faces whose FFHQ square (after crop_scale) is smaller than this many
    #: source pixels: they would be up-sampled more than 2x.
    min_face: Optional[int] = None

    @property
    def min_face_px(self) -> float:
        return float(self.min_face) if self.min_face is not None else self.resolution / 2

    @property
    def transform_size(self) -> int:
        return max(TRANSFORM_RATIO * self.resolution, self.resolution)


@dataclass
class PhotoOutcome:
    """What happened to one source photo (one line of progress.jsonl / report.csv)."""

    index: int
    source: str
    status: str            # "ok", "no-face", "tiny-face", "duplicate", "unreadable", "error"
    reason: str = ""
    outputs: List[str] = field(default_factory=list)
    md5: str = ""


@dataclass
class DatasetReport:
    out: Path
    counts: Dict[str, int]
    images: int

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{self.images} images written to {self.out} ({parts})"


def list_photos(src: Path) -> List[Path]:
    """Image files under ``src`` (recursive), in a stable order."""
    if src.is_file():
        raise UnmaskError(f"{src}: expected a folder of face photos, got a file")
    if not src.is_dir():
        raise UnmaskError(f"{src}: no such folder")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith("."))
    if not files:
        raise UnmaskError(f"{src}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def archive_name(index: int, mirrored: bool = False) -> str:
    """NVIDIA's layout: folders of 1000 images; the mirror copy gets a ``_mirror`` suffix."""
    return f"{index // 1000:05d}/img{index:08d}{'_mirror' if mirrored else ''}.png"


def process_photo(index: int, path: Path, options: DatasetOptions) -> Tuple[PhotoOutcome, Dict[str, bytes]]:
    """Align one photo; returns its outcome and the PNG bytes to write (nothing on a skip)."""
    from PIL import Image

    outcome = PhotoOutcome(index=index, source=str(path), status="ok")
    try:
        data = path.read_bytes()
        outcome.md5 = hashlib.md5(data).hexdigest()
        loaded = load_image(path)
        lm = find_landmarks(loaded.pixels, backend="dlib", detector=options.detector, path=path)
        _, x, _ = ffhq_square(lm.points, options.crop_scale)
        side = 2 * float(np.hypot(*x))
        if side < options.min_face_px:
            outcome.status, outcome.reason = "tiny-face", f"face square {side:.0f} px < {options.min_face_px:.0f} px"
            return outcome, {}
        face = align_face(loaded.pixels, lm.points, output_size=options.resolution,
                          transform_size=options.transform_size, crop_scale=options.crop_scale)
    except NoFaceError as e:
        outcome.status, outcome.reason = "no-face", str(e)
        return outcome, {}
    except InputImageError as e:
        outcome.status, outcome.reason = "unreadable", str(e)
        return outcome, {}
    except (UnmaskError, ValueError, OSError) as e:
        outcome.status, outcome.reason = "error", f"{path}: {e}"
        return outcome, {}
    files = {archive_name(index): _png_bytes(face.image)}
    if options.mirror:
        files[archive_name(index, mirrored=True)] = _png_bytes(np.ascontiguousarray(face.image[:, ::-1]))
    outcome.outputs = list(files)
    return outcome, files


def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _worker(args):
    index, path, options = args
    import torch

    torch.set_num_threads(1)
    return process_photo(index, Path(path), options)


class _Progress:
    """progress.jsonl: one outcome per line, appended and flushed as photos finish (resume state)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: Dict[int, PhotoOutcome] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.done[int(rec["index"])] = PhotoOutcome(**rec)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run: that photo is simply redone
        self._f = open(path, "a", encoding="utf-8")

    def add(self, outcome: PhotoOutcome) -> None:
        self._f.write(json.dumps(asdict(outcome)) + "\n")
        self._f.flush()
        self.done[outcome.index] = outcome

    def close(self) -> None:
        self._f.close()


def prepare_dataset(src, out, options: DatasetOptions, workers: int = 1, limit: Optional[int] = None,
                    progress: bool = True) -> DatasetReport:
    """Build (or resume building) a training set from the photos under ``src``."""
    from tqdm import tqdm

    src, out = Path(src), Path(out)
    to_zip = out.suffix.lower() == ".zip"
    work = out.with_name(out.name + ".partial") if to_zip else out
    if to_zip and out.exists():
        raise UnmaskError(f"{out}: already exists; remove it or choose another name (a finished zip is not resumed)")
    if work.exists() and not work.is_dir():
        raise UnmaskError(f"{work}: exists and is not a folder")
    if src.resolve() == work.resolve() or work.resolve() in src.resolve().parents:
        raise UnmaskError(f"{out}: the output must not be the source folder or inside it")
    work.mkdir(parents=True, exist_ok=True)
    settings = {"format": DATASET_FORMAT, "resolution": options.resolution, "crop_scale": options.crop_scale,
                "mirror": options.mirror, "detector": options.detector, "min_face": options.min_face_px,
                "transform_size": options.transform_size, "source": str(src.resolve())}
    settings_path = work / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text(encoding="utf-8"))
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise UnmaskError(f"{work}: was started with other settings {diff}; use another output folder")
    else:
        atomic_write_text(settings_path, json.dumps(settings, indent=2))

    photos = list_photos(src)
    if limit is not None:
        photos = photos[:limit]
    state = _Progress(work / "progress.jsonl")
    seen_md5 = {o.md5: o.index for o in state.done.values() if o.status == "ok" and o.md5}
    todo = [(i, str(p), options) for i, p in enumerate(photos) if i not in state.done]
    bar = tqdm(total=len(photos), initial=len(photos) - len(todo), desc="dataset", unit="img", disable=not progress)
    try:
        results = _run(todo, workers)
        for outcome, files in results:
            if outcome.status == "ok" and outcome.md5 in seen_md5:
                outcome.status = "duplicate"
                outcome.reason = f"same bytes as {photos[seen_md5[outcome.md5]]}"
                outcome.outputs, files = [], {}
            for name, data in files.items():
                target = work / name
                with atomic_file(target) as tmp:
                    tmp.write_bytes(data)
            if outcome.status == "ok":
                seen_md5[outcome.md5] = outcome.index
            state.add(outcome)
            bar.update(1)
            bar.set_postfix(ok=sum(o.status == "ok" for o in state.done.values()))
    finally:
        bar.close()
        state.close()

    outcomes = [state.done[i] for i in sorted(state.done) if i < len(photos)]
    _write_report(work / "report.csv", outcomes)
    images = [name for o in outcomes if o.status == "ok" for name in o.outputs]
    record = dict(settings, images=len(images), photos=len(photos),
                  files=[[name, o.source] for o in outcomes if o.status == "ok" for name in o.outputs])
    atomic_write_text(work / "dataset.json", json.dumps({"labels": None, "stylegan_unmask": record}))
    counts: Dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    if to_zip:
        _zip_folder(work, out, images)
    return DatasetReport(out=out, counts=counts, images=len(images))


def _run(todo, workers: int) -> Iterable:
    if workers <= 1 or len(todo) < 2:
        return (_worker(t) for t in todo)
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers)

    def gen():
        try:
            yield from pool.imap(_worker, todo, chunksize=8)
        finally:
            pool.terminate()
    return gen()


def _write_report(path: Path, outcomes: Sequence[PhotoOutcome]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "status", "reason", "outputs"])
    for o in outcomes:
        w.writerow([o.source, o.status, o.reason, " ".join(o.outputs)])
    atomic_write_text(path, buf.getvalue())


def _zip_folder(work: Path, out: Path, images: Sequence[str]) -> None:
    with atomic_file(out, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in images:
                zf.write(work / name, name)
            for extra in ("dataset.json", "report.csv"):
                zf.write(work / extra, extra)


def read_dataset_record(path) -> dict:
    """Our record from a prepared dataset's ``dataset.json`` (folder or zip); ``{}`` for foreign datasets."""
    path = Path(path)
    try:
        if path.is_dir():
            meta = path / "dataset.json"
            text = meta.read_text(encoding="utf-8") if meta.exists() else None
        else:
            with zipfile.ZipFile(path) as zf:
                text = zf.read("dataset.json").decode("utf-8") if "dataset.json" in zf.namelist() else None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise UnmaskError(f"{path}: cannot read the dataset ({e})") from None
    if text is None:
        return {}
    try:
        return dict(json.loads(text).get("stylegan_unmask") or {})
    except (ValueError, AttributeError) as e:
        raise UnmaskError(f"{path}: dataset.json is not valid JSON ({e})") from None
