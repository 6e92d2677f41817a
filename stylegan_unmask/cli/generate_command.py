"""``stylegan-unmask generate``: render seeds or saved W+ latents, like NVIDIA's gen_images.py.

A quick way to check that a checkpoint loads and produces faces before
spending minutes on a projection.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click


def _parse_seeds_option(ctx, param, value):
    if value is None:
        return None
    from ..networks.generate import parse_seeds

    try:
        return parse_seeds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command("generate")
@click.option("--network", "network", required=True, metavar="PKL|PT|NAME",
              help="Checkpoint: registry name (e.g. ffhq-1024), URL, NVIDIA .pkl or rosinality .pt.")
@click.option("--seeds", callback=_parse_seeds_option, metavar="LIST",
              help="Seeds to render, e.g. '0-3', '1,5,7' or '0-3,10'.")
@click.option("--ws", "ws_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.npz",
              help="Render saved W+ latents instead of seeds (.npz with key 'w', 'w_plus' or 'ws').")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi (seeds only).")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (seeds only; default: all).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Per-pixel noise: stored maps, fresh draws (seeded per seed) or none.")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class label, only for conditional networks (c_dim > 0).")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to save the PNGs (created if missing).")
@click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
@click.option("--force-fp32", is_flag=True, help="Disable float16 blocks on CUDA.")
def generate_command(network: str, seeds, ws_file: Optional[Path], truncation_psi: float,
                     truncation_cutoff: Optional[int], noise_mode: str, class_idx: Optional[int], outdir: Path,
                     device: str, force_fp32: bool):
    """Render images from a generator: seedNNNN.png per seed, or projNN.png per saved W+.

    \b
    Examples:
      stylegan-unmask generate --network ffhq-1024 --seeds 0-3 --trunc 0.7 --outdir out
      stylegan-unmask generate --network ffhq-1024 --ws projected_w.npz --outdir out
    """
    if (seeds is None) == (ws_file is None):
        raise click.UsageError("give exactly one of --seeds or --ws")
    if ws_file is not None and (truncation_psi != 1 or truncation_cutoff is not None or class_idx is not None):
        raise click.UsageError("--trunc, --trunc-cutoff and --class apply to --seeds only, not to --ws")

    from tqdm import tqdm

    from ..checkpoints import load_generator
    from ..networks.generate import class_vector, iter_seed_images, load_ws, proj_filename, render_ws, seed_filename
    from ..images import save_image
    from ..runtime.device import resolve_device

    dev = resolve_device(device)
    ws = None
    if ws_file is not None:
        ws = load_ws(ws_file)  # fail on a bad file before spending time on the network
    G = load_generator(network, device=dev)
    protect = [p for p in (Path(network), ws_file) if p is not None and p.exists()]

    if ws is not None:
        ws = load_ws(ws_file, num_ws=G.num_ws, w_dim=G.w_dim)
        outdir.mkdir(parents=True, exist_ok=True)
        for idx in tqdm(range(len(ws)), desc="rendering W+", unit="img"):
            img = render_ws(G, ws[idx:idx + 1], noise_mode=noise_mode, force_fp32=force_fp32)[0]
            save_image(outdir / proj_filename(idx), img, protect=protect)
        click.echo(f"wrote {len(ws)} image(s) to {outdir}")
        return

    class_vector(G, class_idx)  # validate the label before the loop
    outdir.mkdir(parents=True, exist_ok=True)
    images = iter_seed_images(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              noise_mode=noise_mode, class_idx=class_idx, force_fp32=force_fp32)
    for seed, img in tqdm(images, total=len(seeds), desc="rendering seeds", unit="img"):
        save_image(outdir / seed_filename(seed), img, protect=protect)
    click.echo(f"wrote {len(seeds)} image(s) to {outdir}")
