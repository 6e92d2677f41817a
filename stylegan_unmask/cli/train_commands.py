"""``dataset``, ``train`` and ``metrics``: making our own face StyleGAN2.

Thin wrappers over :mod:`stylegan_unmask.training`; option names follow
NVIDIA's dataset_tool.py / train.py / calc_metrics.py where they overlap
(``--data``, ``--outdir``, ``--resume``, ``--network``, ``--batch``, ``--kimg``,
``--glr``, ``--dlr``, ``--gamma``, ``--mirror``, ``--seed``).
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command("dataset")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--resolution", type=click.IntRange(16, 1024), required=True,
              help="Output size in pixels (a power of two: the network's resolution).")
@click.option("--crop-scale", type=click.FloatRange(0.3, 2.0), default=1.0, show_default=True,
              help="Zoom of the FFHQ crop square (1.0 = FFHQ exactly; 0.8 suits UTKFace's tight crops). "
                   "Recorded in dataset.json and in every network trained on it.")
@click.option("--mirror", is_flag=True, help="Also write a horizontally mirrored copy of every face.")
@click.option("--detector", type=click.Choice(["fast", "auto", "centerface", "dlib-hog"]), default="fast",
              show_default=True, help="Face detector ('fast': dlib HOG, then CenterFace where it finds nothing).")
@click.option("--min-face", type=click.IntRange(min=1), default=None,
              help="Skip faces whose crop square is smaller than this many photo pixels  [default: resolution/2]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N photos.")
def dataset_command(src, out, resolution, crop_scale, mirror, detector, min_face, workers, limit):
    """Align every face photo under SRC into a training set OUT (folder or .zip, NVIDIA's layout).

    Photos without a face, unreadable files, duplicates and tiny faces are
    skipped and listed in OUT/report.csv. Rerunning the command resumes.
    """
    from ..training.dataset_tool import DatasetOptions, prepare_dataset

    if resolution & (resolution - 1):
        raise click.BadParameter(f"{resolution} is not a power of two", param_hint="--resolution")
    report = prepare_dataset(src, out, DatasetOptions(resolution=resolution, crop_scale=crop_scale, mirror=mirror,
                                                      detector=detector, min_face=min_face),
                             workers=workers, limit=limit)
    click.echo(report.summary())
    click.echo(f"skipped photos and reasons: {out.with_name(out.name + '.partial') if out.suffix == '.zip' else out}"
               f"/report.csv")


@click.command("train")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Training set made by `stylegan-unmask dataset` (folder or zip).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where run folders (00000-name/) are created.")
@click.option("--resume", default=None, metavar="latest|RUN|STATE",
              help="Continue a run: 'latest' (newest run in --outdir), a run folder or its training-state.pt.")
@click.option("--kimg", type=click.FloatRange(min=0.001), default=200.0, show_default=True,
              help="Train until this many thousand real images have been shown.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Total batch size.")
@click.option("--glr", type=float, default=0.002, show_default=True, help="G learning rate.")
@click.option("--dlr", type=float, default=0.002, show_default=True, help="D learning rate.")
@click.option("--gamma", "r1_gamma", type=float, default=0.0, show_default=True,
              help="R1 weight (0 = off, as Projected GAN).")
@click.option("--cbase", "channel_base", type=int, default=4096, show_default=True, help="Generator capacity.")
@click.option("--cmax", "channel_max", type=int, default=192, show_default=True, help="Max channels per layer.")
@click.option("--map", "map_layers", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Mapping network depth.")
@click.option("--z-dim", type=click.IntRange(min=1), default=512, show_default=True, help="z dimension.")
@click.option("--w-dim", type=click.IntRange(min=1), default=None,
              help="w dimension [default: --z-dim; Projected GAN's StyleGAN2 uses z 64, w 128].")
@click.option("--mixing", "style_mixing", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Style-mixing probability.")
@click.option("--aug", "augment", default="color,translation,cutout", show_default=True,
              help="DiffAugment policy (comma list; '' = none).")
@click.option("--mirror/--no-mirror", default=True, show_default=True, help="Random x-flips of the real images.")
@click.option("--backbone", type=click.Choice(["lite0", "vgg16"]), default="lite0", show_default=True,
              help="D's frozen feature network (EfficientNet-lite0, as Projected GAN; or VGG16).")
@click.option("--d-input", type=click.IntRange(min=128), default=128, show_default=True,
              help="Images are resized to this size before D's feature network (the paper: 224).")
@click.option("--separable/--no-separable", "separable_heads", default=True, show_default=True,
              help="Separable-conv D heads (the weaker heads Projected GAN uses with a StyleGAN2 G).")
@click.option("--blur", "blur_sigma", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Blur D's input with this sigma (px) at the start ...")
@click.option("--blur-kimg", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="... fading to none over this many kimg (0 = no blur).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "mixed", "bf16", "fp16"]), default="auto",
              show_default=True,
              help="Autocast: mixed = G in bf16 (CPU) / fp16 (CUDA), D in fp32; auto = fp16 on CUDA, mixed on "
                   "CPUs with native bf16, else fp32 (bf16 hits slow grouped-conv kernels in D).")
@click.option("--snap-minutes", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Write a snapshot this often (and on Ctrl-C / SIGTERM).")
@click.option("--metrics-samples", type=click.IntRange(min=0), default=256, show_default=True,
              help="Samples for the FD/KID/face-share line at each snapshot (0 = off).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
@click.option("--desc", default="", help="Run-folder name suffix.")
def train_command(data, outdir, resume, kimg, batch, glr, dlr, r1_gamma, channel_base, channel_max, map_layers,
                  z_dim, w_dim, style_mixing, augment, mirror, backbone, d_input, separable_heads, blur_sigma, blur_kimg,
                  seed, device, precision, snap_minutes, metrics_samples, threads, desc):
    """Train our StyleGAN2 generator on aligned faces (CPU or CUDA; torchrun for several GPUs).

    \b
    Example:
      stylegan-unmask dataset faces/ data/faces-128 --resolution 128 --crop-scale 0.8
      stylegan-unmask train --data data/faces-128 --outdir runs
      stylegan-unmask train --data data/faces-128 --outdir runs --resume latest
    """
    import torch

    from ..training.loop import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(data=str(data), outdir=str(outdir), kimg=kimg, batch=batch, glr=glr, dlr=dlr, r1_gamma=r1_gamma,
                      channel_base=channel_base, channel_max=channel_max, map_layers=map_layers, z_dim=z_dim,
                      w_dim=w_dim or z_dim, style_mixing=style_mixing, augment=augment, mirror=mirror, backbone=backbone,
                      d_input=d_input, separable_heads=separable_heads, blur_sigma=blur_sigma, blur_kimg=blur_kimg,
                      seed=seed,
                      device=device, precision=precision, snap_minutes=snap_minutes,
                      metrics_samples=metrics_samples, desc=desc)
    last = train(cfg, resume=resume)
    if last is not None:
        click.echo(f"last snapshot: {last}")


def _psi_list(ctx, param, value: str):
    try:
        psis = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give one psi or a comma-separated list, e.g. 0.5,0.7,1.0")
    if not psis:
        raise click.BadParameter("give at least one psi")
    return psis


@click.command("metrics")
@click.option("--network", required=True, metavar="NAME|PT|PKL", help="Generator to score.")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Held-out real faces prepared like the training set (`stylegan-unmask dataset`).")
@click.option("--samples", type=click.IntRange(min=10), default=2000, show_default=True)
@click.option("--trunc", "psis", default="1.0", show_default=True, callback=_psi_list,
              help="Truncation psi, or a comma-separated list for a truncation curve (e.g. 0.5,0.7,0.85,1.0).")
@click.option("--face-samples", type=click.IntRange(min=1), default=500, show_default=True,
              help="Samples (and real faces) checked by the face detector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures to this JSON file (a list with several psi).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With several psi: draw the truncation curve to this PNG.")
def metrics_command(network, data, samples, psis, face_samples, seed, device, json_path, plot_path):
    """FD/KID, precision/recall (VGG16 features), variety (LPIPS) and the face share, against real faces.

    No Inception-v3 weights can be had offline, so FD/KID use the shipped
    VGG16 (pooled conv5_3): comparable between our networks, not with
    published FIDs.
    """
    import json

    from ..atomic import atomic_write_text
    from ..checkpoints import load_generator
    from ..runtime.device import resolve_device
    from ..training.dataset import load_dataset
    from ..training.metrics import truncation_curve

    if plot_path is not None and len(psis) < 2:
        raise click.UsageError("--plot draws a truncation curve: give several psi, e.g. --trunc 0.5,0.7,1.0")
    dev = resolve_device(device)
    G = load_generator(network, device=dev)
    ds = load_dataset(data)
    if ds.resolution != G.img_resolution:
        raise click.UsageError(f"{data} holds {ds.resolution} px faces but the network makes {G.img_resolution} px")
    rs = truncation_curve(G, ds, psis, samples=min(samples, len(ds)), device=dev, seed=seed,
                          face_samples=face_samples, network=G.source)
    click.echo("\n\n".join(_metrics_text(r) for r in rs))
    if json_path is not None:
        figures = [r.as_dict() for r in rs]
        atomic_write_text(json_path, json.dumps(figures[0] if len(rs) == 1 else figures, indent=2))
    if plot_path is not None:
        from ..training.report import plot_truncation_curve

        click.echo(f"truncation curve -> {plot_truncation_curve(rs, plot_path, title=G.source)}")


def _metrics_text(r) -> str:
    return (f"network      {r.network}\ndata         {r.data} ({r.reals} real faces, {r.samples} samples, "
            f"psi {r.truncation_psi})\nFD (VGG16)   {r.fd_vgg:.3f}\nKID (VGG16)  {r.kid_vgg:.5f}\n"
            f"precision    {r.precision:.3f}\nrecall       {r.recall:.3f}   (k = 3, VGG16 features)\n"
            f"variety      {r.variety:.3f}   (pairwise LPIPS {r.lpips_samples:.3f} among samples, "
            f"{r.lpips_reals:.3f} among real faces)\n"
            f"faces found  {r.face_share:.1%} of samples, {r.real_face_share:.1%} of real faces")


@click.command("export")
@click.argument("snapshot", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fp32", is_flag=True, help="Keep fp32 weights (default: fp16 storage, half the size).")
@click.option("--w-prior", type=click.FloatRange(min=0), default=None,
              help="Record the projection's latent prior this network needs (the default of `project --w-prior` "
                   "for it).")
def export_command(snapshot, out, fp32, w_prior):
    """Write SNAPSHOT's G_ema (a network snapshot or training-state.pt) as a small network file OUT."""
    from ..images import ensure_not_input
    from ..checkpoints.ours import export_network

    ensure_not_input(out, [snapshot])
    path = export_network(snapshot, out, half=not fp32, w_prior=w_prior)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@click.command("train-segmenter")
@click.option("--faces", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training faces (UTKFace crops: ../shared/data/train/utkface). Never evaluation faces.")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the landmark cache and the drawn samples are kept (reused when present).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Decoder weights to write (stylegan_unmask/models/segmenter.pt ships with the package).")
@click.option("--faces-used", type=click.IntRange(min=10), default=9000, show_default=True,
              help="Random faces whose landmarks are found (one mask each).")
@click.option("--samples", type=click.IntRange(min=10), default=8000, show_default=True,
              help="Samples drawn (the last --val are held out).")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate (one-cycle).")
@click.option("--val", type=click.IntRange(min=1), default=600, show_default=True, help="Held-out samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch/OpenCV threads.")
def train_segmenter_command(faces, workdir, out, faces_used, samples, epochs, batch, lr, val, seed, threads):
    """Train the face-mask segmenter: landmarks of UTKFace faces -> random masks drawn on them -> decoder.

    Reproduces the shipped model with the defaults (docs/masks.md gives the time and figures).
    """
    import cv2
    import torch

    from ..training.segmenter import SegmenterTrainConfig, train_segmenter
    from ..training.segmenter_data import build_dataset, cache_landmarks

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    workdir.mkdir(parents=True, exist_ok=True)
    lm = workdir / "utk_landmarks.npz"
    if not lm.is_file():
        cache_landmarks(faces, lm, limit=faces_used, seed=seed)
    data = workdir / f"seg_train_{samples}_seed{seed}.npz"
    if not data.is_file():
        build_dataset(lm, data, samples, seed=seed)
    path = train_segmenter(data, out, SegmenterTrainConfig(epochs=epochs, batch=batch, lr=lr, val=val, seed=seed,
                                                           threads=threads), log=click.echo)
    click.echo(f"segmenter decoder -> {path} ({path.stat().st_size / 2 ** 20:.2f} MB)")
