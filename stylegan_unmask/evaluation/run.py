"""``eval-unmask``: every method on every pair, figures against the clean photo, reports.

Per photo (``data.Pair``):

1. load and check the pair (``data.load_pair``);
2. the real pipeline's front end on the *masked* photo: detect, landmarks,
   align, automatic mask (``face.frontend.prepare_face``). The region every method
   fills is that aligned mask warped into the photo (exactly the pixels
   ``face.blend.paste_back`` treats as the region), so methods differ only in the fill;
3. each method fills the region (``methods``); photos are processed in chunks
   of ``batch_size`` and ``ours`` optimises a chunk in one projector call, as
   ``batch`` does (with ``samples`` N > 1, N completions per photo: ``samples.py``);
4. figures of every result against the clean photo (``metrics.Scorer``),
   from the exact uint8 pixels written to ``OUT/<key>/<method>.png``;
5. ``OUT/<key>/eval.json`` is written last: it is the done marker. A rerun
   skips the (photo, method) results whose marker entry matches the current
   settings and whose PNG exists, and computes only what is missing (a new
   method, or ours with other settings).

A photo that fails (unreadable file, no face, ...) is reported in the table,
``metrics.csv`` and ``index.html``, and the run goes on. The markers, throttled
reports and error lines are the folder runs' (``runs/bookkeeping.py``).
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from .. import DEFAULT_NETWORK
from ..atomic import atomic_write_text
from ..errors import UnmaskError
from ..face.frontend import FaceOptions, prepare_face
from ..images import save_image
from ..pipeline import get_network, network_crop_scale
from ..pipeline.pictures import mask_overlay, thumbnail
from ..projector import ProjectionConfig
from ..runs.bookkeeping import (MARKER_VERSION, ThrottledReport, attempt, count_statuses, describe_error, jsonable,
                                read_marker, write_marker)
from ..runtime.device import module_device, resolve_device
from .data import LoadedPair, Pair, find_pairs, load_pair
from .html import render_eval_html
from .methods import FillInput, FillOutput, MethodContext, build_methods, parse_methods
from .metrics import LPIPS_CROP, METRIC_NAMES, METRICS_VERSION, FaceInResult, Scorer
from .plots import write_plots
from .samples import SAMPLE_FIELDS, completions_picture, format_samples_table, score_completions, summarize_samples
from .stats import DEFAULT_BOOTSTRAP, SUMMARY_FIELDS, MetricSummary, format_table, summarize, summary_rows

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_METHODS = ("ours", "telea", "ns", "none")
MARKER = "eval.json"
#: Aligned working resolution when no network is loaded (baselines only).
RESOLUTION_WITHOUT_NETWORK = 256
ROW_FIELDS = ("id", "method", "status", "error", "seconds", "prep_seconds", "metric_seconds", *METRIC_NAMES,
              "flagged", "image")
THUMB_SIDE = 256


@dataclass
class EvalResult:
    """What :func:`run_eval` produced."""

    outdir: Path
    methods: List[str]
    rows: List[Dict[str, object]]
    summaries: List[MetricSummary]
    table: str
    metrics_csv: Path
    summary_csv: Path
    index_html: Path
    plots: List[Path] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)  # photos: ok / skipped / failed
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (key, error)


def region_in_photo(face) -> np.ndarray:
    """Our automatic mask in the photo: every pixel the warped aligned mask touches (as ``paste_back``)."""
    coverage, _ = face.aligned.transform.warp_to_source(face.mask_aligned.astype(np.float32), cv2.INTER_LINEAR)
    return coverage > 1e-3


def _row(key: str, method: str, status: str, error: str = "", flagged: bool = False, **figures) -> Dict[str, object]:
    row: Dict[str, object] = {f: None for f in ROW_FIELDS}
    row.update(id=key, method=method, status=status, error=error, flagged=flagged)
    row.update(figures)
    return row


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not np.isfinite(v) else format(v, ".6g")
    return str(v)


def write_metrics_csv(path: Path, rows: Sequence[Dict[str, object]], fields: Sequence[str] = ROW_FIELDS) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in fields})
    return atomic_write_text(path, buf.getvalue())


def read_metrics_csv(path: PathLike) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_summary_csv(path: Path, summaries: Sequence[MetricSummary]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in summary_rows(summaries):
        w.writerow(r)
    return atomic_write_text(path, buf.getvalue())


def _fingerprint(pair: Pair) -> Dict[str, object]:
    """Size and modification time of the pair's files: a changed input is evaluated again."""
    out: Dict[str, object] = {}
    for name, path in (("masked", pair.masked), ("clean", pair.clean), ("gt_mask", pair.gt_mask)):
        try:
            st = Path(path).stat() if path is not None else None
        except OSError:
            st = None
        out[name] = None if st is None else [int(st.st_size), int(st.st_mtime_ns)]
    return out


@dataclass
class _Photo:
    """One pair on its way through a chunk."""

    pair: Pair
    marker: Optional[dict]              # its earlier marker, when the inputs and shared settings still match
    todo: List[str]                     # methods to run
    done: Dict[str, dict]               # marker entries of methods already done
    loaded: Optional[LoadedPair] = None
    item: Optional[FillInput] = None
    prep_seconds: float = 0.0


def run_eval(folder: PathLike, outdir: PathLike, config: Optional[ProjectionConfig] = None,
             face: Optional[FaceOptions] = None, *, network: Optional[PathLike] = DEFAULT_NETWORK, G=None,
             device=None, methods: Union[str, Sequence[str]] = DEFAULT_METHODS, limit: Optional[int] = None,
             batch_size: Optional[int] = None, feather_px: Optional[float] = None, n_boot: int = DEFAULT_BOOTSTRAP,
             progress: bool = True, plots: bool = True, echo=None, samples: int = 1) -> EvalResult:
    """Evaluate ``methods`` on the pairs below ``folder``; outputs in ``outdir`` (see the module docstring).

    ``config``: how 'ours' projects (as for ``unmask``); ``face``: the front end's
    landmark ``backend`` and mask ``margin`` (as ``--backend/--margin``).
    ``limit``: the first K pairs in sorted key order. ``echo(line)`` receives
    failure lines as they happen (default: tqdm's write to stderr).
    ``samples`` N > 1: ours projects N completions per photo; its row is the
    completion with the lowest visible loss and reports the first start, the
    oracle best of N and the spread too (``evaluation/samples.py``).
    """
    return EvalRun(folder, outdir, config, face, network=network, G=G, device=device, methods=methods, limit=limit,
                   batch_size=batch_size, feather_px=feather_px, n_boot=n_boot, progress=progress, plots=plots,
                   echo=echo, samples=samples).run()


class EvalRun:
    """One evaluation: chunks of pairs through the front end, every method, the scorer and the reports."""

    def __init__(self, folder: PathLike, outdir: PathLike, config: Optional[ProjectionConfig] = None,
                 face: Optional[FaceOptions] = None, *, network: Optional[PathLike] = DEFAULT_NETWORK, G=None,
                 device=None, methods: Union[str, Sequence[str]] = DEFAULT_METHODS, limit: Optional[int] = None,
                 batch_size: Optional[int] = None, feather_px: Optional[float] = None,
                 n_boot: int = DEFAULT_BOOTSTRAP, progress: bool = True, plots: bool = True, echo=None,
                 samples: int = 1):
        self.folder, self.outdir = Path(folder), Path(outdir)
        self.names = parse_methods(methods)
        if int(samples) != samples or samples < 1:
            raise UnmaskError(f"--samples {samples}: must be a whole number, at least 1")
        if samples > 1 and "ours" not in self.names:
            raise UnmaskError("--samples: several completions are ours' (add 'ours' to --methods)")
        self.samples = int(samples)
        self.fields = ROW_FIELDS + (SAMPLE_FIELDS if self.samples > 1 else ())
        if self.outdir.exists() and not self.outdir.is_dir():
            raise UnmaskError(f"{self.outdir}: exists and is not a folder")
        self.pairs = find_pairs(self.folder)
        if limit is not None:
            if limit < 1:
                raise UnmaskError(f"--limit {limit}: must be at least 1")
            self.pairs = self.pairs[: int(limit)]
        if G is None and "ours" in self.names:
            G = get_network(network, resolve_device(device, per_process=True))
        self.G = G
        self.device = module_device(G) if G is not None else resolve_device(device, per_process=True)
        self.batch_size = batch_size if batch_size is not None else (4 if self.device.type == "cuda" else 1)
        if self.batch_size < 1:
            raise UnmaskError(f"--batch-size {self.batch_size}: must be at least 1")
        self.resolution = int(G.img_resolution) if G is not None else RESOLUTION_WITHOUT_NETWORK
        requested = config if config is not None else ProjectionConfig()
        self.config = requested.for_device(self.device).for_network(G) if G is not None else None
        self.face = face if face is not None else FaceOptions()
        self.crop_scale = network_crop_scale(G) if G is not None else 1.0
        self.fillers = {m.name: m for m in build_methods(self.names, MethodContext(
            G=G, config=self.config, device=self.device, feather_px=feather_px, samples=self.samples))}
        self.method_settings = {n: jsonable(self.fillers[n].settings()) for n in self.names}
        self.shared = jsonable({"metrics_version": METRICS_VERSION, "backend": self.face.backend,
                                "margin": self.face.margin, "region": self.face.region, "work_resolution": self.resolution,
                                "crop_scale": self.crop_scale, "lpips_crop": LPIPS_CROP})
        self.scorer = Scorer(device=self.device)
        self.n_boot, self.plots, self.progress, self.echo = n_boot, plots, progress, echo
        self.report_settings = {
            "input": str(self.folder), "network": str(getattr(G, "source", network)) if G else "-",
            "steps": requested.steps, "lambda": requested.lambda_perceptual, "init": requested.init,
            "seed": requested.seed, "schedule": getattr(self.config, "schedule", "-"),
            "precision": getattr(self.config, "precision", "-"), "device": str(self.device),
            "batch_size": self.batch_size, "methods": ",".join(self.names), "backend": self.face.backend,
            "margin": "default" if self.face.margin is None else self.face.margin, "region": self.face.region,
            **({"samples": self.samples, "sample_fork": requested.sample_fork} if self.samples > 1 else {})}
        self.rows_by_key: Dict[str, Dict[str, Dict[str, object]]] = {}
        self.status_by_key: Dict[str, str] = {}
        self.failures: List[Tuple[str, str]] = []
        self.plot_paths: List[str] = []
        self.summary_text = ""  # the printed table, on the page once the run is complete
        self.report = ThrottledReport(self._write_reports)
        self.bar = None

    def run(self) -> EvalResult:
        # 1. Every chunk of pairs, the reports rewritten as it goes.
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.bar = tqdm(total=len(self.pairs), desc="eval-unmask", unit="photo", disable=not self.progress)
        try:
            self.report()
            for i in range(0, len(self.pairs), self.batch_size):
                self._chunk(self.pairs[i:i + self.batch_size])
        finally:
            self.bar.close()
            self.report()
        # 2. The summary: figures per method, the table, the plots.
        rows = self._all_rows()
        summaries = summarize(rows, self.names, n_boot=self.n_boot)
        self.summary_text = format_table(summaries, self.names)
        if self.samples > 1:  # the first start, the chosen and the oracle completion, the spread
            summaries += summarize_samples(rows, n_boot=self.n_boot)
            self.summary_text += "\n\n" + format_samples_table(summaries, self.samples)
        summary_csv = write_summary_csv(self.outdir / "summary.csv", summaries)
        if self.plots:
            try:
                self.plot_paths[:] = [p.relative_to(self.outdir).as_posix()
                                      for p in write_plots(self.outdir, rows, self.names)]
            except ImportError as exc:  # matplotlib missing: the figures are still in the CSVs
                self._say(f"plots skipped: {exc}")
        self.report()
        return EvalResult(outdir=self.outdir, methods=self.names, rows=rows, summaries=summaries,
                          table=self.summary_text, metrics_csv=self.outdir / "metrics.csv",
                          summary_csv=summary_csv, index_html=self.outdir / "index.html",
                          plots=[self.outdir / p for p in self.plot_paths],
                          counts=count_statuses(self.status_by_key.values(), ("ok", "skipped", "failed")),
                          failures=self.failures)

    def _chunk(self, chunk: List[Pair]) -> None:
        """What is left of each pair, its front end, every method over the chunk, then scores and markers."""
        photos = [p for p in (self._todo(pair) for pair in chunk) if p is not None]
        photos = [p for p in photos if self._prepare(p)]
        if not photos:
            return
        outputs = self._fill(photos)
        for photo in photos:
            self._finish_photo(photo, outputs)

    def _todo(self, pair: Pair) -> Optional[_Photo]:
        """The pair's methods still to run (None, and reported as skipped, when every one is done)."""
        odir = self.outdir / pair.key
        marker = read_marker(odir / MARKER, MARKER_VERSION)
        if marker is not None and (marker.get("shared") != self.shared or marker.get("inputs") != _fingerprint(pair)):
            marker = None  # other front-end settings, or the input files changed: redo everything
        done: Dict[str, dict] = {}
        if marker is not None:
            for n in self.names:
                entry = (marker.get("methods") or {}).get(n)
                if (entry and entry.get("settings") == self.method_settings[n] and entry.get("row")
                        and (odir / f"{n}.png").is_file()):
                    done[n] = entry
        todo = [n for n in self.names if n not in done]
        if not todo:
            self.rows_by_key[pair.key] = {n: {**done[n]["row"], "id": pair.key, "status": "ok"} for n in self.names}
            self.status_by_key[pair.key] = "skipped"
            self._tick()
            return None
        return _Photo(pair, marker, todo, done)

    def _prepare(self, photo: _Photo) -> bool:
        """Load the pair and run the real front end on the masked photo; False (reported) when it fails."""
        t0 = time.perf_counter()
        _, error = attempt(self._front_end, photo)
        if error is not None:
            self._fail_photo(photo.pair, describe_error(error))
            return False
        photo.prep_seconds = time.perf_counter() - t0
        return True

    def _front_end(self, photo: _Photo) -> None:
        loaded = load_pair(photo.pair)
        face = prepare_face(loaded.masked, self.resolution, self.face, crop_scale=self.crop_scale)
        region = region_in_photo(face)
        if not region.any():
            raise UnmaskError(f"{photo.pair.masked}: the automatic mask lies outside the photo")
        photo.loaded = loaded
        photo.item = FillInput(key=photo.pair.key, photo=loaded.masked.pixels, region=region, face=face)

    def _fill(self, photos: List[_Photo]) -> Dict[Tuple[str, str], Union[FillOutput, BaseException]]:
        """Each method over the photos that need it (one call per method: 'ours' projects them together)."""
        outputs: Dict[Tuple[str, str], Union[FillOutput, BaseException]] = {}
        for n in self.names:
            need = [p for p in photos if n in p.todo]
            if not need:
                continue
            res, error = attempt(self.fillers[n].fill_batch, [p.item for p in need])
            for p, r in zip(need, res if error is None else [error] * len(need)):
                outputs[(p.pair.key, n)] = r
        return outputs

    def _finish_photo(self, photo: _Photo, outputs) -> None:
        """Rows for every method of the pair, its pictures and its marker; a failure here fails the photo."""
        pair = photo.pair
        rows: Dict[str, Dict[str, object]] = {n: {**photo.done[n]["row"], "id": pair.key, "status": "ok"}
                                              for n in photo.done}
        _, error = attempt(self._score_and_save, photo, outputs, rows)
        if error is not None:
            self._fail_photo(pair, describe_error(error))
            return
        self.rows_by_key[pair.key] = {n: rows[n] for n in self.names}
        failed_here = [n for n in self.names if rows[n]["status"] != "ok"]
        self.status_by_key[pair.key] = "failed" if failed_here else "ok"
        self._tick()

    def _score_and_save(self, photo: _Photo, outputs, rows: Dict[str, Dict[str, object]]) -> None:
        pair, item, loaded = photo.pair, photo.item, photo.loaded
        odir = self.outdir / pair.key
        protect = [pair.masked, pair.clean, pair.gt_mask]
        entries = dict((photo.marker or {}).get("methods") or {})  # results of other methods are kept
        ok = [n for n in photo.todo if isinstance(outputs.get((pair.key, n)), FillOutput)]
        plain = [n for n in ok if not outputs[(pair.key, n)].completions]
        for n in photo.todo:
            r = outputs.get((pair.key, n))
            if not isinstance(r, FillOutput):
                msg = describe_error(r) if isinstance(r, BaseException) else "no output"
                rows[n] = _row(pair.key, n, "failed", f"{n}: {msg}", pair.flagged)
                self._say(f"failed: {pair.key} [{n}]: {msg}")
                self.failures.append((f"{pair.key} [{n}]", msg))
        if not ok:
            return
        t0 = time.perf_counter()
        clean_face = self.scorer.reference_face(loaded.clean, item.face.landmarks.box)
        figures = dict(zip(plain, self.scorer.score([outputs[(pair.key, n)].image for n in plain], loaded.clean,
                                                    loaded.gt, clean_face, near_box=item.face.landmarks.box)))
        info = {n: outputs[(pair.key, n)].info for n in ok}
        for n in ok:
            if n not in plain:  # several completions: the chosen one's figures, the first's, the oracle's
                figures[n], info[n] = self._score_completions(photo, n, outputs[(pair.key, n)], clean_face)
        metric_s = (time.perf_counter() - t0) / len(ok)
        for name, pixels in _thumbs(loaded, item).items():
            save_image(odir / name, pixels, protect=protect)
        for n in ok:
            out, fig = outputs[(pair.key, n)], figures[n]
            save_image(odir / f"{n}.png", out.image, protect=protect)
            save_image(odir / f"thumb_{n}.jpg", thumbnail(out.image, THUMB_SIDE), protect=protect, quality=88)
            row = _row(pair.key, n, "ok", "", pair.flagged, seconds=out.seconds, prep_seconds=photo.prep_seconds,
                       metric_seconds=metric_s, image=f"{pair.key}/{n}.png", **fig)
            rows[n] = row
            entries[n] = {"settings": self.method_settings[n], "row": jsonable(row), "info": info[n]}
        write_marker(odir / MARKER, key=pair.key, shared=self.shared, inputs=_fingerprint(pair), methods=entries)

    def _score_completions(self, photo: _Photo, name: str, out: FillOutput,
                           clean_face: FaceInResult) -> Tuple[Dict[str, object], Dict[str, object]]:
        """Every completion scored and saved (``<name>_<rank>.png``, a picture for the page); (row figures, info)."""
        loaded, item, odir = photo.loaded, photo.item, self.outdir / photo.pair.key
        protect = [photo.pair.masked, photo.pair.clean, photo.pair.gt_mask]
        figures, records = score_completions(self.scorer, out.completions, loaded.clean, loaded.gt, clean_face,
                                             near_box=item.face.landmarks.box)
        for rec, c in zip(records, out.completions):
            rec["file"] = f"{name}_{rec['rank']}.png"
            save_image(odir / rec["file"], c.image, protect=protect)
        picture = completions_picture(item.photo, loaded.clean, loaded.gt, out.completions, figures, records)
        save_image(odir / f"thumb_{name}_samples.jpg", picture, protect=protect, quality=88)
        return figures, {**out.info, "samples": records}

    # ------------------------------------------------------------------ reporting

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)
        else:
            self.bar.write(line, file=sys.stderr)

    def _fail_photo(self, pair: Pair, msg: str) -> None:
        self.rows_by_key[pair.key] = {n: _row(pair.key, n, "failed", msg, pair.flagged) for n in self.names}
        self.status_by_key[pair.key] = "failed"
        self.failures.append((pair.key, msg))
        self._say(f"failed: {pair.key}: {msg}")
        self._tick()

    def _tick(self) -> None:
        """One more pair finished: the progress bar and (throttled) the reports."""
        self.bar.update(1)
        self.bar.set_postfix(count_statuses(self.status_by_key.values(), ("ok", "skipped", "failed")))
        self.report(force=False)

    def _all_rows(self) -> List[Dict[str, object]]:
        out = []
        for p in self.pairs:
            got = self.rows_by_key.get(p.key)
            for n in self.names:
                out.append(got[n] if got and n in got else _row(p.key, n, "pending", flagged=p.flagged))
        return out

    def _write_reports(self) -> None:
        rows = self._all_rows()
        write_metrics_csv(self.outdir / "metrics.csv", rows, self.fields)
        html = render_eval_html(rows, self.names, self.pairs, self.status_by_key, self.report_settings,
                                plots=self.plot_paths, summary_text=self.summary_text)
        atomic_write_text(self.outdir / "index.html", html)


def _thumbs(loaded: LoadedPair, item: FillInput) -> Dict[str, np.ndarray]:
    """Small pictures for index.html: the masked photo with our region, the clean photo with the GT outline."""
    def small_with(img, mask, alpha):
        t = thumbnail(img, THUMB_SIDE)
        m = cv2.resize(mask.astype(np.uint8), (t.shape[1], t.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return mask_overlay(t, m, alpha=alpha)

    return {"thumb_masked.jpg": small_with(item.photo, item.region, 0.25),
            "thumb_clean.jpg": small_with(loaded.clean, loaded.gt, 0.0)}
