"""Seconds per projector step (masked W+ projection, default loss: MSE + 0.8 * VGG16 conv2_2).

Cases:
  * the 64 px fixture network (../shared/fixtures/nvidia-ada-64.pkl) on the CPU;
  * the FFHQ-1024 config (z/w 512, channel_base 32768, channel_max 512,
    num_fp16_res 4, conv_clamp 256) with random weights - speed does not depend on
    the weight values - on --device (default: CUDA when available, else CPU).

Each case times ``project(steps=K)`` and ``project(steps=0)`` with everything that
is built once per run (VGG16, w statistics, target features, the initial latent,
the final render) shared, and reports (t_K - t_0) / K: the cost of one
optimisation step (render, masked loss, backward, Adam, bookkeeping).

    python benchmarks/bench_projector.py                       # defaults
    python benchmarks/bench_projector.py --device cuda --steps-1024 50
    python benchmarks/bench_projector.py --skip-1024 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

FFHQ_1024 = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=1024, img_channels=3,
                 mapping_kwargs=dict(num_layers=8),
                 synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))
DEFAULT_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "nvidia-ada-64.pkl"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lower_face_mask(n: int, R: int, device) -> torch.Tensor:
    mask = torch.zeros([n, 1, R, R], dtype=torch.bool, device=device)
    mask[:, :, int(0.6 * R):, int(0.2 * R):int(0.8 * R)] = True
    return mask


def time_steps(G, device: torch.device, batch: int, steps: int, features, optimize_noise: bool) -> Dict:
    from stylegan_unmask.projector import ProjectionConfig, project, w_statistics

    R = G.img_resolution
    with torch.no_grad():
        z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
        target = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    mask = _lower_face_mask(batch, R, device)
    w_statistics(G, 10000, device)                      # cached for every run below

    def run(k: int) -> float:
        config = ProjectionConfig(steps=k, optimize_noise=optimize_noise)
        _sync(device)
        start = time.perf_counter()
        project(G, target, mask, config, device=device, progress=False, features=features)
        _sync(device)
        return time.perf_counter() - start

    run(1)                                              # warm-up (allocator, kernels, plugin builds)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = min(run(0), run(0))
    tk = run(steps)
    row = dict(batch=batch, steps=steps, noise="optimized" if optimize_noise else "const",
               seconds_per_step=(tk - t0) / steps, setup_seconds=t0)
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="device for the 1024 case: auto | cpu | cuda | cuda:N")
    parser.add_argument("--network", default=str(DEFAULT_FIXTURE), help="the 64 px fixture pickle")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable; default 1 and 4)")
    parser.add_argument("--steps-64", type=int, default=50, help="timed steps for the fixture (default 50)")
    parser.add_argument("--steps-1024", type=int, default=None, help="timed steps for 1024 px (default: 3 on CPU, 50 on CUDA)")
    parser.add_argument("--optimize-noise", action="store_true", help="also optimise the noise maps")
    parser.add_argument("--skip-64", action="store_true")
    parser.add_argument("--skip-1024", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    batches: List[int] = args.batch or [1, 4]
    from stylegan_unmask.perceptual import VGG16Features

    features = VGG16Features(("conv2_2",))
    rows = []
    if not args.skip_64:
        from stylegan_unmask.checkpoints import load_generator

        G = load_generator(args.network, device="cpu")
        for batch in batches:
            row = time_steps(G, torch.device("cpu"), batch, args.steps_64, features, args.optimize_noise)
            rows.append(dict(case="fixture 64 px", device="cpu", **row))
            print(rows[-1], flush=True)
    if not args.skip_1024:
        from stylegan_unmask.networks.stylegan2 import Generator

        torch.manual_seed(0)
        G = Generator(**FFHQ_1024).eval().requires_grad_(False).to(device)
        steps = args.steps_1024 or (50 if device.type == "cuda" else 3)
        features_dev = features.to(device)
        for batch in batches:
            row = time_steps(G, device, batch, steps, features_dev, args.optimize_noise)
            rows.append(dict(case="FFHQ-1024 config (random weights)", device=str(device), **row))
            print(rows[-1], flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nprojector step time (torch {torch.__version__}; 1024 case on {name})\n")
    header = f"{'case':<36} {'device':<8} {'batch':>5} {'noise':>9} {'s/step':>9} {'s/step/img':>10} {'setup s':>8}"
    print(header + ("  peak GiB" if any("peak_mem_gib" in r for r in rows) else ""))
    print("-" * len(header))
    for r in rows:
        line = (f"{r['case']:<36} {r['device']:<8} {r['batch']:>5} {r['noise']:>9} {r['seconds_per_step']:>9.4f} "
                f"{r['seconds_per_step'] / r['batch']:>10.4f} {r['setup_seconds']:>8.2f}")
        if "peak_mem_gib" in r:
            line += f"  {r['peak_mem_gib']:>8.2f}"
        print(line)


if __name__ == "__main__":
    main()
