"""``stylegan-unmask project`` (one photo) and ``stylegan-unmask batch`` (a folder).

Both are thin wrappers: ``project`` calls :func:`stylegan_unmask.pipeline.unmask`
and :func:`~stylegan_unmask.pipeline.save_outputs`, ``batch`` calls
:func:`stylegan_unmask.runs.batch.run_batch`; the flags become a
``ProjectionConfig`` and ``FaceOptions``. Option spellings follow NVIDIA's
projector/generator scripts where they overlap (--network, --outdir, --seed,
--noise-mode).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import click

from .. import DEFAULT_NETWORK


def _parse_box(ctx, param, value) -> Optional[Tuple[float, float, float, float]]:
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.replace(" ", "").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or not (parts[2] > parts[0] and parts[3] > parts[1]):
        raise click.BadParameter(f"{value!r}: expected x0,y0,x1,y1 in photo pixels with x1 > x0 and y1 > y0",
                                 ctx=ctx, param=param)
    return tuple(parts)


def _parse_init(ctx, param, value: str) -> str:
    from ..projector import ProjectionConfig  # the command modules import the work lazily: fast --help

    try:
        ProjectionConfig(steps=1, init=value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


W_PRIOR_OPTION = click.option(
    "--w-prior", "w_prior", type=click.FloatRange(min=0), default=None, metavar="FLOAT",
    help="Pull of every layer's w toward its start, the average face (0: plain W+). Keeps the unseen lower face "
         "a face [default: the network's recommendation, else 0].")


def projection_options(f):
    """Options shared by ``project`` and ``batch``."""
    options = [
        click.option("--network", default=DEFAULT_NETWORK, show_default=True, metavar="NAME|URL|PATH",
                     help="Generator: registry name, URL, NVIDIA .pkl or rosinality .pt."),
        click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
                     help="Optimisation steps (300 already gives a usable result)."),
        click.option("--lambda", "lambda_perceptual", type=click.FloatRange(min=0), default=0.8, show_default=True,
                     help="Weight of the VGG16 perceptual term against the pixel MSE."),
        W_PRIOR_OPTION,
        click.option("--init", default="avg", show_default=True, callback=_parse_init, metavar="avg|random|best-of-N",
                     help="Starting latent: the average face, a seeded random face, or the best of N random faces."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw."),
        click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
        click.option("--aligned", is_flag=True,
                     help="Input is already an FFHQ-aligned face: no detection or alignment."),
        click.option("--backend", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto",
                     show_default=True, help="68-point landmark model."),
        click.option("--region", type=click.Choice(["segment", "landmarks"]), default="segment", show_default=True,
                     help="The hidden region: the face mask segmented by the shipped network, or the polygon "
                          "from the 68 landmarks (--mask FILE wins over both)."),
        click.option("--margin", type=click.FloatRange(min=0), default=None,
                     help="With --region landmarks: how far the region reaches beyond the jaw line, in "
                          "inter-ocular distances [default: 0.25]."),
        click.option("--optimize-noise", is_flag=True,
                     help="Also optimise the per-layer noise maps (sharper, but latent-only re-rendering differs)."),
        click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
                     show_default=True, help="Noise maps used when they are not optimised."),
        click.option("--schedule", type=click.Choice(["fast", "official"]), default="fast", show_default=True,
                     help="'fast': NVIDIA's schedule and loss computed faster (same function: non-fused "
                          "modulation, one-node layer tails on a CPU); 'official': NVIDIA's projection as is."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True,
                     help="'auto': bf16 on CPUs with native bf16 for networks of 256 px and more, fp16 blocks "
                          "on CUDA, else fp32. --schedule official --precision fp32 is the exact reference "
                          "procedure."),
        click.option("--compile", "compile_mode", type=click.Choice(["auto", "on", "off"]), default="auto",
                     show_default=True,
                     help="Run the fast schedule's step through torch.compile (same function, fused loops; "
                          "needs a C++ compiler, compiles once, falls back with a warning). 'auto': on a CPU "
                          "for networks of 256 px and more."),
        click.option("--save-video", is_flag=True, help="Also write projection.mp4 (GIF without ffmpeg)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _projection_config(steps, lambda_perceptual, init, seed, optimize_noise, noise_mode, schedule, precision,
                       compile_mode, w_prior=None):
    """The ``projection_options`` flags as a ProjectionConfig."""
    from ..projector import projection_config

    return projection_config(steps=steps, lambda_perceptual=lambda_perceptual, init=init, seed=seed,
                             optimize_noise=optimize_noise, noise_mode=noise_mode, schedule=schedule,
                             precision=precision, compile=compile_mode, w_prior=w_prior)


@click.command("project")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: out/<photo name>).")
@projection_options
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own mask PNG (255 = hidden), the photo's size (with --aligned: the aligned face's size).")
@click.option("--landmarks", "landmarks_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="68x2 landmarks (.npy/.json/.txt, photo pixels) instead of detecting them.")
@click.option("--box", callback=_parse_box, default=None, metavar="x0,y0,x1,y1",
              help="Face box in photo pixels instead of detecting one.")
@click.option("--face-index", type=click.IntRange(min=0), default=None,
              help="Which detected face to use (default: the largest).")
@click.option("--video-every", type=click.IntRange(min=1), default=None,
              help="With --save-video: capture a frame every N steps (default: 100 frames per run).")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="N completions: one projection forks halfway into N, optimised as one batch: "
                   "unmasked_K.png each, completions.png, "
                   "completions.json (ranked by visible-region loss); unmasked.png is the best.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def project_command(photo: Path, outdir: Optional[Path], network: str, steps: int, lambda_perceptual: float,
                    w_prior: Optional[float], init: str, seed: int, device: str, aligned: bool, backend: str,
                    region: str, margin: Optional[float], optimize_noise: bool, noise_mode: str, save_video: bool,
                    mask_path: Optional[Path], landmarks_path: Optional[Path], box, face_index: Optional[int],
                    video_every: Optional[int],
                    samples: int, quiet: bool, schedule: str = "fast", precision: str = "auto", compile_mode: str = "auto"):
    """Show the face beneath the mask in PHOTO.

    \b
    Writes to OUTDIR: unmasked.png (the photo, original size), aligned.png,
    mask.png, projection.png, comparison.png, projected_w.npz [, projection.mp4]
    [, with --samples N: unmasked_1..N.png, completions.png, completions.json].

    \b
    Examples:
      stylegan-unmask project face.jpg --steps 1000
      stylegan-unmask project face.jpg --mask mymask.png --outdir out/face
      stylegan-unmask project face.jpg --samples 4
      stylegan-unmask project aligned.png --aligned --network ffhq-1024
    """
    from ..face.frontend import FaceOptions
    from ..images import ensure_not_input, load_image
    from ..pipeline import OUTPUT_FILES, save_outputs, unmask

    original = load_image(photo)  # a bad photo fails before the network is loaded
    outdir = outdir if outdir is not None else Path("out") / photo.stem
    for name in (*OUTPUT_FILES, "projection.mp4", "projection.gif"):  # fail now, not after the projection
        ensure_not_input(outdir / name, [photo, mask_path, landmarks_path])
    config = _projection_config(steps, lambda_perceptual, init, seed, optimize_noise, noise_mode, schedule,
                                precision, compile_mode, w_prior)
    face = FaceOptions(aligned=aligned, mask=mask_path, landmarks=landmarks_path, box=box, face_index=face_index,
                       backend=backend, margin=margin, region=region)
    if samples > 1 and save_video:
        raise click.UsageError("--save-video records one projection: leave out --samples or --save-video")
    result = unmask(original, config, face, network=network, device=device, progress=not quiet,
                    record_video=save_video, video_every=video_every, samples=samples)
    written = save_outputs(result, outdir, protect=[photo, mask_path, landmarks_path])
    click.echo(f"wrote {len(written)} files to {outdir}/: " + ", ".join(p.name for p in written.values()))
    proj = result.projection
    click.echo(f"final loss {proj.final_loss:.4f} (mse {proj.final_mse:.4f}, perceptual {proj.final_perceptual:.4f}), "
               f"PSNR outside the mask {proj.psnr:.2f} dB, {proj.steps_run} steps in "
               f"{result.timings.get('projection', 0.0):.1f} s on {result.settings.get('device')}")


@click.command("batch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: one sub-folder per photo, summary.csv, index.html.")
@projection_options
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Photos optimised together in one projector call [default: 4 on a GPU, 1 on a CPU].")
@click.option("--recursive", "-r", is_flag=True, help="Also look in sub-folders.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="N completions per photo (see `project --samples`); index.html shows their grid.")
@click.option("--shard", default=None, metavar="i/n",
              help="Process only share i of n (sorted files i::n); under torchrun RANK/WORLD_SIZE are used.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def batch_command(folder: Path, outdir: Path, network: str, steps: int, lambda_perceptual: float,
                  w_prior: Optional[float], init: str,
                  seed: int, device: str, aligned: bool, backend: str, region: str, margin: Optional[float],
                  optimize_noise: bool, noise_mode: str, save_video: bool, batch_size: Optional[int], recursive: bool,
                  samples: int,
                  shard: Optional[str], quiet: bool, schedule: str = "fast", precision: str = "auto",
                  compile_mode: str = "auto"):
    """Unmask every photo in FOLDER. Resumable: rerun the same command to finish an interrupted run.

    \b
    Examples:
      stylegan-unmask batch photos/ --outdir results/ --steps 500
      torchrun --standalone --nproc_per_node 4 -m stylegan_unmask batch photos/ --outdir results/
    """
    from ..face.frontend import FaceOptions
    from ..runs.batch import run_batch

    config = _projection_config(steps, lambda_perceptual, init, seed, optimize_noise, noise_mode, schedule,
                                precision, compile_mode, w_prior)
    face = FaceOptions(aligned=aligned, backend=backend, margin=margin, region=region)
    summary = run_batch(folder, outdir, config, face,
                        network=network, device=None if device == "auto" else device, batch_size=batch_size,
                        recursive=recursive, save_video=save_video, shard=shard, progress=not quiet,
                        samples=samples)
    c = summary.counts
    where = f"shard {summary.rank}/{summary.world_size}: " if summary.world_size > 1 else ""
    click.echo(f"{where}{c.get('ok', 0)} unmasked, {c.get('skipped', 0)} already done, {c.get('failed', 0)} failed")
    if summary.summary_csv is not None:
        click.echo(f"summary: {summary.summary_csv}  index: {summary.index_html}")
    elif summary.world_size > 1:
        click.echo(f"the last shard to finish writes {outdir / 'summary.csv'} and {outdir / 'index.html'}")
