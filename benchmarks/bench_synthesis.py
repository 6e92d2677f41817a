"""Time StyleGAN2 synthesis (forward, and forward+backward as the projector runs it).

Network: the FFHQ-1024 config (z/w 512, channel_base 32768, channel_max 512,
num_fp16_res 4, conv_clamp 256) with random weights - speed does not depend on
the weight values. Each case: warm-up iterations, then the median of N timed
ones. "forward" is inference (no autograd, fused modulated conv); "fwd+bwd"
renders W+ and back-propagates an image loss to W+ like one projector step
(network weights frozen); "fwd+bwd-unfused" does the same with
fused_modconv=False.

The custom CUDA ops are compared with the reference PyTorch ops by running each
variant in a child process with STYLEGAN_UNMASK_OPS set (the op modules pick
their implementation once). On CPU only the reference ops exist.

    python benchmarks/bench_synthesis.py                      # this machine, defaults
    python benchmarks/bench_synthesis.py --device cuda --ops both --iters 20
    python benchmarks/bench_synthesis.py --resolution 256 --batch 1 --batch 8
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from stylegan_unmask.networks import FFHQ_1024_KWARGS  # noqa: E402

FFHQ_1024 = {k: v for k, v in FFHQ_1024_KWARGS.items() if k != "img_resolution"}  # every resolution, FFHQ's widths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_cases(device: torch.device, resolution: int, batches: List[int], warmup: int, iters: int,
              modes: List[str]) -> List[Dict]:
    from stylegan_unmask.networks.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(img_resolution=resolution, **FFHQ_1024).eval().requires_grad_(False).to(device)
    rows = []
    for batch in batches:
        ws = G.mapping(torch.randn([batch, G.z_dim], device=device))
        if "forward" in modes:
            def forward():
                with torch.no_grad():
                    G.synthesis(ws, noise_mode="const")
            rows.append(dict(batch=batch, mode="forward", seconds=_median_seconds(forward, device, warmup, iters)))
        for mode in ("fwd+bwd", "fwd+bwd-unfused"):
            if mode not in modes:
                continue
            w_opt = ws.detach().clone().requires_grad_(True)
            fused = None if mode == "fwd+bwd" else False  # None = the network's default (fused in eval)

            def forward_backward():
                img = G.synthesis(w_opt, noise_mode="const", fused_modconv=fused)
                img.square().mean().backward()
                w_opt.grad = None
            rows.append(dict(batch=batch, mode=mode,
                             seconds=_median_seconds(forward_backward, device, warmup, iters)))
    return rows


def plugin_states() -> Dict[str, str]:
    """Which implementation the custom ops actually used ('ok' = fused CUDA kernel)."""
    from torch_utils.ops import bias_act, upfirdn2d

    return {op.__name__.rsplit(".", 1)[-1]: op.plugin_status(load=False) for op in (bias_act, upfirdn2d)}


def _child(args) -> None:
    device = torch.device(args.device)
    rows = run_cases(device, args.resolution, args.batch, args.warmup, args.iters, args.modes)
    print("BENCH_JSON " + json.dumps({"rows": rows, "plugins": plugin_states()}), flush=True)


def _run_variant(args, ops: str) -> Dict:
    env = dict(os.environ)
    if ops == "ref":
        env["STYLEGAN_UNMASK_OPS"] = "ref"
    else:
        env.pop("STYLEGAN_UNMASK_OPS", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--device", args.device,
           "--resolution", str(args.resolution), "--warmup", str(args.warmup), "--iters", str(args.iters),
           "--threads", str(args.threads)]
    for b in args.batch:
        cmd += ["--batch", str(b)]
    for m in args.modes:
        cmd += ["--modes", m]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"benchmark child ({ops} ops) failed with exit code {proc.returncode}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON "))
    return json.loads(line[len("BENCH_JSON "):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1 and 4)")
    parser.add_argument("--modes", action="append", choices=["forward", "fwd+bwd", "fwd+bwd-unfused"],
                        help="what to time (repeatable; default forward and fwd+bwd). fwd+bwd uses the "
                             "eval default (fused modulated conv, as the official code); fwd+bwd-unfused "
                             "passes fused_modconv=False, which skips the per-sample weight gradient")
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 5 on CUDA")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations; default: 2 on CPU, 20 on CUDA")
    parser.add_argument("--ops", choices=["both", "ref", "plugin", "current"], default=None,
                        help="both = CUDA plugin vs reference ops (default on CUDA); current = this process's "
                             "STYLEGAN_UNMASK_OPS (default on CPU, where only the reference ops exist)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = torch.device(args.device).type == "cuda"
    args.batch = args.batch or [1, 4]
    args.modes = args.modes or ["forward", "fwd+bwd"]
    args.warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    args.iters = args.iters if args.iters is not None else (20 if on_cuda else 2)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        _child(args)
        return
    ops = args.ops or ("both" if on_cuda else "current")
    if ops in ("both", "plugin") and not on_cuda:
        raise SystemExit("the CUDA plugin needs --device cuda; on CPU use --ops ref or --ops current")

    variants = {"both": ["plugin", "ref"], "ref": ["ref"], "plugin": ["plugin"]}.get(ops)
    if variants is None:
        label = "ref" if os.environ.get("STYLEGAN_UNMASK_OPS") == "ref" or not on_cuda else "default"
        rows = run_cases(torch.device(args.device), args.resolution, args.batch, args.warmup, args.iters,
                         args.modes)
        results = {label: {"rows": rows, "plugins": plugin_states()}}
    else:
        results = {v: _run_variant(args, v) for v in variants}

    name = torch.cuda.get_device_name(torch.device(args.device)) if on_cuda else \
        f"CPU, {torch.get_num_threads()} torch threads"
    print(f"StyleGAN2 synthesis, FFHQ config at {args.resolution}x{args.resolution} (random weights), {name}, "
          f"torch {torch.__version__}; fp16 blocks {'on' if on_cuda else 'off (CPU)'}; "
          f"median of {args.iters} after {args.warmup} warm-up")
    header = f"{'ops':<8} {'batch':>5} {'mode':<16} {'ms/iter':>10} {'ms/img':>10}"
    print(header)
    print("-" * len(header))
    for variant, result in results.items():
        for row in result["rows"]:
            ms = row["seconds"] * 1000
            print(f"{variant:<8} {row['batch']:>5} {row['mode']:<16} {ms:>10.1f} {ms / row['batch']:>10.1f}")
    for variant, result in results.items():
        states = ", ".join(f"{op}: {state}" for op, state in result["plugins"].items())
        print(f"custom ops in the '{variant}' run: {states}")


if __name__ == "__main__":
    main()
