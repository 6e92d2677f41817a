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
a few steps of every phase of the default, from which the whole-projection time is
computed (setup + steps of each phase x its s/step), and complete projections of both
(visible-region loss and PSNR of the final full-resolution image).

    python benchmarks/bench_projector.py                       # defaults
    python benchmarks/bench_projector.py --device cuda --steps-1024 50
    python benchmarks/bench_projector.py --skip-1024 --threads 2
    python benchmarks/bench_projector.py --compare --threads 2    # official fp32 vs the new default
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


def compare_schedules(G, device: torch.device, features, steps_total: int, steps_per_phase: int, reps: int,
                      full_steps: int, seed: int = 0) -> Dict:
    """Per-step cost of every phase of both schedules, whole-projection times computed from the
    schedule, and (with full_steps > 0) complete projections of both: final visible loss and PSNR.

    The target is an image the network draws (w = mapping(z), const noise, clamped to [-1, 1]);
    hidden: the bottom 40 % of the rows between 20 % and 80 % of the columns.
    """
    from stylegan_unmask.projector import (ProjectionConfig, _phase_plan, project, resolve_precision,
                                           w_statistics)

    R = G.img_resolution
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
        target = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    mask = _lower_face_mask(1, R, device)
    w_statistics(G, 10000, device)
    official = dict(schedule="official", precision="fp32")
    default = ProjectionConfig()
    default_kw = dict(schedule=default.schedule, precision=default.precision)
    plan = _phase_plan(ProjectionConfig(steps=steps_total, **default_kw), G)
    bounds = [start for start, _ in plan] + [steps_total]
    phase_steps = {res: bounds[i + 1] - bounds[i] for i, (_, res) in enumerate(plan)}

    def run(k: int, **kw) -> float:
        _sync(device)
        start = time.perf_counter()
        project(G, target, mask, ProjectionConfig(steps=k, **kw), device=device, progress=False, features=features)
        _sync(device)
        return time.perf_counter() - start

    variants = {"official fp32": dict(official)}
    for res in phase_steps:
        variants[f"default @{res}"] = dict(default_kw, phases=((1.0, res),))
    run(1, **official)                                            # warm-up
    for kw in variants.values():
        run(1, **kw)
    times: Dict[str, List[float]] = {name: [] for name in variants}
    setup: Dict[str, List[float]] = {"official": [], "default": []}
    for _ in range(reps):                                         # interleaved: the noise hits all alike
        setup["official"].append(run(0, **official))
        setup["default"].append(run(0, **default_kw))
        for name, kw in variants.items():
            times[name].append(run(steps_per_phase, **kw))
    t0 = {k: min(v) for k, v in setup.items()}
    per_step = {name: (min(v) - t0["official" if name.startswith("official") else "default"]) / steps_per_phase
                for name, v in times.items()}
    whole_official = t0["official"] + steps_total * per_step["official fp32"]
    whole_default = t0["default"] + sum(n * per_step[f"default @{res}"] for res, n in phase_steps.items())
    out = dict(resolution=R, precision=resolve_precision(default.precision, device), plan=plan,
               phase_steps=phase_steps, per_step=per_step, setup=t0, steps_total=steps_total,
               whole_official=whole_official, whole_default=whole_default)
    if full_steps > 0:
        finals = {}
        for name, kw in (("official fp32", official), ("default", default_kw)):
            _sync(device)
            start = time.perf_counter()
            r = project(G, target, mask, ProjectionConfig(steps=full_steps, **kw), device=device, progress=False,
                        features=features)[0]
            _sync(device)
            finals[name] = dict(seconds=time.perf_counter() - start, loss=r.final_loss, psnr=r.psnr)
        out["full"] = dict(steps=full_steps, **finals)
    return out


def print_comparison(title: str, c: Dict) -> None:
    print(f"\n{title}: official fp32 vs default ({c['precision']}, phases "
          + ", ".join(f"{n} steps @{res} px" for res, n in c["phase_steps"].items()) + f" of {c['steps_total']})")
    for name, v in c["per_step"].items():
        print(f"  {name:<16} {v:8.4f} s/step")
    mean_default = (c["whole_default"] - c["setup"]["default"]) / c["steps_total"]
    print(f"  mean over the default schedule {mean_default:.4f} s/step "
          f"({c['per_step']['official fp32'] / mean_default:.2f}x fewer seconds per step than official fp32)")
    print(f"  whole {c['steps_total']}-step projection, computed from the schedule (setup + steps x s/step): "
          f"official fp32 {c['whole_official']:.1f} s, default {c['whole_default']:.1f} s "
          f"-> {c['whole_official'] / c['whole_default']:.2f}x")
    if "full" in c:
        f = c["full"]
        for name in ("official fp32", "default"):
            print(f"  complete {f['steps']}-step projection, {name:<14}: {f[name]['seconds']:8.1f} s, "
                  f"visible loss {f[name]['loss']:.5g}, PSNR {f[name]['psnr']:.2f} dB")
        print(f"  default / official: time {f['default']['seconds'] / f['official fp32']['seconds']:.3f}, "
              f"visible loss {f['default']['loss'] / f['official fp32']['loss']:.3f}")


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
    parser.add_argument("--phase-steps", type=int, default=2, help="timed steps per phase and variant")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (the minimum is kept)")
    parser.add_argument("--full-steps-1024", type=int, default=0,
                        help="also run complete projections of both at 1024 px with this many steps")
    parser.add_argument("--full-steps-256", type=int, default=200,
                        help="complete projections of both at 256 px (FFHQ-style config, random weights)")
    parser.add_argument("--full-steps-64", type=int, default=1000, help="complete projections of both, 64 px fixture")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    batches: List[int] = args.batch or [1, 4]
    from stylegan_unmask.perceptual import VGG16Features

    features = VGG16Features(("conv2_2",))
    if args.compare:
        from stylegan_unmask.checkpoints import load_generator
        from stylegan_unmask.networks.stylegan2 import Generator

        cpu = torch.device("cpu")
        if not args.skip_64:
            G = load_generator(args.network, device="cpu")
            print_comparison("fixture 64 px, cpu", compare_schedules(
                G, cpu, features, args.compare_steps, args.steps_64 // 5 or 1, args.reps, args.full_steps_64))
        if args.full_steps_256 >= 0:
            torch.manual_seed(0)
            G = Generator(**CONFIG_256).eval().requires_grad_(False).to(device)
            print_comparison(f"256 px config (random weights), {device}", compare_schedules(
                G, device, features.to(device), args.compare_steps, args.phase_steps, args.reps, args.full_steps_256))
        if not args.skip_1024:
            torch.manual_seed(0)
            G = Generator(**FFHQ_1024).eval().requires_grad_(False).to(device)
            print_comparison(f"FFHQ-1024 config (random weights), {device}", compare_schedules(
                G, device, features.to(device), args.compare_steps, args.phase_steps, args.reps,
                args.full_steps_1024))
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
