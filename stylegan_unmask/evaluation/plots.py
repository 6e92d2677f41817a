"""Distribution plots of the per-photo figures (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Sequence

import numpy as np

from ..atomic import atomic_file
from .html import _label
from .metrics import METRIC_INFO
from .stats import value_of

#: The float figures plotted, one panel each.
PLOTTED = ("lpips_mask", "psnr_mask", "ssim_mask", "psnr_full", "ssim_full", "identity_distance")


def write_plots(outdir: Path, rows: Sequence[Mapping[str, object]], methods: Sequence[str]) -> List[Path]:
    """``plots/distributions.png``: a box plot with the single photos as dots, per figure and method."""
    from matplotlib.figure import Figure  # optional (matplotlib); no pyplot: no global backend switch, no GUI

    values = {(m, n): [] for m in methods for n in PLOTTED}
    for r in rows:
        if r.get("status") != "ok" or r.get("method") not in methods:
            continue
        for n in PLOTTED:
            v = value_of(r.get(n))
            if v is not None:
                values[(r["method"], n)].append(v)
    cols = 3
    rows_n = (len(PLOTTED) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows_n))
    axes = fig.subplots(rows_n, cols, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, n in zip(axes.flat, PLOTTED):
        data = [values[(m, n)] for m in methods]
        pos = [i + 1 for i, d in enumerate(data) if d]
        if pos:
            ax.boxplot([d for d in data if d], positions=pos, widths=0.55, showfliers=False)
            for i, d in enumerate(data, 1):
                if d:
                    ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=6, alpha=0.5)
        ax.set_xticks(range(1, len(methods) + 1))
        ax.set_xticklabels([_label(m) for m in methods], rotation=20)
        info = METRIC_INFO[n]
        ax.set_title(f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(PLOTTED):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(outdir) / "plots" / "distributions.png"
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return [path]
