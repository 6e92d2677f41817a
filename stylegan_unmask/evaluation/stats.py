"""Per-method summaries of the per-photo figures: median, mean, bootstrap interval, win shares.

* ``median`` / ``mean`` over the photos where the figure exists (a boolean
  figure's mean is the share of photos where it is true).
* ``ci_low`` / ``ci_high``: percentile-bootstrap 95 % interval of the **mean**
  (``n_boot`` resamples of the photos with replacement, seeded, so a rerun
  prints the same interval).
* ``ours_beats``: for a baseline, the share of photos (with the figure for
  both) where ours is strictly better than it (ties count as not better).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .metrics import METRIC_INFO, METRIC_NAMES

OURS = "ours"
DEFAULT_BOOTSTRAP = 2000


@dataclass
class MetricSummary:
    method: str
    metric: str
    n: int
    median: Optional[float]
    mean: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    ours_beats: Optional[float] = None  # share of photos where ours is better than this method
    ours_beats_n: int = 0


def value_of(v) -> Optional[float]:
    """A CSV/JSON figure -> float or None ('' / None / nan -> None; True -> 1.0)."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "false"):
            return 1.0 if s == "true" else 0.0
        v = float(s)
    f = float(v)
    return f if math.isfinite(f) else None


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                      level: float = 0.95):
    """(low, high) percentile-bootstrap interval of the mean; (None, None) for fewer than 2 values."""
    x = np.asarray(values, np.float64)
    if x.size < 2 or n_boot < 1:
        return None, None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_boot), x.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def summarize(rows: Iterable[Mapping[str, object]], methods: Sequence[str], metrics: Sequence[str] = METRIC_NAMES,
              n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> List[MetricSummary]:
    """One :class:`MetricSummary` per (method, metric), methods in the given order.

    ``rows``: per photo and method, with keys ``id``, ``method``, ``status``
    and the metric names; only ``status == 'ok'`` rows count.
    """
    by: Dict[str, Dict[str, Dict[str, float]]] = {m: {} for m in methods}
    for r in rows:
        if r.get("status") != "ok" or r.get("method") not in by:
            continue
        figures = {}
        for name in metrics:
            v = value_of(r.get(name))
            if v is not None:
                figures[name] = v
        by[str(r["method"])][str(r["id"])] = figures
    out: List[MetricSummary] = []
    for method in methods:
        for name in metrics:
            vals = [f[name] for f in by[method].values() if name in f]
            lo, hi = bootstrap_mean_ci(vals, n_boot, seed)
            s = MetricSummary(method, name, len(vals), float(np.median(vals)) if vals else None,
                              float(np.mean(vals)) if vals else None, lo, hi)
            if method != OURS and OURS in by:
                better = METRIC_INFO[name].higher_is_better if name in METRIC_INFO else True
                common = [k for k, f in by[method].items() if name in f and name in by[OURS].get(k, {})]
                if common:
                    wins = sum((by[OURS][k][name] > by[method][k][name]) if better
                               else (by[OURS][k][name] < by[method][k][name]) for k in common)
                    s.ours_beats, s.ours_beats_n = wins / len(common), len(common)
            out.append(s)
    return out


SUMMARY_FIELDS = ("method", "metric", "n", "median", "mean", "ci_low", "ci_high", "ours_beats", "ours_beats_n")


def summary_rows(summaries: Iterable[MetricSummary]) -> List[Dict[str, str]]:
    def f(v):
        return "" if v is None else format(v, ".6g")

    return [{"method": s.method, "metric": s.metric, "n": str(s.n), "median": f(s.median), "mean": f(s.mean),
             "ci_low": f(s.ci_low), "ci_high": f(s.ci_high), "ours_beats": f(s.ours_beats),
             "ours_beats_n": str(s.ours_beats_n) if s.ours_beats is not None else ""} for s in summaries]


_SHORT = {"lpips_mask": "LPIPS_m", "psnr_mask": "PSNR_m", "ssim_mask": "SSIM_m", "psnr_full": "PSNR",
          "ssim_full": "SSIM", "identity_distance": "ID_dist", "identity_same": "same_id", "face_found": "face"}


def _fmt(v: Optional[float], name: str) -> str:
    if v is None:
        return "-"
    if name.startswith("psnr"):
        return f"{v:.2f}"
    if METRIC_INFO.get(name) is not None and METRIC_INFO[name].kind == "bool":
        return f"{100 * v:.0f}%"
    return f"{v:.3f}"


def format_table(summaries: Sequence[MetricSummary], methods: Sequence[str],
                 metrics: Sequence[str] = METRIC_NAMES, markdown: bool = False) -> str:
    """The printed tables: medians, means with their bootstrap 95 % interval, and ours' win shares."""
    get = {(s.method, s.metric): s for s in summaries}
    n_photos = {m: max((s.n for s in summaries if s.method == m), default=0) for m in methods}
    head = ["method", "n"] + [_SHORT.get(m, m) for m in metrics]

    def cell(method, name, what):
        s = get.get((method, name))
        if s is None or s.n == 0:
            return "-"
        if what == "median":
            return _fmt(s.mean if METRIC_INFO[name].kind == "bool" else s.median, name)
        if what == "mean":
            ci = f" [{_fmt(s.ci_low, name)}, {_fmt(s.ci_high, name)}]" if s.ci_low is not None else ""
            return _fmt(s.mean, name) + ci
        return "-" if s.ours_beats is None else f"{100 * s.ours_beats:.0f}% of {s.ours_beats_n}"

    sections = [("median (yes/no figures: share of photos)", "median", list(methods)),
                ("mean [bootstrap 95% interval]", "mean", list(methods))]
    if OURS in methods and len(methods) > 1:
        sections.append(("share of photos where ours is better than ...", "wins", [m for m in methods if m != OURS]))
    out: List[str] = []
    for title, what, rows_for in sections:
        table = [head] + [[m, str(n_photos[m])] + [cell(m, name, what) for name in metrics] for m in rows_for]
        if markdown:
            out.append(f"**{title}**")
            out.append("")
            out += ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(r) + " |" for r in table[1:]]
        else:
            out.append(title + ":")
            widths = [max(len(r[i]) for r in table) for i in range(len(head))]
            out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
        out.append("")
    out.append("LPIPS_m/PSNR_m/SSIM_m: inside the ground-truth mask; PSNR/SSIM: whole photo; ID_dist: dlib "
               "descriptor distance to the clean face; same_id: ID_dist < 0.6 (no face = no); face: face found")
    return "\n".join(out)
