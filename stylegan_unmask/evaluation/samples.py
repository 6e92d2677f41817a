"""``eval-unmask --samples N``: what several completions per photo are worth, measured, not assumed.

With N > 1 ``ours`` optimises N starts per photo in one batch, as
``project --samples N`` does. Its usual row stays what a user gets by default:
the *chosen* completion, the one with the lowest loss on the visible face
(``unmasked.png``). The same row gains (columns :data:`SAMPLE_FIELDS`):

* ``*_first``: the completion from the usual start (sample 0). It starts where
  a single projection starts and follows it up to batched rounding, so oracle
  and single projection compare within one run;
* ``*_oracle``: the best of the N by LPIPS inside the ground-truth mask. An
  oracle: picking it needs the clean photo, so it bounds what a better chooser
  (or the user's eye) could gain, it is not a figure of the method;
* ``spread``: the mean LPIPS inside the mask between every two completions,
  each composited into the clean photo as for ``lpips_mask``: how much the
  completions differ where the photo does not decide.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..pipeline.pictures import comparison_grid
from .methods import Completion
from .metrics import FaceInResult, Scorer, crop_resized, mask_crop_box
from .stats import DEFAULT_BOOTSTRAP, MetricSummary, summarize

#: Extra columns of metrics.csv with --samples N > 1 (filled on ours' rows).
SAMPLE_FIELDS = ("samples", "chosen_sample", "oracle_sample", "lpips_mask_first", "psnr_mask_first",
                 "ssim_mask_first", "lpips_mask_oracle", "psnr_mask_oracle", "ssim_mask_oracle", "spread",
                 "chosen_beats_first", "oracle_beats_first")
#: The figures summarised over the photos (summary.csv rows of method ``ours``).
SAMPLE_SUMMARY = ("lpips_mask_first", "psnr_mask_first", "ssim_mask_first", "lpips_mask_oracle", "psnr_mask_oracle",
                  "ssim_mask_oracle", "spread", "chosen_beats_first", "oracle_beats_first")
IN_MASK = ("lpips_mask", "psnr_mask", "ssim_mask")
#: Side of a panel of the per-photo picture of the completions.
PANEL = 192


def score_completions(scorer: Scorer, completions: Sequence[Completion], clean: np.ndarray, gt: np.ndarray,
                      clean_face: FaceInResult, near_box=None) -> Tuple[Dict[str, object], List[Dict[str, object]]]:
    """(ours' row figures: every figure of the chosen completion and the sample columns, one record per
    completion for eval.json). ``completions``: best first by visible loss, one of them from sample 0."""
    images = [c.image for c in completions]
    in_mask, whole, pairs = scorer.score_samples(images, clean, gt, clean_face, near_box, full=(0,))
    lp = [float(f["lpips_mask"]) for f in in_mask]
    first = next(i for i, c in enumerate(completions) if c.sample == 0)
    oracle = int(np.argmin(lp))  # the first of equals: the chosen one when it ties
    row = dict(whole[0])
    row.update(samples=len(completions), chosen_sample=completions[0].sample, oracle_sample=completions[oracle].sample,
               spread=float(np.mean(pairs)), chosen_beats_first=lp[0] < lp[first],
               oracle_beats_first=lp[oracle] < lp[first])
    for tag, i in (("first", first), ("oracle", oracle)):
        row.update({f"{name}_{tag}": in_mask[i][name] for name in IN_MASK})
    records = [{"rank": k, "sample": c.sample, "final_loss": c.final_loss, **in_mask[k - 1]}
               for k, c in enumerate(completions, 1)]
    return row, records


def completions_picture(photo: np.ndarray, clean: np.ndarray, gt: np.ndarray, completions: Sequence[Completion],
                        row: Mapping[str, object], records: Sequence[Mapping[str, object]]) -> np.ndarray:
    """The masked photo, every completion (best first; v = visible loss, L = LPIPS_m) and the clean photo,
    cropped around the ground-truth mask, for index.html."""
    box = mask_crop_box(gt, context=1.6)
    panels = [("masked", crop_resized(photo, box, PANEL))]
    for c, rec in zip(completions, records):
        tags = "".join(t for t, s in ((" first", 0), (" oracle", row["oracle_sample"])) if c.sample == s)
        panels.append((f"#{rec['rank']} v={c.final_loss:.3f} L={rec['lpips_mask']:.3f}{tags}",
                       crop_resized(c.image, box, PANEL)))
    panels.append(("ground truth", crop_resized(clean, box, PANEL)))
    return comparison_grid(panels, panel_size=PANEL)


def summarize_samples(rows: Sequence[Mapping[str, object]], n_boot: int = DEFAULT_BOOTSTRAP) -> List[MetricSummary]:
    """Per sample figure, over the photos where ours has it: n, median, mean, bootstrap interval."""
    return summarize(rows, ["ours"], SAMPLE_SUMMARY, n_boot=n_boot)


def format_samples_table(summaries: Sequence[MetricSummary], samples: int) -> str:
    """The printed section: first start, chosen and oracle side by side, the spread, the win shares.
    ``summaries``: the usual ones (ours' own figures are the chosen's) and :func:`summarize_samples`'."""
    get = {s.metric: s for s in summaries if s.method == "ours"}

    def med(name: str, digits: int = 3) -> str:
        s = get.get(name)
        return "-" if s is None or s.median is None else f"{s.median:.{digits}f}"

    def mean(name: str) -> str:
        s = get.get(name)
        if s is None or s.mean is None:
            return "-"
        return f"{s.mean:.3f}" + (f" [{s.ci_low:.3f}, {s.ci_high:.3f}]" if s.ci_low is not None else "")

    rows = [["completion", "n", "LPIPS_m", "PSNR_m", "SSIM_m", "LPIPS_m mean [95% interval]"]]
    for label, tag in (("first start (sample 0: a single projection's)", "_first"),
                       ("chosen (lowest visible loss: 'ours' above)", ""),
                       (f"oracle (best of {samples} by LPIPS_m; needs the ground truth)", "_oracle")):
        n = get[f"lpips_mask{tag}"].n if f"lpips_mask{tag}" in get else 0
        rows.append([label, str(n), med(f"lpips_mask{tag}"), med(f"psnr_mask{tag}", 2), med(f"ssim_mask{tag}"),
                     mean(f"lpips_mask{tag}")])
    spread_n = get["spread"].n if "spread" in get else 0
    rows.append([f"spread (mean LPIPS_m between two of the {samples})", str(spread_n), med("spread"), "-", "-",
                 mean("spread")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [f"samples: {samples} completions per photo (ours); medians, and the mean of LPIPS_m:"]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]

    def share(name: str) -> str:
        s = get.get(name)
        return "-" if s is None or s.mean is None else f"{100 * s.mean:.0f}% of {s.n}"

    out.append(f"  LPIPS_m lower than the first start's: chosen on {share('chosen_beats_first')} photos, "
               f"oracle on {share('oracle_beats_first')}")
    return "\n".join(out)
