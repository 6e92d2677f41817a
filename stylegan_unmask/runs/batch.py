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
  ``index.html``, which are rewritten as the run goes.
* Sharding (``--shard i/n`` or torchrun): see ``shards.py``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from tqdm.auto import tqdm

from .. import DEFAULT_NETWORK
from ..atomic import atomic_write_text
from ..errors import UnmaskError
from ..face.frontend import FaceOptions, PreparedFace, prepare_face
from ..images import save_image
from ..pipeline import (finish_samples, get_network, network_crop_scale, network_source, project_faces,
                        run_settings, save_outputs)
from ..pipeline.pictures import thumbnail
from ..projector import ProjectionConfig, ProjectionResult
from ..runtime.device import module_device, resolve_device
from .bookkeeping import (ThrottledReport, attempt, count_statuses, describe_error, jsonable, read_marker,
                          write_marker)
from .files import BatchItem, list_images, plan_items
from .shards import barrier_if_distributed, flag_path, merge_shards, resolve_shard
from .summary import THUMB_INPUT, THUMB_RESULT, BatchRecord, write_reports, write_summary_csv

__all__ = ["run_batch", "BatchRun", "BatchSummary", "read_done", "DONE_MARKER"]

PathLike = Union[str, "os.PathLike[str]"]

DONE_MARKER = "done.json"


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


def read_done(item: BatchItem, settings: Dict[str, object]) -> Optional[Dict[str, object]]:
    """The done marker if the photo is complete for these settings, else None."""
    marker = read_marker(item.outdir / DONE_MARKER)
    if marker is None or marker.get("settings") != jsonable(settings):
        return None
    outputs = marker.get("outputs") or []
    if not outputs or not all((item.outdir / name).is_file() for name in outputs):
        return None
    return marker


def run_batch(folder: PathLike, outdir: PathLike, config: Optional[ProjectionConfig] = None,
              face: Optional[FaceOptions] = None, *, network: PathLike = DEFAULT_NETWORK, G=None, device=None,
              batch_size: Optional[int] = None, recursive: bool = False, save_video: bool = False, shard=None,
              progress: bool = True, on_record: Optional[Callable[[BatchRecord], None]] = None,
              samples: int = 1) -> BatchSummary:
    """Unmask every image in ``folder`` into ``outdir/<relative path without extension>/``.

    ``samples`` K > 1: K completions per photo, as ``unmask(samples=K)`` writes them.

    ``config`` / ``face``: as for :func:`~stylegan_unmask.pipeline.unmask`.
    ``on_record(record)`` is called after each photo (ok, failed or skipped).
    Returns this process's records; see the module docstring for resuming and
    sharding.
    """
    run = BatchRun(folder, outdir, config, face, network=network, G=G, device=device, batch_size=batch_size,
                   recursive=recursive, save_video=save_video, shard=shard, progress=progress,
                   on_record=on_record, samples=samples)
    return run.run()


class BatchRun:
    """One process's share of a folder run: plan, skip what is done, prepare, project in chunks, save, report."""

    def __init__(self, folder: PathLike, outdir: PathLike, config: Optional[ProjectionConfig] = None,
                 face: Optional[FaceOptions] = None, *, network: PathLike = DEFAULT_NETWORK, G=None, device=None,
                 batch_size: Optional[int] = None, recursive: bool = False, save_video: bool = False, shard=None,
                 progress: bool = True, on_record: Optional[Callable[[BatchRecord], None]] = None,
                 samples: int = 1):
        self.folder, self.outdir = Path(folder), Path(outdir)
        if samples > 1 and save_video:
            raise UnmaskError("a video records one projection: use --save-video without --samples")
        self.samples = int(samples)
        if not self.folder.is_dir():
            raise UnmaskError(f"{self.folder}: input folder not found")
        if self.outdir.exists() and not self.outdir.is_dir():
            raise UnmaskError(f"{self.outdir}: exists and is not a folder")
        self.rank, self.world = resolve_shard(shard)
        if G is None:
            # Loaded up front: the done markers record where the network came from (G.source),
            # and a network that cannot be loaded should stop the run, not fail every photo.
            G = get_network(network, resolve_device(device, per_process=True))  # torchrun: this process's GPU
        self.G, self.device = G, module_device(G)
        self.batch_size = batch_size if batch_size is not None else (4 if self.device.type == "cuda" else 1)
        if self.batch_size < 1:
            raise UnmaskError(f"--batch-size {self.batch_size}: must be at least 1")
        self.config = (config if config is not None else ProjectionConfig()).for_device(self.device).for_network(G)
        self.face = face if face is not None else FaceOptions()
        self.save_video, self.progress, self.on_record = save_video, progress, on_record
        self.settings = jsonable(self.result_settings())
        self.report_settings = {**self.settings, "batch_size": self.batch_size, "device": str(self.device),
                                "shards": self.world, "input": str(self.folder)}
        self.items = plan_items(self.folder, list_images(self.folder, recursive=recursive, exclude=[self.outdir]),
                                self.outdir)
        self.mine = self.items[self.rank::self.world]
        self.records: Dict[str, BatchRecord] = {}
        self.pending: List[Tuple[BatchItem, PreparedFace, float]] = []
        self.report = ThrottledReport(self._write_reports)
        self.bar = None

    def result_settings(self) -> Dict[str, object]:
        """What each result depends on (its done marker and latent file record it)."""
        return run_settings(network_source(self.G), self.config, margin=self.face.margin, region=self.face.region,
                            aligned=self.face.aligned, backend=self.face.backend, samples=self.samples)

    def run(self) -> BatchSummary:
        # 1. A fresh start for this shard's flag; the progress bar.
        self.outdir.mkdir(parents=True, exist_ok=True)
        flag = flag_path(self.outdir, self.rank, self.world)
        if flag.exists():
            flag.unlink()
        sharded = self.world > 1
        self.bar = tqdm(total=len(self.mine), desc="unmasking" + (f" [shard {self.rank}/{self.world}]" if sharded
                                                                  else ""),
                        unit="img", disable=not self.progress, position=self.rank if sharded else None)
        # 2. Every photo: skipped when done, else prepared and projected with the next ones.
        try:
            self.report()
            for item in self.mine:
                self._visit(item)
            self._flush()
        finally:
            self.bar.close()
            self.report()
        # 3. This shard is complete: flag it, then merge if every shard is.
        return self._summary(flag)

    def _visit(self, item: BatchItem) -> None:
        marker = read_done(item, self.settings)
        if marker is not None:
            self._record(BatchRecord(file=item.file, status="skipped", seconds=marker.get("seconds"),
                                     final_loss=marker.get("final_loss"), psnr=marker.get("psnr"),
                                     outdir=item.out_rel))
            return
        t0 = time.perf_counter()
        face, error = attempt(prepare_face, item.source, self.G.img_resolution, self.face,
                              crop_scale=network_crop_scale(self.G))
        if error is not None:
            self._record(BatchRecord(file=item.file, status="failed", error=describe_error(error),
                                     outdir=item.out_rel))
            return
        self.pending.append((item, face, time.perf_counter() - t0))
        if len(self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        """One projector call for the pending photos, then each one finished and saved."""
        chunk, self.pending = self.pending, []
        if not chunk:
            return
        t0 = time.perf_counter()
        callback = None
        if self.progress:
            def callback(step, info):
                self.bar.set_postfix_str(f"step {step + 1}/{info.steps}, batch of {len(chunk)}")
        projected, error = attempt(project_faces, self.G, [face for _, face, _ in chunk], self.config,
                                   device=self.device, callback=callback, progress=False,
                                   record_video=self.save_video, samples=self.samples)
        if error is not None:
            for item, _, _ in chunk:
                self._record(BatchRecord(file=item.file, status="failed",
                                         error=f"projection failed: {describe_error(error)}", outdir=item.out_rel))
            return
        share = (time.perf_counter() - t0) / len(chunk)
        results, frames_per_face = projected
        k = self.samples
        for j, ((item, face, prep_s), frames) in enumerate(zip(chunk, frames_per_face)):
            t1 = time.perf_counter()
            done, error = attempt(self._save, item, face, results[j * k:(j + 1) * k], frames, prep_s + share, t1)
            if error is not None:
                self._record(BatchRecord(file=item.file, status="failed", error=describe_error(error),
                                         outdir=item.out_rel))
                continue
            seconds, best = done
            self._record(BatchRecord(file=item.file, status="ok", seconds=seconds, final_loss=best.final_loss,
                                     psnr=best.psnr, outdir=item.out_rel))

    def _save(self, item: BatchItem, face: PreparedFace, projections: List[ProjectionResult], frames,
              shared_s: float, t1: float) -> Tuple[float, ProjectionResult]:
        """Blend, write every output, then the done marker; returns the photo's seconds and best projection."""
        result = finish_samples(face, projections, settings=self.result_settings(), source=network_source(self.G),
                                frames=frames)
        proj = result.projection
        written = save_outputs(result, item.outdir, video=self.save_video)
        save_image(item.outdir / THUMB_INPUT, thumbnail(result.original.pixels, 256), protect=[item.source])
        save_image(item.outdir / THUMB_RESULT, thumbnail(result.unmasked, 256), protect=[item.source])
        seconds = shared_s + (time.perf_counter() - t1)
        write_marker(item.outdir / DONE_MARKER, file=item.file, status="ok", seconds=seconds,
                     final_loss=proj.final_loss, psnr=proj.psnr, settings=self.settings,
                     outputs=sorted({p.name for p in written.values()} | {THUMB_INPUT, THUMB_RESULT}),
                     timings={k: round(v, 4) for k, v in result.timings.items()})
        return seconds, proj

    def _record(self, rec: BatchRecord) -> None:
        self.records[rec.file] = rec
        self.bar.update(1)
        self.bar.set_postfix(count_statuses(r.status for r in self.records.values()))
        if rec.status == "failed":
            self.bar.write(f"failed: {rec.file}: {rec.error}", file=sys.stderr)
        self.report(force=False)
        if self.on_record is not None:
            self.on_record(rec)

    def _write_reports(self) -> None:
        ordered = [self.records.get(it.file) or BatchRecord(file=it.file, status="pending", outdir=it.out_rel)
                   for it in (self.mine if self.world > 1 else self.items)]
        if self.world == 1:
            write_reports(self.outdir, ordered, self.report_settings)
        else:
            write_summary_csv(self.outdir / f"summary-rank{self.rank}.csv", ordered)
            if self.rank == 0:
                merge_shards(self.outdir, self.items, self.world, self.report_settings)

    def _summary(self, flag: Path) -> BatchSummary:
        summary_csv = index_html = None
        if self.world == 1:
            summary_csv, index_html = self.outdir / "summary.csv", self.outdir / "index.html"
        else:
            atomic_write_text(flag, json.dumps({"rank": self.rank, "world_size": self.world, "images": len(self.mine)}))
            barrier_if_distributed()
            merged = merge_shards(self.outdir, self.items, self.world, self.report_settings, final_only=True)
            if merged is not None:
                summary_csv, index_html = merged
        ordered = [self.records[it.file] for it in self.mine if it.file in self.records]
        return BatchSummary(records=ordered, rank=self.rank, world_size=self.world, outdir=self.outdir,
                            summary_csv=summary_csv, index_html=index_html,
                            counts=count_statuses(r.status for r in ordered))
