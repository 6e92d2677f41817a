"""``stylegan-unmask eval-unmask`` (quality against ground truth) and ``synth-masks`` (paired data from clean faces).

Thin wrappers over :func:`stylegan_unmask.evaluation.run.run_eval` and
:func:`stylegan_unmask.evaluation.synth_masks.synth_folder`; definitions of
every figure in docs/evaluation.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .. import DEFAULT_NETWORK
from .project_commands import W_PRIOR_OPTION


@click.command("eval-unmask")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--network", default=DEFAULT_NETWORK, show_default=True, metavar="NAME|URL|PATH",
              help="Generator for 'ours': registry name, URL, NVIDIA .pkl or rosinality .pt.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True, help="Projection steps.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first K pairs (sorted by id).")
@click.option("--methods", default="ours,telea,ns,none", show_default=True,
              help="Comma-separated fill methods (registry in stylegan_unmask/evaluation/methods.py).")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: eval/<FOLDER name>].")
@click.option("--lambda", "lambda_perceptual", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="Weight of the VGG16 perceptual term in the projection.")
@W_PRIOR_OPTION
@click.option("--init", default="avg", show_default=True, metavar="avg|random|best-of-N", help="Starting latent.")
@click.option("--seed", type=int, default=0, show_default=True, help="Projection seed.")
@click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Photos projected together [default: 4 on a GPU, 1 on a CPU].")
@click.option("--backend", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto",
              show_default=True, help="68-point landmark model of the front end.")
@click.option("--region", type=click.Choice(["segment", "landmarks"]), default="segment", show_default=True,
              help="The region every method fills: the segmented face mask or the landmark polygon.")
@click.option("--margin", type=click.FloatRange(min=0), default=None,
              help="With --region landmarks: margin beyond the jaw, in inter-ocular distances [default: 0.25].")
@click.option("--schedule", type=click.Choice(["fast", "official"]), default="fast", show_default=True,
              help="Projection schedule, as in `batch` ('official': NVIDIA's projection as is).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              show_default=True, help="Projection precision, as in `batch`.")
@click.option("--compile", "compile_mode", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="torch.compile the projection step, as in `batch`.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ours: N completions per photo from N starts (as `project --samples`); reports the chosen one "
                   "(lowest visible loss), the first start, the oracle best of N (needs the ground truth) and "
                   "their spread.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
@click.option("--no-plots", is_flag=True, help="Skip the matplotlib distribution plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def eval_unmask_command(folder: Path, network: str, steps: int, limit: Optional[int], methods: str,
                        outdir: Optional[Path], lambda_perceptual: float, w_prior: Optional[float], init: str,
                        seed: int, device: str,
                        batch_size: Optional[int], backend: str, region: str, margin: Optional[float], schedule: str,
                        precision: str, compile_mode: str, samples: int, n_boot: int, no_plots: bool, quiet: bool):
    """Measure unmasking against ground truth on a paired FOLDER (<id>/{masked.*, clean.*, gt_mask.png}).

    \b
    Every photo goes through the real pipeline; every method fills the same
    region (our automatic mask). Writes metrics.csv, summary.csv, index.html,
    plots/ and <id>/<method>.png to OUTDIR. Resumable: rerun to finish.

    \b
    Examples:
      stylegan-unmask eval-unmask ../shared/data/dev/paired --limit 30 --steps 300
      stylegan-unmask eval-unmask pairs/ --network net.pkl --methods ours,telea
      stylegan-unmask eval-unmask ../shared/data/dev/paired --limit 6 --steps 150 --samples 4
    """
    from ..evaluation.run import run_eval
    from ..face.frontend import FaceOptions
    from ..projector import ProjectionConfig, projection_config

    try:
        ProjectionConfig(steps=1, init=init)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--init") from None
    outdir = outdir if outdir is not None else Path("eval") / folder.resolve().name
    config = projection_config(steps=steps, lambda_perceptual=lambda_perceptual, w_prior=w_prior, init=init,
                               seed=seed, schedule=schedule, precision=precision, compile=compile_mode)
    result = run_eval(folder, outdir, config, FaceOptions(backend=backend, margin=margin, region=region),
                      network=network,
                      device=None if device == "auto" else device, methods=methods, limit=limit,
                      batch_size=batch_size, n_boot=n_boot, progress=not quiet, plots=not no_plots,
                      samples=samples)
    c = result.counts
    click.echo(f"{c.get('ok', 0)} photos evaluated, {c.get('skipped', 0)} reused, {c.get('failed', 0)} failed")
    for key, err in result.failures:
        click.echo(f"  failed: {key}: {err}")
    click.echo(result.table)
    click.echo(f"metrics: {result.metrics_csv}  summary: {result.summary_csv}  index: {result.index_html}")


@click.command("synth-masks")
@click.argument("faces_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--styles", default="surgical,cloth,kn95,black", show_default=True,
              help="Mask styles to draw from (one chosen per face at random, seeded).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; with the face id it fixes each mask.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first K faces (sorted).")
@click.option("--backend", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto",
              show_default=True, help="68-point landmark model.")
@click.option("--recursive", "-r", is_flag=True, help="Also look in sub-folders.")
@click.option("--no-check", is_flag=True, help="Skip the realism check (our detector on every masked face).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth_masks_command(faces_dir: Path, out_dir: Path, styles: str, seed: int, limit: Optional[int], backend: str,
                        recursive: bool, no_check: bool, quiet: bool):
    """Draw realistic face masks on the clean faces in FACES_DIR; write pairs with exact ground truth to OUT_DIR.

    \b
    OUT_DIR/<id>/{masked.png, clean.png, gt_mask.png} + index.csv (style per face),
    ready for `stylegan-unmask eval-unmask OUT_DIR`.

    \b
    Example:
      stylegan-unmask synth-masks ../shared/data/dev/faces synth/ --seed 0
    """
    from ..evaluation.synth_masks import synth_folder

    report = synth_folder(faces_dir, out_dir, styles=styles, seed=seed, limit=limit, backend=backend,
                          check=not no_check, recursive=recursive, progress=not quiet)
    click.echo(f"{len(report.ok)} masked faces written to {out_dir}/, {len(report.failed)} failed; "
               f"index: {report.index_csv}")
    for r in report.failed:
        click.echo(f"  failed: {r.source}: {r.error}")
    rate = report.detection_rate
    if rate is not None:
        found = sum(bool(r.detected) for r in report.ok)
        click.echo(f"realism check: our detector finds {found}/{len(report.ok)} masked faces ({rate:.1%})")
