"""``eval-unmask``: every method on every pair, figures against the clean photo, reports.

Per photo (``data.Pair``):

1. load and check the pair (``data.load_pair``);
2. the real pipeline's front end on the *masked* photo: detect, landmarks,
   align, automatic mask (``pipeline.prepare_face``). The region every method
   fills is that aligned mask warped into the photo (exactly the pixels
   ``blend.paste_back`` treats as the region), so methods differ only in the fill;
3. each method fills the region (``methods``); photos are processed in chunks
   of ``batch_size`` and ``ours`` optimises a chunk in one projector call, as
   ``batch`` does;
4. figures of every result against the clean photo (``metrics.Scorer``),
   from the exact uint8 pixels written to ``OUT/<key>/<method>.png``;
5. ``OUT/<key>/eval.json`` is written last: it is the done marker. A rerun
   skips the (photo, method) results whose marker entry matches the current
   settings and whose PNG exists, and computes only what is missing (a new
   method, or ours with other settings).

A photo that fails (unreadable file, no face, ...) is reported in the table,
``metrics.csv`` and ``index.html``, and the run goes on.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..atomic import atomic_write_text
from ..checkpoints.registry import DEFAULT_NETWORK
from ..errors import UnmaskError
from .data import LoadedPair, Pair, find_pairs, load_pair
from .methods import FillInput, FillOutput, MethodContext, build_methods, parse_methods
from .metrics import LPIPS_CROP, METRIC_INFO, METRIC_NAMES, METRICS_VERSION, Scorer
from .stats import DEFAULT_BOOTSTRAP, MetricSummary, SUMMARY_FIELDS, format_table, summarize, summary_rows

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_METHODS = ("ours", "telea", "ns", "none")
MARKER = "eval.json"
MARKER_VERSION = 1
#: Aligned working resolution when no network is loaded (baselines only).
RESOLUTION_WITHOUT_NETWORK = 256
ROW_FIELDS = ("id", "method", "status", "error", "seconds", "prep_seconds", "metric_seconds", *METRIC_NAMES,
              "flagged", "image")
THUMB_SIDE = 256
REPORT_INTERVAL_S = 5.0


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


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def region_in_photo(face) -> np.ndarray:
    """Our automatic mask in the photo: every pixel the warped aligned mask touches (as ``paste_back``)."""
    import cv2

    coverage, _ = face.aligned.transform.warp_to_source(face.mask_aligned.astype(np.float32), cv2.INTER_LINEAR)
    return coverage > 1e-3


def _describe(exc: BaseException) -> str:
    from ..batch import _describe as describe

    return describe(exc)


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


def write_metrics_csv(path: Path, rows: Sequence[Dict[str, object]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in ROW_FIELDS})
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


def _read_marker(path: Path) -> Optional[dict]:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("version") == MARKER_VERSION else None


def run_eval(folder: PathLike, outdir: PathLike, *, network: Optional[PathLike] = DEFAULT_NETWORK, steps: int = 1000,
             lambda_perceptual: float = 0.8, init: str = "avg", seed: int = 0, device=None,
             methods: Union[str, Sequence[str]] = DEFAULT_METHODS, limit: Optional[int] = None,
             batch_size: Optional[int] = None, backend: str = "auto", margin: Optional[float] = None,
             feather_px: Optional[float] = None, n_boot: int = DEFAULT_BOOTSTRAP, progress: bool = True,
             plots: bool = True, G=None, echo=None, schedule: Optional[str] = None,
             precision: Optional[str] = None, compile: Optional[str] = None) -> EvalResult:
    """Evaluate ``methods`` on the pairs below ``folder``; outputs in ``outdir`` (see the module docstring).

    ``limit``: the first K pairs in sorted key order. ``echo(line)`` receives
    failure lines as they happen (default: tqdm's write to stderr).
    ``schedule`` / ``precision`` / ``compile``: the projector's options of the same name
    (as ``batch --schedule/--precision/--compile``); None keeps the projector's default.
    """
    from tqdm.auto import tqdm

    from ..batch import default_device
    from ..images import save_image
    from ..pipeline import (get_network, network_crop_scale, network_device, prepare_face, projection_config,
                            resolve_device)
    from ..report import mask_overlay, thumbnail
    from .html import render_eval_html

    folder, outdir = Path(folder), Path(outdir)
    names = parse_methods(methods)
    if outdir.exists() and not outdir.is_dir():
        raise UnmaskError(f"{outdir}: exists and is not a folder")
    pairs = find_pairs(folder)
    if limit is not None:
        if limit < 1:
            raise UnmaskError(f"--limit {limit}: must be at least 1")
        pairs = pairs[: int(limit)]

    if G is None and ("ours" in names):
        dev = resolve_device(device) if device is not None else default_device()
        G = get_network(network, dev)
    if G is not None:
        dev = network_device(G)
    else:
        dev = resolve_device(device) if device is not None else default_device()
    if batch_size is None:
        batch_size = 4 if dev.type == "cuda" else 1
    if batch_size < 1:
        raise UnmaskError(f"--batch-size {batch_size}: must be at least 1")
    resolution = int(G.img_resolution) if G is not None else RESOLUTION_WITHOUT_NETWORK
    extra = {k: v for k, v in (("schedule", schedule), ("precision", precision), ("compile", compile))
             if v is not None}
    config = projection_config(steps=steps, lambda_perceptual=lambda_perceptual, init=init, seed=seed,
                               device=dev, **extra) if G is not None else None
    crop_scale = network_crop_scale(G) if G is not None else 1.0
    context = MethodContext(G=G, config=config, device=dev, feather_px=feather_px)
    fillers = {m.name: m for m in build_methods(names, context)}
    method_settings = {n: _jsonable(fillers[n].settings()) for n in names}
    shared = _jsonable({"metrics_version": METRICS_VERSION, "backend": backend, "margin": margin,
                        "work_resolution": resolution, "crop_scale": crop_scale, "lpips_crop": LPIPS_CROP})
    scorer = Scorer(device=dev)

    outdir.mkdir(parents=True, exist_ok=True)
    rows_by_key: Dict[str, Dict[str, Dict[str, object]]] = {}
    status_by_key: Dict[str, str] = {}
    failures: List[Tuple[str, str]] = []
    last_write = [0.0]
    settings_for_report = {"input": str(folder), "network": str(getattr(G, "source", network)) if G else "-",
                           "steps": steps, "lambda": lambda_perceptual, "init": init, "seed": seed,
                           "schedule": getattr(config, "schedule", "-"), "precision": getattr(config, "precision", "-"),
                           "device": str(dev), "batch_size": batch_size, "methods": ",".join(names),
                           "backend": backend, "margin": "default" if margin is None else margin}

    def all_rows() -> List[Dict[str, object]]:
        out = []
        for p in pairs:
            got = rows_by_key.get(p.key)
            for n in names:
                if got and n in got:
                    out.append(got[n])
                else:
                    out.append(_row(p.key, n, "pending", flagged=p.flagged))
        return out

    def write_reports(force: bool = True):
        if not force and time.monotonic() - last_write[0] < REPORT_INTERVAL_S:
            return
        last_write[0] = time.monotonic()
        rows = all_rows()
        write_metrics_csv(outdir / "metrics.csv", rows)
        html = render_eval_html(rows, names, pairs, status_by_key, settings_for_report, plots=plot_paths,
                                summary_text=summary_text[0])
        atomic_write_text(outdir / "index.html", html)

    plot_paths: List[str] = []
    summary_text = [""]  # the printed table, on the page once the run is complete
    bar = tqdm(total=len(pairs), desc="eval-unmask", unit="photo", disable=not progress)
    say = echo or (lambda line: bar.write(line, file=sys.stderr))

    def fail_photo(pair: Pair, msg: str):
        rows_by_key[pair.key] = {n: _row(pair.key, n, "failed", msg, pair.flagged) for n in names}
        status_by_key[pair.key] = "failed"
        failures.append((pair.key, msg))
        say(f"failed: {pair.key}: {msg}")

    def finish(pair: Pair):
        counts = {s: sum(v == s for v in status_by_key.values()) for s in ("ok", "skipped", "failed")}
        bar.update(1)
        bar.set_postfix(counts)
        write_reports(force=False)

    def process_chunk(chunk: List[Pair]):
        # 1. what is already done, what is left
        work: List[Tuple[Pair, dict, List[str], Dict[str, dict]]] = []
        for pair in chunk:
            odir = outdir / pair.key
            marker = _read_marker(odir / MARKER)
            if marker is not None and (marker.get("shared") != shared or marker.get("inputs") != _fingerprint(pair)):
                marker = None  # other front-end settings, or the input files changed: redo everything
            done: Dict[str, dict] = {}
            if marker is not None:
                for n in names:
                    entry = (marker.get("methods") or {}).get(n)
                    if (entry and entry.get("settings") == method_settings[n] and entry.get("row")
                            and (odir / f"{n}.png").is_file()):
                        done[n] = entry
            todo = [n for n in names if n not in done]
            if not todo:
                rows_by_key[pair.key] = {n: {**done[n]["row"], "id": pair.key, "status": "ok"} for n in names}
                status_by_key[pair.key] = "skipped"
                finish(pair)
                continue
            work.append((pair, marker, todo, done))
        if not work:
            return
        # 2. load + front end
        prepared: List[Tuple[Pair, Optional[dict], List[str], Dict[str, dict], LoadedPair, FillInput, float]] = []
        for pair, marker, todo, done in work:
            t0 = time.perf_counter()
            try:
                loaded = load_pair(pair)
                face = prepare_face(loaded.masked, resolution, backend=backend, margin=margin,
                                    **({"crop_scale": crop_scale} if crop_scale != 1.0 else {}))
                region = region_in_photo(face)
                if not region.any():
                    raise UnmaskError(f"{pair.masked}: the automatic mask lies outside the photo")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one bad photo never stops the run
                fail_photo(pair, _describe(exc))
                finish(pair)
                continue
            item = FillInput(key=pair.key, photo=loaded.masked.pixels, region=region, face=face)
            prepared.append((pair, marker, todo, done, loaded, item, time.perf_counter() - t0))
        if not prepared:
            return
        # 3. fill: each method over the photos that need it
        outputs: Dict[Tuple[str, str], Union[FillOutput, Exception]] = {}
        for n in names:
            need = [p for p in prepared if n in p[2]]
            if not need:
                continue
            try:
                res = fillers[n].fill_batch([p[5] for p in need])
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001
                res = [exc] * len(need)
            for p, r in zip(need, res):
                outputs[(p[0].key, n)] = r
        # 4. score, save, mark
        for pair, marker, todo, done, loaded, item, prep_s in prepared:
            odir = outdir / pair.key
            protect = [pair.masked, pair.clean, pair.gt_mask]
            rows: Dict[str, Dict[str, object]] = {n: {**done[n]["row"], "id": pair.key, "status": "ok"} for n in done}
            entries = dict((marker or {}).get("methods") or {})  # results of other methods are kept
            try:
                ok = [n for n in todo if isinstance(outputs.get((pair.key, n)), FillOutput)]
                for n in todo:
                    r = outputs.get((pair.key, n))
                    if not isinstance(r, FillOutput):
                        msg = _describe(r) if isinstance(r, BaseException) else "no output"
                        rows[n] = _row(pair.key, n, "failed", f"{n}: {msg}", pair.flagged)
                        say(f"failed: {pair.key} [{n}]: {msg}")
                        failures.append((f"{pair.key} [{n}]", msg))
                if ok:
                    t0 = time.perf_counter()
                    clean_face = scorer.reference_face(loaded.clean, item.face.landmarks.box)
                    figures = scorer.score([outputs[(pair.key, n)].image for n in ok], loaded.clean, loaded.gt,
                                           clean_face, near_box=item.face.landmarks.box)
                    metric_s = (time.perf_counter() - t0) / len(ok)
                    thumbs = _thumbs(loaded, item, thumbnail, mask_overlay)
                    for name, pixels in thumbs.items():
                        save_image(odir / name, pixels, protect=protect)
                    for n, fig in zip(ok, figures):
                        out = outputs[(pair.key, n)]
                        save_image(odir / f"{n}.png", out.image, protect=protect)
                        save_image(odir / f"thumb_{n}.jpg", thumbnail(out.image, THUMB_SIDE), protect=protect,
                                   quality=88)
                        row = _row(pair.key, n, "ok", "", pair.flagged, seconds=out.seconds, prep_seconds=prep_s,
                                   metric_seconds=metric_s, image=f"{pair.key}/{n}.png", **fig)
                        rows[n] = row
                        entries[n] = {"settings": method_settings[n], "row": _jsonable(row), "info": out.info}
                    atomic_write_text(odir / MARKER, json.dumps({
                        "version": MARKER_VERSION, "key": pair.key, "shared": shared,
                        "inputs": _fingerprint(pair), "methods": entries,
                        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1, default=str))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001
                fail_photo(pair, _describe(exc))
                finish(pair)
                continue
            rows_by_key[pair.key] = {n: rows[n] for n in names}
            failed_here = [n for n in names if rows[n]["status"] != "ok"]
            status_by_key[pair.key] = "failed" if failed_here else "ok"
            finish(pair)

    try:
        write_reports()
        for i in range(0, len(pairs), batch_size):
            process_chunk(pairs[i:i + batch_size])
    finally:
        bar.close()
        write_reports()

    rows = all_rows()
    summaries = summarize(rows, names, n_boot=n_boot)
    summary_csv = write_summary_csv(outdir / "summary.csv", summaries)
    summary_text[0] = format_table(summaries, names)
    if plots:
        from .plots import write_plots

        try:
            plot_paths[:] = [p.relative_to(outdir).as_posix() for p in write_plots(outdir, rows, names)]
        except ImportError as exc:  # matplotlib missing: the figures are still in the CSVs
            say(f"plots skipped: {exc}")
    write_reports()
    counts = {s: sum(v == s for v in status_by_key.values()) for s in ("ok", "skipped", "failed")}
    return EvalResult(outdir=outdir, methods=names, rows=rows, summaries=summaries,
                      table=summary_text[0], metrics_csv=outdir / "metrics.csv",
                      summary_csv=summary_csv, index_html=outdir / "index.html",
                      plots=[outdir / p for p in plot_paths], counts=counts, failures=failures)


def _thumbs(loaded: LoadedPair, item: FillInput, thumbnail, mask_overlay) -> Dict[str, np.ndarray]:
    """Small pictures for index.html: the masked photo with our region, the clean photo with the GT outline."""
    import cv2

    def small_with(img, mask, alpha):
        t = thumbnail(img, THUMB_SIDE)
        m = cv2.resize(mask.astype(np.uint8), (t.shape[1], t.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return mask_overlay(t, m, alpha=alpha)

    return {"thumb_masked.jpg": small_with(item.photo, item.region, 0.25),
            "thumb_clean.jpg": small_with(loaded.clean, loaded.gt, 0.0)}
