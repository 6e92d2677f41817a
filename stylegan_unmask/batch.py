"""Unmask every photo in a folder: batched, resumable, shardable, with a summary a person can read.

* Several photos are optimised together in one projector call (``batch_size``
  targets; 4 on a GPU, 1 on a CPU by default): the projector keeps their
  optimisations independent, so this only changes the speed.
* Resumable: each photo gets its own output folder, and ``done.json`` is
  written there last, after every output file has been replaced atomically.
  A photo whose ``done.json`` matches the current settings and whose outputs
  all exist is skipped; a run killed at any moment leaves no half-written
  file and redoes at most the photos that were in flight.
* One bad photo never stops the run: its error goes in ``summary.csv`` and
  ``index.html``, which are rewritten after every photo.
* Sharding: with ``--shard i/n``, or under ``torchrun`` (RANK / WORLD_SIZE),
  each process takes the sorted file list's share ``files[i::n]``. Each writes
  ``summary-rank{i}.csv``; rank 0 merges what exists as it goes, and whichever
  rank finishes last merges the complete ``summary.csv`` / ``index.html``.
  No process group or barrier is needed, so shards may run at very different
  speeds (or on machines that share only the output folder) without a
  collective timing out.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import UnmaskError
from .atomic import atomic_write_text
from .report import IndexEntry, render_index_html, thumbnail

PathLike = Union[str, "os.PathLike[str]"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp")
DONE_MARKER = "done.json"
THUMB_INPUT = "thumb_input.jpg"
THUMB_RESULT = "thumb_result.jpg"
SUMMARY_FIELDS = ("file", "status", "error", "seconds", "final_loss", "psnr", "outdir")
MARKER_VERSION = 1
#: summary.csv / index.html are rewritten at most this often during a run (and always at its end).
REPORT_INTERVAL_S = 5.0


@dataclass
class BatchItem:
    """One input photo and where its outputs go."""

    source: Path
    file: str  # path relative to the input folder, POSIX separators (the summary's `file`)
    out_rel: str  # output folder relative to the batch output folder
    outdir: Path


@dataclass
class BatchRecord:
    """One row of ``summary.csv``."""

    file: str
    status: str  # ok | failed | skipped | pending
    error: str = ""
    seconds: Optional[float] = None
    final_loss: Optional[float] = None
    psnr: Optional[float] = None
    outdir: str = ""

    def row(self) -> Dict[str, str]:
        def num(v, fmt):
            return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

        return {"file": self.file, "status": self.status, "error": self.error, "seconds": num(self.seconds, ".2f"),
                "final_loss": num(self.final_loss, ".6g"), "psnr": num(self.psnr, ".3f"), "outdir": self.outdir}

    @classmethod
    def from_row(cls, row: Dict[str, str]) -> "BatchRecord":
        def num(key):
            v = (row.get(key) or "").strip()
            return float(v) if v else None

        return cls(file=row["file"], status=row["status"], error=row.get("error", ""), seconds=num("seconds"),
                   final_loss=num("final_loss"), psnr=num("psnr"), outdir=row.get("outdir", ""))


@dataclass
class BatchSummary:
    """What :func:`run_batch` did in this process."""

    records: List[BatchRecord]
    rank: int
    world_size: int
    outdir: Path
    summary_csv: Optional[Path] = None  # the merged summary, when this process wrote it
    index_html: Optional[Path] = None
    counts: Dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- files and shards


def list_images(folder: PathLike, recursive: bool = False, exclude: Iterable[PathLike] = ()) -> List[Path]:
    """Image files (by extension, case-insensitive) in ``folder``, sorted by relative path.

    Hidden files and anything under an ``exclude`` folder (the output folder,
    when it lies inside the input folder) are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UnmaskError(f"{root}: not a folder")
    excluded = [Path(e).resolve() for e in exclude]
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = []
    for p in candidates:
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
            continue
        rp = p.resolve()
        if any(rp == e or e in rp.parents for e in excluded):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def plan_items(folder: PathLike, files: Sequence[Path], outdir: PathLike) -> List[BatchItem]:
    """Give every photo its own output folder: its relative path without the extension.

    Photos that would share a folder (``a.jpg`` and ``a.png``) get the
    extension appended (``a_jpg``, ``a_png``). Computed over the full list, so
    every shard agrees on the names.
    """
    root, out = Path(folder), Path(outdir)
    rels = [f.relative_to(root) for f in files]
    stems = [r.with_suffix("").as_posix() for r in rels]
    counts: Dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    items = []
    for f, rel, stem in zip(files, rels, stems):
        name = stem if counts[stem.lower()] == 1 else f"{stem}_{rel.suffix.lstrip('.').lower()}"
        items.append(BatchItem(source=f, file=rel.as_posix(), out_rel=name, outdir=out / name))
    return items


def parse_shard(text: str) -> Tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UnmaskError(f"--shard {text!r}: expected i/n, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        raise UnmaskError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def resolve_shard(shard: Optional[Union[str, Tuple[int, int]]] = None) -> Tuple[int, int]:
    """(rank, world size): from ``shard``, else torchrun's RANK/WORLD_SIZE, else torch.distributed, else (0, 1)."""
    if shard is not None:
        return parse_shard(shard) if isinstance(shard, str) else (int(shard[0]), int(shard[1]))
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if world >= 1 and 0 <= rank < world:
            return rank, world
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return 0, 1


def default_device():
    """CUDA (this process's LOCAL_RANK GPU under torchrun) when available, else CPU."""
    import torch

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- markers


def read_done(item: BatchItem, settings: Dict[str, object]) -> Optional[Dict[str, object]]:
    """The done marker if the photo is complete for these settings, else None."""
    path = item.outdir / DONE_MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("settings") != _jsonable(settings):
        return None
    outputs = marker.get("outputs") or []
    if not outputs or not all((item.outdir / name).is_file() for name in outputs):
        return None
    return marker


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


# ----------------------------------------------------------------------------- summaries


def write_summary_csv(path: Path, records: Iterable[BatchRecord]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.row())
    return atomic_write_text(path, buf.getvalue())


def read_summary_csv(path: Path) -> List[BatchRecord]:
    with open(path, newline="", encoding="utf-8") as f:
        return [BatchRecord.from_row(row) for row in csv.DictReader(f)]


def _index_entries(outdir: Path, records: Iterable[BatchRecord]) -> List[IndexEntry]:
    entries = []
    for r in records:
        def rel(name: str) -> Optional[str]:
            # ok/skipped photos have every output (their done marker says so): no stat() per row.
            if not r.outdir or r.status not in ("ok", "skipped"):
                return None
            return f"{r.outdir}/{name}"

        entries.append(IndexEntry(name=r.file, status=r.status, error=r.error, seconds=r.seconds,
                                  final_loss=r.final_loss, psnr=r.psnr, input_thumb=rel(THUMB_INPUT),
                                  result_thumb=rel(THUMB_RESULT), comparison=rel("comparison.png"),
                                  outdir=r.outdir if r.status in ("ok", "skipped") else None))
    return entries


def write_reports(outdir: Path, records: Sequence[BatchRecord], settings: Dict[str, object],
                  note: str = "") -> Tuple[Path, Path]:
    """``summary.csv`` and ``index.html`` for ``records`` (atomic rewrites)."""
    csv_path = write_summary_csv(outdir / "summary.csv", records)
    html = render_index_html(_index_entries(outdir, records), title=f"stylegan-unmask batch: {outdir.name}",
                             settings=settings, note=note)
    return csv_path, atomic_write_text(outdir / "index.html", html)


def _flag_path(outdir: Path, rank: int, world: int) -> Path:
    return outdir / f".shard-{rank}-of-{world}.complete"


def merge_shards(outdir: Path, items: Sequence[BatchItem], world: int, settings: Dict[str, object],
                 final_only: bool = False) -> Optional[Tuple[Path, Path]]:
    """Merge ``summary-rank*.csv`` into ``summary.csv`` + ``index.html``.

    With ``final_only`` the merge happens only once every shard has flagged
    completion (returns None otherwise). Photos no shard has reported yet are
    listed as pending.
    """
    complete = all(_flag_path(outdir, r, world).is_file() for r in range(world))
    if final_only and not complete:
        return None
    known: Dict[str, BatchRecord] = {}
    for r in range(world):
        part = outdir / f"summary-rank{r}.csv"
        if part.is_file():
            try:
                for rec in read_summary_csv(part):
                    known[rec.file] = rec
            except (OSError, KeyError, ValueError):
                continue
    records = [known.get(it.file) or BatchRecord(file=it.file, status="pending", outdir=it.out_rel) for it in items]
    note = f"merged from {world} shards" + ("" if complete else " (still running)")
    return write_reports(outdir, records, settings, note=note)


# ----------------------------------------------------------------------------- the run


def run_batch(folder: PathLike, outdir: PathLike, *, network: PathLike = "ffhq-1024", steps: int = 1000,
              lambda_perceptual: float = 0.8, init: str = "avg", seed: int = 0, device=None,
              batch_size: Optional[int] = None, recursive: bool = False, aligned: bool = False,
              backend: str = "auto", margin: Optional[float] = None, optimize_noise: bool = False,
              noise_mode: str = "const", save_video: bool = False, shard=None, progress: bool = True,
              G=None, on_record: Optional[Callable[[BatchRecord], None]] = None, schedule: str = "fast",
              precision: str = "auto", compile: str = "auto") -> BatchSummary:
    """Unmask every image in ``folder`` into ``outdir/<relative path without extension>/``.

    ``on_record(record)`` is called after each photo (ok, failed or skipped).
    Returns this process's records; see the module docstring for resuming and
    sharding.
    """
    from .images import save_image
    from .pipeline import (finish_face, get_network, network_crop_scale, network_device, network_source, prepare_face,
                           project_faces,
                           projection_config, resolve_device, run_settings, save_outputs)

    folder, outdir = Path(folder), Path(outdir)
    if not folder.is_dir():
        raise UnmaskError(f"{folder}: input folder not found")
    if outdir.exists() and not outdir.is_dir():
        raise UnmaskError(f"{outdir}: exists and is not a folder")
    rank, world = resolve_shard(shard)
    if G is not None:
        dev = network_device(G)
    else:
        dev = resolve_device(device) if device is not None else default_device()
        if dev.type == "cuda" and dev.index is None:
            dev = default_device()  # 'cuda' under torchrun: this process's GPU (LOCAL_RANK)
        # Loaded up front: the done markers record where the network came from (G.source),
        # and a network that cannot be loaded should stop the run, not fail every photo.
        G = get_network(network, dev)
    if batch_size is None:
        batch_size = 4 if dev.type == "cuda" else 1
    if batch_size < 1:
        raise UnmaskError(f"--batch-size {batch_size}: must be at least 1")

    config = projection_config(steps=steps, lambda_perceptual=lambda_perceptual, init=init, seed=seed,
                               optimize_noise=optimize_noise, noise_mode=noise_mode, device=dev,
                               schedule=schedule, precision=precision, compile=compile)
    settings = _jsonable(run_settings(network_source(G), config, margin=margin, aligned=aligned, backend=backend))
    report_settings = {**settings, "batch_size": batch_size, "device": str(dev), "shards": world,
                       "input": str(folder)}

    files = list_images(folder, recursive=recursive, exclude=[outdir])
    items = plan_items(folder, files, outdir)
    mine = items[rank::world]
    outdir.mkdir(parents=True, exist_ok=True)
    flag = _flag_path(outdir, rank, world)
    if flag.exists():
        flag.unlink()

    records: Dict[str, BatchRecord] = {}
    last_write = [0.0]

    def write_progress(force: bool = True):
        # Rewriting the reports is O(photos); during a long run do it at most every few seconds.
        if not force and time.monotonic() - last_write[0] < REPORT_INTERVAL_S:
            return
        last_write[0] = time.monotonic()
        ordered = [records.get(it.file) or BatchRecord(file=it.file, status="pending", outdir=it.out_rel)
                   for it in (mine if world > 1 else items)]
        if world == 1:
            write_reports(outdir, ordered, report_settings)
        else:
            write_summary_csv(outdir / f"summary-rank{rank}.csv", ordered)
            if rank == 0:
                merge_shards(outdir, items, world, report_settings)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), desc="unmasking" + (f" [shard {rank}/{world}]" if world > 1 else ""),
               unit="img", disable=not progress, position=rank if world > 1 else None)

    def record(rec: BatchRecord):
        records[rec.file] = rec
        bar.update(1)
        counts = {s: sum(r.status == s for r in records.values()) for s in ("ok", "failed", "skipped")}
        bar.set_postfix(counts)
        if rec.status == "failed":
            bar.write(f"failed: {rec.file}: {rec.error}", file=sys.stderr)
        write_progress(force=False)
        if on_record is not None:
            on_record(rec)

    pending: List[Tuple[BatchItem, object, float]] = []

    def flush():
        chunk = pending[:]
        pending.clear()
        if not chunk:
            return
        t0 = time.perf_counter()
        cb = None
        if progress:
            def cb(step, info):
                bar.set_postfix_str(f"step {step + 1}/{info.steps}, batch of {len(chunk)}")
        try:
            results, frames = project_faces(G, [face for _, face, _ in chunk], config, device=dev,
                                            callback=cb, progress=False, record_video=save_video)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the batch goes on; the error is reported per photo
            msg = _describe(exc)
            for item, _, _ in chunk:
                record(BatchRecord(file=item.file, status="failed", error=f"projection failed: {msg}",
                                   outdir=item.out_rel))
            return
        share = (time.perf_counter() - t0) / len(chunk)
        for (item, face, prep_s), proj, fr in zip(chunk, results, frames):
            t1 = time.perf_counter()
            try:
                result = finish_face(face, proj, settings=run_settings(network_source(G), config, margin=margin,
                                                                       aligned=aligned, backend=backend),
                                     source=network_source(G), frames=fr)
                written = save_outputs(result, item.outdir, video=save_video)
                save_image(item.outdir / THUMB_INPUT, thumbnail(result.original.pixels, 256),
                           protect=[item.source])
                save_image(item.outdir / THUMB_RESULT, thumbnail(result.unmasked, 256), protect=[item.source])
                seconds = prep_s + share + (time.perf_counter() - t1)
                marker = {
                    "version": MARKER_VERSION, "file": item.file, "status": "ok", "seconds": seconds,
                    "final_loss": proj.final_loss, "psnr": proj.psnr, "settings": settings,
                    "outputs": sorted({p.name for p in written.values()} | {THUMB_INPUT, THUMB_RESULT}),
                    "timings": {k: round(v, 4) for k, v in result.timings.items()},
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                atomic_write_text(item.outdir / DONE_MARKER, json.dumps(marker, indent=1, default=str))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001
                record(BatchRecord(file=item.file, status="failed", error=_describe(exc), outdir=item.out_rel))
                continue
            record(BatchRecord(file=item.file, status="ok", seconds=seconds, final_loss=proj.final_loss,
                               psnr=proj.psnr, outdir=item.out_rel))

    try:
        write_progress()
        for item in mine:
            marker = read_done(item, settings)
            if marker is not None:
                record(BatchRecord(file=item.file, status="skipped", seconds=marker.get("seconds"),
                                   final_loss=marker.get("final_loss"), psnr=marker.get("psnr"),
                                   outdir=item.out_rel))
                continue
            t0 = time.perf_counter()
            try:
                face = prepare_face(item.source, G.img_resolution, aligned=aligned, backend=backend, margin=margin,
                                    crop_scale=network_crop_scale(G))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one bad photo never stops the batch
                record(BatchRecord(file=item.file, status="failed", error=_describe(exc), outdir=item.out_rel))
                continue
            pending.append((item, face, time.perf_counter() - t0))
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
        write_progress()

    # This shard is complete: flag it, then merge if every shard is.
    summary_csv = index_html = None
    if world == 1:
        summary_csv, index_html = outdir / "summary.csv", outdir / "index.html"
    else:
        atomic_write_text(flag, json.dumps({"rank": rank, "world_size": world, "images": len(mine)}))
        _barrier_if_distributed()
        merged = merge_shards(outdir, items, world, report_settings, final_only=True)
        if merged is not None:
            summary_csv, index_html = merged
    ordered = [records[it.file] for it in mine if it.file in records]
    counts = {s: sum(r.status == s for r in ordered) for s in ("ok", "failed", "skipped")}
    return BatchSummary(records=ordered, rank=rank, world_size=world, outdir=outdir, summary_csv=summary_csv,
                        index_html=index_html, counts=counts)


def _barrier_if_distributed() -> None:
    """Under a caller's own process group, wait for every rank so rank 0's merge sees all shards."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    except Exception:  # noqa: BLE001 - the flag files still make the last rank merge
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnmaskError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"
