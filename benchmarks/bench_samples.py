"""What ``--samples K`` buys and costs, measured on one photo side by side.

In one run: a single projection (seed 0) and its rerun with another seed (the
run-to-run noise of one start), then K samples optimised as one batch for each
``--fork`` share (0: K independent starts; default: the config's). Prints the
cost of each (wall and CPU time), every sample's visible-region loss, and the
pairwise LPIPS between samples *inside the mask* (each image composited over
the other outside the mask, our LPIPS-VGG on a crop around the mask), against
the same figure for the two single runs.

    python benchmarks/bench_samples.py ../shared/data/dev/masked_real/<photo>.jpg --samples 4 --steps 300 --fork 0 --fork 0.5
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import torch  # noqa: E402


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def lpips_inside(scorer, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """LPIPS of a against b where only the masked pixels differ."""
    return scorer([a], b, mask)[0]


def visible_mse(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray) -> float:
    """Mean squared difference over the visible pixels ([-1, 1] images), as the loss's mse term."""
    visible = torch.from_numpy(~mask)
    return float((a - b).square()[:, visible].mean())


def main(argv=None) -> None:
    from stylegan_unmask.checkpoints import DEFAULT_NETWORK, load_generator
    from stylegan_unmask.evaluation.metrics import LPIPSScorer
    from stylegan_unmask.face.frontend import FaceOptions, prepare_face
    from stylegan_unmask.pipeline.network import network_crop_scale
    from stylegan_unmask.projector import ProjectionConfig, project

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", type=Path)
    ap.add_argument("--network", default=DEFAULT_NETWORK)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fork", type=float, action="append", default=None,
                    help="sample_fork shares to run the batch of samples with (repeat; default: the config's)")
    ap.add_argument("--spread", type=float, default=0.0, help="sample_spread weight of the batches")
    ap.add_argument("--save", type=Path, default=None, help="write each batch's completions side by side here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_generator(args.network)
    face = prepare_face(args.photo, G.img_resolution, FaceOptions(), crop_scale=network_crop_scale(G))
    target = torch.from_numpy(np.array(face.target)).permute(2, 0, 1).float()[None] / 127.5 - 1
    hidden = torch.from_numpy(face.hidden)[None, None]
    cfg = ProjectionConfig(steps=args.steps)
    single, w1, c1 = timed(lambda: project(G, target, hidden, cfg, progress=False)[0])
    rerun, _, _ = timed(lambda: project(G, target, hidden, ProjectionConfig(steps=args.steps, seed=1),
                                        progress=False)[0])
    scorer, mask = LPIPSScorer(), face.hidden
    noise = lpips_inside(scorer, to_uint8(single.image), to_uint8(rerun.image), mask)
    print(f"\n{args.photo.name}, network {getattr(G, 'source', args.network)}, "
          f"{args.steps} steps, {torch.get_num_threads()} threads\n")
    print("| run | wall s | CPU s | visible loss | in-mask LPIPS between samples (mean, min-max) "
          "| visible MSE between samples (mean) |\n|---|---:|---:|---|---|---:|")
    print(f"| single (seed 0) | {w1:.1f} | {c1:.1f} | {single.final_loss:.4f} | "
          f"| {single.final_mse:.4f} (to the photo) |")
    print(f"| single (seed 1) | | | {rerun.final_loss:.4f} | {noise:.4f} (against seed 0: run-to-run noise) "
          f"| {visible_mse(single.image, rerun.image, mask):.4f} |")
    for fork in args.fork or [cfg.sample_fork]:
        config = ProjectionConfig(steps=args.steps, sample_spread=args.spread, sample_fork=fork)
        many, wk, ck = timed(lambda: project(G, target, hidden, config, progress=False, samples=args.samples))
        imgs = [to_uint8(r.image) for r in many]
        pair = [lpips_inside(scorer, a, b, mask) for a, b in itertools.combinations(imgs, 2)]
        outside = [visible_mse(a.image, b.image, mask) for a, b in itertools.combinations(many, 2)]
        print(f"| {args.samples} samples, one batch, fork at {fork:g} | {wk:.1f} | {ck:.1f} | "
              f"{', '.join(f'{r.final_loss:.4f}' for r in many)} | "
              f"{statistics.mean(pair):.4f} ({min(pair):.4f}-{max(pair):.4f}) | {statistics.mean(outside):.4f} |")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            strip = np.hstack([np.array(face.target)] + imgs)
            Image.fromarray(strip).save(args.save / f"{args.photo.stem}_fork{fork:g}.png")
        print(f"|   cost: {wk / w1:.2f}x wall, {ck / c1:.2f}x CPU of one projection | | | | | |")


if __name__ == "__main__":
    main()
