"""Reference vs fused-plugin timings of bias_act and upfirdn2d on 1024-resolution-like tensors.

Usage (from the repository root)::

    python benchmarks/bench_ops.py                       # GPU if available, else CPU
    python benchmarks/bench_ops.py --device cpu --res 256 --repeat 3
    python benchmarks/bench_ops.py --dtype float16 --batch 4

Prints a Markdown table: median wall time per call (forward, and forward+backward),
the speed-up of the plugin over the reference, and the largest difference between
their outputs. Where the plugin cannot run (no GPU, no toolkit, build failure,
STYLEGAN_UNMASK_OPS=ref) its column shows why.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch_utils.ops import bias_act, upfirdn2d  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeat: int) -> float:
    """Median milliseconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def _cases(batch: int, channels: int, res: int, device: torch.device, dtype: torch.dtype):
    """(name, input shape, fn(x, impl)) for the ops as StyleGAN2 uses them at the top resolution."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    b = torch.randn(channels, generator=gen).to(device, dtype)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    full = (batch, channels, res, res)
    half = (batch, channels, res // 2, res // 2)
    return [
        ("bias_act lrelu+bias+clamp", randn(*full), lambda x, impl: bias_act.bias_act(
            x, b, act="lrelu", clamp=256, impl=impl)),
        ("bias_act linear+bias", randn(*full), lambda x, impl: bias_act.bias_act(x, b, impl=impl)),
        ("upsample2d x2 [1,3,3,1]", randn(*half), lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl)),
        ("downsample2d x2 [1,3,3,1]", randn(*full), lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl)),
        ("filter2d [1,3,3,1]", randn(*full), lambda x, impl: upfirdn2d.filter2d(x, f, impl=impl)),
    ]


def _fwd_bwd(fn, x, impl):
    def run():
        xx = x.detach().requires_grad_(True)
        y = fn(xx, impl)
        y.backward(torch.ones_like(y))
    return run


@click.command()
@click.option("--device", default=None, help="cuda or cpu (default: cuda when available).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--channels", type=int, default=32, show_default=True, help="StyleGAN2 FFHQ-1024 uses 32 at 1024^2.")
@click.option("--res", type=int, default=1024, show_default=True)
@click.option("--warmup", type=int, default=None, help="default: 5 on GPU, 1 on CPU")
@click.option("--repeat", type=int, default=None, help="default: 50 on GPU, 3 on CPU")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
def main(device, dtype, batch, channels, res, warmup, repeat, threads):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, dtype)
    if threads:
        torch.set_num_threads(threads)
    gpu = device.type == "cuda"
    warmup = warmup if warmup is not None else (5 if gpu else 1)
    repeat = repeat if repeat is not None else (50 if gpu else 3)

    status = {"bias_act": bias_act.plugin_status(), "upfirdn2d": upfirdn2d.plugin_status()}
    if not gpu:
        status = {k: (v if v.startswith("unavailable") else "unavailable: tensors on CPU") for k, v in status.items()}
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; dtype {dtype}; median of {repeat} after {warmup} warm-up")
    for op, st in status.items():
        print(f"plugin {op}: {st}")
    print()
    print("| op | input | pass | ref ms | plugin ms | speed-up | max abs diff |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, x, fn in _cases(batch, channels, res, device, dtype):
        op = "bias_act" if label.startswith("bias_act") else "upfirdn2d"
        shape = "x".join(str(s) for s in x.shape)
        plugin_ok = status[op] == "ok"
        diff = "-"
        if plugin_ok:
            with torch.no_grad():
                diff = f"{(fn(x, 'cuda').float() - fn(x, 'ref').float()).abs().max().item():.2e}"
        for pass_name, make in (("fwd", lambda impl: (lambda: fn(x, impl))), ("fwd+bwd", lambda impl: _fwd_bwd(fn, x, impl))):
            ref_ms = time_call(make("ref"), device, warmup, repeat)
            if plugin_ok:
                plug_ms = time_call(make("cuda"), device, warmup, repeat)
                plug, speed = f"{plug_ms:.3f}", f"{ref_ms / plug_ms:.2f}x"
            else:
                plug, speed = status[op], "-"
            print(f"| {label} | {shape} | {pass_name} | {ref_ms:.3f} | {plug} | {speed} | {diff if pass_name == 'fwd' else ''} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
