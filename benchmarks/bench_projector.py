"""Seconds per projector step (masked W+ projection, default loss: MSE + 0.8 * VGG16 conv2_2).

Cases:
  * the 64 px fixture network (../shared/fixtures/nvidia-ada-64.pkl) on the CPU;
  * the FFHQ-1024 config (z/w 512, channel_base 32768, channel_max 512,
    num_fp16_res 4, conv_clamp 256) with random weights - speed does not depend on
    the weight values - on --device (default: CUDA when available, else CPU).

The step-time table (official schedule in fp32 unless --schedule/--precision say otherwise)
times ``project(steps=K)`` and ``project(steps=0)`` with everything that
is built once per run (VGG16, w statistics, target features, the initial latent,
the final render) shared, and reports (t_K - t_0) / K: the cost of one
optimisation step (render, masked loss, backward, Adam, bookkeeping).

``--compare`` instead times, in one run and interleaved, the official schedule in fp32
and the default (fast schedule, auto precision) on the same network, target and mask:
seconds per step, the whole-projection time computed from them (setup + steps x
s/step), and complete projections of both (time, visible-region loss and PSNR of
the final image) on the 64 px fixture, the shipped faces-64 model and a 256 px
config. Where the default compiles its step (a CPU, 256 px and more) the
plain fast step ("default, no compile") is timed too, and the default's
whole-projection time includes its first compile, from an empty compile
cache unless ``--warm-compile-cache``. At 1024 px on a CPU the official fp32
step is also timed in a fresh process with huge pages and heap reuse off
(how NVIDIA's projector runs; ``--no-plain-baseline`` skips it).
``--ablation`` adds what each fast-render option buys at 1024 px.
``--floor`` times every convolution of one default 1024 px step alone (bf16,
channels-last, forward and input gradient) and sets their sum, the step's
lower bound on this CPU, against a tenth of the plain-process official step.
``import stylegan_unmask`` turns on huge pages and heap reuse for the
in-process runs.

    python benchmarks/bench_projector.py                       # defaults
    python benchmarks/bench_projector.py --device cuda --steps-1024 50
    python benchmarks/bench_projector.py --skip-1024 --threads 2
    python benchmarks/bench_projector.py --compare --ablation --threads 2   # official fp32 vs the new default
    python benchmarks/bench_projector.py --floor --threads 2               # the convolutions' lower bound
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import stylegan_unmask  # noqa: E402,F401  (first: asks torch for huge pages before it allocates)
import torch  # noqa: E402

from stylegan_unmask.networks import FFHQ_1024_KWARGS as FFHQ_1024  # noqa: E402

DEFAULT_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "nvidia-ada-64.pkl"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lower_face_mask(n: int, R: int, device) -> torch.Tensor:
    mask = torch.zeros([n, 1, R, R], dtype=torch.bool, device=device)
    mask[:, :, int(0.6 * R):, int(0.2 * R):int(0.8 * R)] = True
    return mask


def time_steps(G, device: torch.device, batch: int, steps: int, features, optimize_noise: bool,
               schedule: str = "official", precision: str = "fp32") -> Dict:
    from stylegan_unmask.projector import ProjectionConfig, project, w_statistics

    R = G.img_resolution
    with torch.no_grad():
        z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
        target = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    mask = _lower_face_mask(batch, R, device)
    w_statistics(G, 10000, device)                      # cached for every run below

    def run(k: int) -> float:
        config = ProjectionConfig(steps=k, optimize_noise=optimize_noise, schedule=schedule, precision=precision)
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


# ----------------------------------------------------------------------------------------------
# official fp32 vs the new default, same network / target / mask, interleaved in one run.

CONFIG_256 = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=32768, channel_max=512))


def compare_schedules(G, device: torch.device, features, steps_total: int, timed_steps: int, reps: int,
                      full_steps: int, seed: int = 0, plain_baseline: bool = False) -> Dict:
    """Per-step cost of the official fp32 schedule and of the default, the whole-projection time of
    each computed from it (setup + steps x s/step), and (with full_steps > 0) complete projections of
    both from the same start: time, final visible-region loss and PSNR.

    The target is an image the network draws (w = mapping(z), const noise, clamped to [-1, 1]);
    hidden: the bottom 40 % of the rows between 20 % and 80 % of the columns.
    """
    from stylegan_unmask.projector import (ProjectionConfig, project, resolve_compile, resolve_precision,
                                           w_statistics)

    R = G.img_resolution
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
        target = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    mask = _lower_face_mask(1, R, device)
    w_statistics(G, 10000, device)
    default = ProjectionConfig()
    variants = {"official fp32": dict(schedule="official", precision="fp32"),
                "default": dict(schedule=default.schedule, precision=default.precision, compile=default.compile)}
    if resolve_compile(ProjectionConfig(steps=steps_total), device, G):
        variants["default, no compile"] = dict(schedule=default.schedule, precision=default.precision, compile="off")

    def run(k: int, **kw) -> float:
        _sync(device)
        start = time.perf_counter()
        project(G, target, mask, ProjectionConfig(steps=k, **kw), device=device, progress=False, features=features)
        _sync(device)
        return time.perf_counter() - start

    compile_seconds = {}
    for name, kw in variants.items():                             # warm-up (the compiled step compiles here)
        compile_seconds[name] = run(1, **kw)
    setup: Dict[str, List[float]] = {name: [] for name in variants}
    times: Dict[str, List[float]] = {name: [] for name in variants}
    plain_name = "official fp32, plain process"
    if plain_baseline:
        setup[plain_name], times[plain_name] = [], []
    for _ in range(reps):                                         # interleaved: the noise hits all alike
        for name, kw in variants.items():
            setup[name].append(run(0, **kw))
            times[name].append(run(timed_steps, **kw))
        if plain_baseline:
            plain = plain_process_official(timed_steps, torch.get_num_threads())
            setup[plain_name].append(plain["setup"])
            times[plain_name].append(plain["setup"] + plain["per_step"] * timed_steps)
    if plain_baseline:
        variants = dict(variants, **{plain_name: {}})
        compile_seconds[plain_name] = 0.0                         # nothing compiled: no overhead (below)
    t0 = {name: min(v) for name, v in setup.items()}
    per_step = {name: (min(times[name]) - t0[name]) / timed_steps for name in variants}
    # A whole projection: setup + steps x s/step + what the first call cost beyond a step (compiling).
    overhead = {name: max(compile_seconds[name] - t0[name] - per_step[name], 0.0) for name in variants}
    whole = {name: t0[name] + overhead[name] + steps_total * per_step[name] for name in variants}
    out = dict(resolution=R, precision=resolve_precision(default.precision, device, R), per_step=per_step, setup=t0,
               steps_total=steps_total, whole=whole, timed_steps=timed_steps, first_call=compile_seconds)
    if full_steps > 0:
        finals = {}
        for name, kw in variants.items():
            if name in ("default, no compile", plain_name):
                continue
            _sync(device)
            start = time.perf_counter()
            r = project(G, target, mask, ProjectionConfig(steps=full_steps, **kw), device=device, progress=False,
                        features=features)[0]
            _sync(device)
            finals[name] = dict(seconds=time.perf_counter() - start, loss=r.final_loss, psnr=r.psnr)
        out["full"] = dict(steps=full_steps, **finals)
    return out


def print_comparison(title: str, c: Dict) -> None:
    print(f"\n{title}: official fp32 vs default (fast schedule, {c['precision']}); "
          f"{c['timed_steps']} timed steps each, interleaved")
    for name, v in c["per_step"].items():
        print(f"  {name:<20} {v:8.4f} s/step   setup {c['setup'][name]:6.2f} s   "
              f"first 1-step call {c['first_call'][name]:6.1f} s (includes compiling, if any)")
    for name in c["per_step"]:
        if name != "official fp32":
            print(f"  per step: {name} {c['per_step']['official fp32'] / c['per_step'][name]:.2f}x faster")
    plain = "official fp32, plain process"
    if plain in c["per_step"]:
        print(f"  per step: default {c['per_step'][plain] / c['per_step']['default']:.2f}x faster than the official "
              f"fp32 step run as NVIDIA's code runs (fresh process, no huge pages, no heap reuse)")
        print(f"  whole {c['steps_total']}-step projection: default {c['whole']['default']:.1f} s vs "
              f"{c['whole'][plain]:.1f} s -> {c['whole'][plain] / c['whole']['default']:.2f}x")
    print(f"  whole {c['steps_total']}-step projection, computed (setup + compiling + steps x s/step): official "
          f"fp32 {c['whole']['official fp32']:.1f} s, default {c['whole']['default']:.1f} s "
          f"-> {c['whole']['official fp32'] / c['whole']['default']:.2f}x")
    if "full" in c:
        f = c["full"]
        for name in ("official fp32", "default"):
            print(f"  complete {f['steps']}-step projection, {name:<14}: {f[name]['seconds']:8.1f} s, "
                  f"visible loss {f[name]['loss']:.5g}, PSNR {f[name]['psnr']:.2f} dB")
        print(f"  default / official: time {f['default']['seconds'] / f['official fp32']['seconds']:.3f}, "
              f"visible loss {f['default']['loss'] / f['official fp32']['loss']:.3f}")


# ----------------------------------------------------------------------------------------------
# What each fast-render option buys: one render + masked loss + backward, same W+, interleaved.

ABLATION = {
    "official (fused)": {},
    "non-fused": dict(fused_modconv=False),
    "lean": dict(fused_modconv=False, lean=True),
    "lean + channels-last >=256": dict(fused_modconv=False, lean=True, channels_last_from=256),
}


def render_ablation(G, device: torch.device, features, reps: int) -> Dict[str, float]:
    """Seconds per render + 256 px MSE/VGG loss + backward to W+ for each option set (minimum of reps)."""
    from stylegan_unmask.projector import MaskedLoss
    from stylegan_unmask.projector.speed import render

    R = G.img_resolution
    with torch.no_grad():
        ws0 = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device), None)
        target = G.synthesis(ws0, noise_mode="const").clamp(-1, 1)
    loss_fn = MaskedLoss(target, _lower_face_mask(1, R, device), features=features)
    ws = (ws0 + 0.1).requires_grad_(True)

    def step(options) -> float:
        _sync(device)
        start = time.perf_counter()
        mse, perceptual = loss_fn(render(G, ws, None, True, **options))
        (mse + 0.8 * perceptual).sum().backward()
        _sync(device)
        ws.grad = None
        return time.perf_counter() - start

    for options in ABLATION.values():
        step(options)
    times: Dict[str, List[float]] = {name: [] for name in ABLATION}
    for _ in range(reps):
        for name, options in ABLATION.items():
            times[name].append(step(options))
    return {name: min(v) for name, v in times.items()}


def step_convolutions(G, features, resolution: int = 256) -> List[Dict]:
    """Every convolution one default projection step runs: the synthesis layers (3x3, the upsampling
    ones as stride-2 transposed convolutions at their input resolution), the ToRGBs, the 4x4 FIR of
    each upsampling (layers and skip image) and VGG16 up to the loss's deepest layer at `resolution`.
    Rows: name, input shape x [1, C, H, W], weight shape w, transposed (stride 2) or not, groups, gflop."""
    from stylegan_unmask.perceptual.weights import POOL_AFTER

    rows: List[Dict] = []
    for block in G.synthesis.blocks():
        R = block.resolution
        for name in ("conv0", "conv1"):
            layer = getattr(block, name, None)
            if layer is None:
                continue
            out_c, in_c, k, _ = layer.weight.shape
            up = layer.up == 2
            rows.append(dict(name=f"b{R}.{name}" + (" (up)" if up else ""), x=[1, in_c] + [R // 2 if up else R] * 2,
                             w=[out_c, in_c, k, k], transposed=up, groups=1))
            if up:
                rows.append(dict(name=f"b{R}.{name} FIR", x=[1, out_c, R + 3, R + 3], w=[out_c, 1, 4, 4],
                                 transposed=False, groups=out_c))
        if getattr(block, "torgb", None) is not None:
            out_c, in_c, k, _ = block.torgb.weight.shape
            rows.append(dict(name=f"b{R}.torgb", x=[1, in_c, R, R], w=[out_c, in_c, k, k], transposed=False, groups=1))
            if block.in_channels:
                rows.append(dict(name=f"b{R} image FIR", x=[1, out_c, R + 3, R + 3], w=[out_c, 1, 4, 4], transposed=False,
                                 groups=out_c))
    size = resolution
    for name, conv in features.convs.items():
        rows.append(dict(name=f"VGG {name}", x=[1, conv.in_channels, size, size], w=list(conv.weight.shape),
                         transposed=False, groups=1))
        if name == features.layers[-1]:
            break
        if name in POOL_AFTER:
            size //= 2
    for row in rows:
        r = row["x"][-1]
        out_c, in_per_group, kh, kw = row["w"]
        # 2 x multiply-adds: per input pixel for a transposed convolution, else per output pixel
        # (3x3 with padding 1 and 1x1 keep the size; the FIR runs on its padded input, no padding)
        out_res = r - 3 if kh == 4 else r
        pixels = r * r if row["transposed"] else out_res * out_res
        row["gflop"] = 2 * pixels * kh * kw * in_per_group * out_c / 1e9
    return rows


def convolution_floor(G, features, reps: int) -> Dict:
    """Each convolution of one default step (bf16, channels-last as the compiled step runs them, forward
    and input gradient) timed alone, minimum of `reps`; and the dense bf16 GEMM rate of this CPU."""
    import torch.nn.functional as F

    rows = step_convolutions(G, features)
    for row in rows:
        x = torch.randn(row["x"]).to(torch.bfloat16, memory_format=torch.channels_last).requires_grad_(True)
        w_shape = [row["w"][1], row["w"][0], *row["w"][2:]] if row["transposed"] else row["w"]
        w = torch.randn(w_shape).to(torch.bfloat16, memory_format=torch.channels_last)
        padding = row["w"][-1] // 2 if row["w"][-1] == 3 and not row["transposed"] else 0

        def conv():
            if row["transposed"]:
                return F.conv_transpose2d(x, w, stride=2)
            return F.conv2d(x, w, padding=padding, groups=row["groups"])

        fwd, bwd = [], []
        for _ in range(reps + 1):
            start = time.perf_counter()
            y = conv()
            mid = time.perf_counter()
            torch.autograd.grad(y, [x], torch.ones_like(y))
            fwd.append(mid - start)
            bwd.append(time.perf_counter() - mid)
        row["forward_s"], row["input_grad_s"] = min(fwd[1:]), min(bwd[1:])
    a = torch.randn(4096, 4096, dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, dtype=torch.bfloat16)
    a @ b
    gemm = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        a @ b
        gemm.append(time.perf_counter() - start)
    return dict(rows=rows, gemm_gflops=2 * 4096 ** 3 / min(gemm[1:]) / 1e9)


def print_floor(floor: Dict, plain: Optional[Dict] = None) -> None:
    rows = floor["rows"]
    print(f"\nconvolutions of one default FFHQ-1024 step (bf16, channels-last, forward + input gradient, "
          f"each timed alone, {torch.get_num_threads()} threads)")
    print(f"  {'convolution':<22} {'input':<20} {'GFLOP':>7} {'fwd ms':>8} {'grad ms':>8}")
    for row in rows:
        print(f"  {row['name']:<22} {str(row['x']):<20} {row['gflop']:>7.2f} {row['forward_s'] * 1e3:>8.1f} "
              f"{row['input_grad_s'] * 1e3:>8.1f}")
    gflop = 2 * sum(row["gflop"] for row in rows)                 # the input gradient costs what the forward does
    seconds = sum(row["forward_s"] + row["input_grad_s"] for row in rows)
    print(f"  total: {gflop:.0f} GFLOP in {seconds:.3f} s ({gflop / seconds:.0f} GFLOPS); dense bf16 GEMM "
          f"4096^3 on this CPU: {floor['gemm_gflops']:.0f} GFLOPS (those GFLOP at that rate: "
          f"{gflop / floor['gemm_gflops']:.3f} s)")
    if plain is not None:
        target = plain["per_step"] / 10
        print(f"  official fp32 step, plain process: {plain['per_step']:.2f} s; a tenth of it: {target:.3f} s "
              f"per step for everything (convolutions, elementwise work, Adam, compiling); the "
              f"convolutions alone leave {target - seconds:+.3f} s")


PLAIN_ENV = {"THP_MEM_ALLOC_ENABLE": "0", "STYLEGAN_UNMASK_HEAP_REUSE": "0"}


def plain_process_official(timed_steps: int, threads: int) -> Dict[str, float]:
    """The official fp32 schedule at 1024 px in a fresh process with torch's default memory behaviour
    (no huge pages, freed tensors unmapped), i.e. how NVIDIA's projector runs: same network, target
    and mask as the in-process runs. Returns setup and per-step seconds."""
    import json
    import subprocess

    env = dict(os.environ, **PLAIN_ENV)
    out = subprocess.run([sys.executable, __file__, "--plain-official-step", "--timed-steps", str(timed_steps),
                          "--threads", str(threads)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _plain_official_step(timed_steps: int) -> None:
    import json

    from stylegan_unmask.runtime.heap_reuse import heap_reuse_enabled
    from stylegan_unmask.networks.stylegan2 import Generator
    from stylegan_unmask.perceptual import VGG16Features
    from stylegan_unmask.projector import ProjectionConfig, project, w_statistics

    assert not heap_reuse_enabled(), "the plain baseline must run with heap reuse off"
    device = torch.device("cpu")
    torch.manual_seed(0)
    G = Generator(**FFHQ_1024).eval().requires_grad_(False)
    features = VGG16Features(("conv2_2",))
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0))
        target = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    mask = _lower_face_mask(1, G.img_resolution, device)
    w_statistics(G, 10000, device)

    def run(k: int) -> float:
        start = time.perf_counter()
        project(G, target, mask, ProjectionConfig(steps=k, schedule="official", precision="fp32"), device=device,
                progress=False, features=features)
        return time.perf_counter() - start

    run(1)
    t0 = run(0)
    tk = run(timed_steps)
    print(json.dumps(dict(setup=t0, per_step=(tk - t0) / timed_steps, huge_pages=_huge_pages_state())))


def _huge_pages_state() -> str:
    from stylegan_unmask.runtime.huge_pages import ENV_VAR, huge_pages_in_use

    used = huge_pages_in_use()
    return f"{'on' if used else 'off' if used is False else 'unknown'} ({ENV_VAR}={os.environ.get(ENV_VAR, 'unset')})"


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
    parser.add_argument("--schedule", default="official", help="schedule of the step-time table (default official)")
    parser.add_argument("--precision", default="fp32", help="precision of the step-time table (default fp32)")
    parser.add_argument("--compare", action="store_true",
                        help="official fp32 vs the default schedule/precision (instead of the step-time table)")
    parser.add_argument("--compare-steps", type=int, default=1000, help="projection length the comparison models")
    parser.add_argument("--timed-steps", type=int, default=2,
                        help="timed steps per variant at 256/1024 px (5x as many at 64 px)")
    parser.add_argument("--ablation", action="store_true", help="with --compare: each fast-render option at 1024 px")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (the minimum is kept)")
    parser.add_argument("--full-steps-1024", type=int, default=0,
                        help="also run complete projections of both at 1024 px with this many steps")
    parser.add_argument("--full-steps-256", type=int, default=200,
                        help="complete projections of both at 256 px (FFHQ-style config, random weights)")
    parser.add_argument("--full-steps-64", type=int, default=1000, help="complete projections of both, 64 px fixture")
    parser.add_argument("--no-plain-baseline", action="store_true",
                        help="with --compare: skip the official step in a plain process (as NVIDIA's code runs)")
    parser.add_argument("--warm-compile-cache", action="store_true",
                        help="keep torch.compile's on-disk cache (default: a fresh one, so the first call of the "
                             "compiled default includes a cold compile, as on a user's first run)")
    parser.add_argument("--floor", action="store_true",
                        help="time each convolution of a default 1024 px step alone (the step's lower bound) "
                             "against a tenth of the plain-process official step")
    parser.add_argument("--plain-official-step", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.plain_official_step:
        _plain_official_step(args.timed_steps)
        return
    if not args.warm_compile_cache:
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-projector-inductor-")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    batches: List[int] = args.batch or [1, 4]
    from stylegan_unmask.perceptual import VGG16Features

    features = VGG16Features(("conv2_2",))
    if args.floor:
        from stylegan_unmask.networks.stylegan2 import Generator

        torch.manual_seed(0)
        G = Generator(**FFHQ_1024).eval().requires_grad_(False)
        floor = convolution_floor(G, features, args.reps)
        plain = None if args.no_plain_baseline else plain_process_official(args.timed_steps, torch.get_num_threads())
        print_floor(floor, plain)
        return
    if args.compare:
        from stylegan_unmask.checkpoints import load_generator
        from stylegan_unmask.networks.stylegan2 import Generator

        cpu = torch.device("cpu")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}, huge pages: {_huge_pages_state()}")
        if not args.skip_64:
            G = load_generator(args.network, device="cpu")
            print_comparison("fixture 64 px (random-init official pickle), cpu", compare_schedules(
                G, cpu, features, args.compare_steps, args.timed_steps * 5, args.reps, args.full_steps_64))
            G = load_generator("faces-64", device="cpu")
            print_comparison("faces-64 (our trained face model), cpu", compare_schedules(
                G, cpu, features, args.compare_steps, args.timed_steps * 5, args.reps, args.full_steps_64))
        if args.full_steps_256 >= 0:
            torch.manual_seed(0)
            G = Generator(**CONFIG_256).eval().requires_grad_(False).to(device)
            print_comparison(f"256 px config (random weights), {device}", compare_schedules(
                G, device, features.to(device), args.compare_steps, args.timed_steps, args.reps,
                args.full_steps_256))
        if not args.skip_1024:
            torch.manual_seed(0)
            G = Generator(**FFHQ_1024).eval().requires_grad_(False).to(device)
            print_comparison(f"FFHQ-1024 config (random weights), {device}", compare_schedules(
                G, device, features.to(device), args.compare_steps, args.timed_steps, args.reps,
                args.full_steps_1024, plain_baseline=device.type == "cpu" and not args.no_plain_baseline))
            if args.ablation:
                times = render_ablation(G, device, features.to(device), args.reps)
                print(f"\nFFHQ-1024 config, {device}: one render + masked loss + backward to W+ (fp32)")
                base = times["official (fused)"]
                for name, t in times.items():
                    print(f"  {name:<28} {t:7.2f} s  ({base / t:.2f}x)")
        return
    rows = []
    if not args.skip_64:
        from stylegan_unmask.checkpoints import load_generator

        G = load_generator(args.network, device="cpu")
        for batch in batches:
            row = time_steps(G, torch.device("cpu"), batch, args.steps_64, features, args.optimize_noise,
                             args.schedule, args.precision)
            rows.append(dict(case="fixture 64 px", device="cpu", **row))
            print(rows[-1], flush=True)
    if not args.skip_1024:
        from stylegan_unmask.networks.stylegan2 import Generator

        torch.manual_seed(0)
        G = Generator(**FFHQ_1024).eval().requires_grad_(False).to(device)
        steps = args.steps_1024 or (50 if device.type == "cuda" else 3)
        features_dev = features.to(device)
        for batch in batches:
            row = time_steps(G, device, batch, steps, features_dev, args.optimize_noise, args.schedule, args.precision)
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
