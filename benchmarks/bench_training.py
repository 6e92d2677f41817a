"""Training throughput, side by side: img/s of whole G+D iterations and of each part.

Every figure comes from the same run on the same machine (these machines are
noisy: compare the ratios, not the absolute times). Parts are timed alone on
the shapes one iteration uses; whole iterations run ``Trainer.train_step`` on
an in-memory dataset of random images (speed does not depend on the pixels).

``--baseline-src DIR`` also times the trainer of another checkout (for example
the commit before this trainer: ``git worktree add /tmp/sgu-old 05e1bc6``)
with its own defaults, in a child process, between our runs.

    python benchmarks/bench_training.py --threads 2
    python benchmarks/bench_training.py --threads 2 --baseline-src /tmp/sgu-old --resolution 64
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


CLOCK = time.perf_counter  # --cpu-time: time.process_time (one thread; robust to other jobs on the machine)


def median_seconds(fn: Callable[[], None], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


def make_dataset(root: Path, resolution: int, count: int = 64) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / f"random-{resolution}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


# ----------------------------------------------------------------------------- parts
def time_parts(resolution: int, batch: int, cbase: int, cmax: int, d_inputs: List[int], warmup: int,
               reps: int) -> List[Dict]:
    from stylegan_unmask.networks.stylegan2 import Generator
    from stylegan_unmask.training.discriminator import ProjectedDiscriminator

    rows = []
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": cbase, "channel_max": cmax}).train()
    z = torch.randn(batch, 512)
    for lean in (False, True):
        for prec in ("fp32", "bf16"):
            def g_fwd_bwd():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    img = G.synthesis(G.mapping(z, None), noise_mode="random", lean=lean)
                img.float().square().mean().backward()
            rows.append({"part": f"G fwd+bwd ({prec}{', lean' if lean else ''})",
                         "s": median_seconds(g_fwd_bwd, warmup, reps)})
    img = torch.randn(batch, 3, resolution, resolution)
    for backbone in ("lite0", "vgg16"):
        for size in d_inputs:
            D = ProjectedDiscriminator(backbone, size).train()
            for prec in ("fp32", "bf16"):
                ac = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")  # noqa: E731

                def feats_nograd():
                    with torch.no_grad(), ac():
                        D.features(img)

                def feats_bwd():
                    x = img.clone().requires_grad_(True)
                    with ac():
                        out = D(x)
                    out.float().mean().backward()
                rows.append({"part": f"D features, no grad ({backbone} @ {size}, {prec})",
                             "s": median_seconds(feats_nograd, warmup, reps)})
                rows.append({"part": f"D fwd+bwd to the image ({backbone} @ {size}, {prec})",
                             "s": median_seconds(feats_bwd, warmup, reps)})
    for r in rows:
        r["img/s"] = batch / r["s"]
    return rows


# ----------------------------------------------------------------------------- whole iterations
def time_iterations(data: Path, settings: Dict[str, dict], iters: int, warmup: int) -> List[Dict]:
    from stylegan_unmask.training.loop import TrainConfig, Trainer

    rows = []
    for name, overrides in settings.items():
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(data=str(data), outdir=out, metrics_samples=0, **overrides)
            tr = Trainer(cfg, progress=False)
            s = median_seconds(tr.train_step, warmup, iters)
            rows.append({"part": f"iteration: {name}", "s": s, "img/s": cfg.batch / s})
    return rows


BASELINE_SNIPPET = """
import sys, time, statistics, tempfile, torch
torch.set_num_threads({threads})
clock = time.{clock}
from stylegan_unmask.training.loop import TrainConfig, Trainer
with tempfile.TemporaryDirectory() as out:
    tr = Trainer(TrainConfig(data={data!r}, outdir=out, metrics_samples=0, batch={batch}), progress=False)
    for _ in range({warmup}): tr.train_step()
    ts = []
    for _ in range({iters}):
        t0 = clock(); tr.train_step(); ts.append(clock() - t0)
    print("SECONDS", statistics.median(ts))
"""


def time_baseline(src: Path, data: Path, batch: int, threads: int, iters: int, warmup: int) -> Dict:
    code = BASELINE_SNIPPET.format(threads=threads, data=str(data), batch=batch, iters=iters, warmup=warmup,
                                   clock=CLOCK.__name__)
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True,
                         env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("SECONDS")]
    if not line:
        raise SystemExit(f"baseline trainer in {src} failed:\n{out.stderr[-3000:]}")
    s = float(line[0].split()[1])
    return {"part": f"iteration: baseline trainer ({src}, its defaults)", "s": s, "img/s": batch / s}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cbase", type=int, default=4096)
    ap.add_argument("--cmax", type=int, default=192)
    ap.add_argument("--d-input", type=int, action="append", default=None, help="D input sizes to time (repeat).")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu-time", action="store_true",
                    help="Measure CPU time of one thread instead of wall time (for a machine busy with other jobs).")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip-parts", action="store_true")
    ap.add_argument("--baseline-src", type=Path, default=None, help="Checkout whose trainer to time as the baseline.")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK, args.threads = time.process_time, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    d_inputs = args.d_input or [128, 224]
    rows: List[Dict] = []
    if not args.skip_parts:
        rows += time_parts(args.resolution, args.batch, args.cbase, args.cmax, d_inputs, args.warmup, args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp), args.resolution)
        g = {"channel_base": args.cbase, "channel_max": args.cmax, "batch": args.batch}
        settings = {
            "as published: D input 224, separate fakes, NCHW, fp32": dict(g, d_input=224, share_fakes=False,
                                                                          channels_last=False, precision="fp32"),
            "+ D input 128": dict(g, d_input=128, share_fakes=False, channels_last=False, precision="fp32"),
            "+ channels-last D": dict(g, d_input=128, share_fakes=False, channels_last=True, precision="fp32"),
            "+ one fake batch for the D and G steps": dict(g, precision="fp32"),
            "+ G in bf16, D in fp32 (mixed; default on CPUs with native bf16)": dict(g, precision="mixed"),
            "  (everything in bf16, for comparison)": dict(g, precision="bf16"),
        }
        rows += time_iterations(data, settings, args.reps, args.warmup)
        if args.baseline_src:
            rows.append(time_baseline(args.baseline_src, data, args.batch, torch.get_num_threads(), args.reps,
                                      args.warmup))
    print(f"\nresolution {args.resolution}, batch {args.batch}, G cbase {args.cbase} cmax {args.cmax}, "
          f"{torch.get_num_threads()} threads, {'CPU' if args.cpu_time else 'wall'} time, torch {torch.__version__}\n")
    print(f"| {'part':<70} | {'s/batch':>8} | {'img/s':>7} |\n|{'-' * 72}|{'-' * 10}|{'-' * 9}|")
    for r in rows:
        print(f"| {r['part']:<70} | {r['s']:8.3f} | {r['img/s']:7.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
