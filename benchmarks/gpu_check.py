"""Everything a CUDA GPU can show about stylegan-unmask, in one command (sized for under 8 minutes on one H100).

\b
    python benchmarks/gpu_check.py --out gpu-report            # writes gpu-report.md and gpu-report.json

Sections, each timed and recorded (a failing section is reported and the rest still run):

\b
1. plugins   compile the fused CUDA ops (bias_act, upfirdn2d) into an empty cache (cold), then load
             them again from the cache (cached);
2. pytest    ``python -m pytest -m cuda`` (the suite's GPU tests);
3. accuracy  compiled ops against the reference PyTorch ops, max |difference| per dtype, on the golden
             cases of ``--shared``/fixtures/ops-golden.npz where present, and on random tensors of
             the generator's shapes;
4. ops speed fused against reference ops, forward and forward+backward;
5. project   a 1000-step projection at the FFHQ-1024 configuration (random weights: speed does not
             depend on them), official fp32 and the default precision;
6. train     face-model training throughput (img/s) at the shipped network's configuration;
7. batch     ``stylegan-unmask batch --aligned`` over 20 aligned faces rendered by the shipped network;
8. samples   one projection against ``--samples 4`` (the fork) and 4 independent starts, with the shipped
             network and at the FFHQ-1024 configuration: the cost of N completions on a GPU.

Needs only torch, numpy, scipy, pillow, opencv-python-headless, tqdm and click besides this package
(no network). On a machine without a CUDA device it stops at once with exit code 2.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict

import click

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DTYPES = ("float32", "float16", "bfloat16")


def _sync():
    import torch

    torch.cuda.synchronize()


def _timed(fn: Callable[[], None], reps: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``fn`` on the GPU."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


# ----------------------------------------------------------------------------- sections
def check_plugins(report: dict) -> None:
    from torch_utils import custom_ops
    from torch_utils.ops import bias_act, upfirdn2d

    with tempfile.TemporaryDirectory() as cache:
        for spec in (bias_act.PLUGIN, upfirdn2d.PLUGIN):
            t0 = time.perf_counter()
            custom_ops.load_or_build(spec, cache=Path(cache))
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            custom_ops.load_or_build(spec, cache=Path(cache))
            report[spec.name] = {"cold_build_s": round(cold, 1), "cached_load_s": round(time.perf_counter() - t0, 2)}


def check_pytest(report: dict) -> None:
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    tail = (run.stdout + run.stderr).strip().splitlines()
    report.update(returncode=run.returncode, summary=tail[-1] if tail else "", seconds=round(time.perf_counter() - t0, 1),
                  failures=[ln for ln in tail if ln.startswith(("FAILED", "ERROR"))][:30])


def _op_pairs():
    """(name, fn(x, impl)) for the shapes a StyleGAN2 generator feeds the ops."""
    import torch
    from torch_utils.ops import bias_act, upfirdn2d

    f = upfirdn2d.setup_filter([1, 3, 3, 1], device="cuda")
    b = torch.randn(512, device="cuda")
    return [
        ("bias_act lrelu [8,512,64,64]", (8, 512, 64, 64),
         lambda x, impl: bias_act.bias_act(x, b.to(x.dtype), act="lrelu", clamp=256, impl=impl)),
        ("upsample2d [8,128,128,128]", (8, 128, 128, 128), lambda x, impl: upfirdn2d.upsample2d(x, f, impl=impl)),
        ("downsample2d [8,128,128,128]", (8, 128, 128, 128), lambda x, impl: upfirdn2d.downsample2d(x, f, impl=impl)),
        ("filter2d pad [8,64,256,256]", (8, 64, 256, 256), lambda x, impl: upfirdn2d.filter2d(x, f, padding=1, impl=impl)),
    ]


def check_accuracy(report: dict, shared: Path) -> None:
    import torch

    random_rows = {}
    for name, shape, fn in _op_pairs():
        for dt in DTYPES:
            x = torch.randn(shape, device="cuda", dtype=getattr(torch, dt))
            ref, cuda = fn(x, "ref").float(), fn(x, "cuda").float()
            random_rows[f"{name} {dt}"] = float((ref - cuda).abs().max())
    report["random_max_abs_diff"] = random_rows
    golden = shared / "fixtures" / "ops-golden.npz"
    if golden.is_file():
        report["golden_max_abs_diff"] = _golden_errors(golden)
    else:
        report["golden_max_abs_diff"] = f"skipped: {golden} is absent (pass --shared)"


def _golden_errors(path: Path) -> Dict[str, float]:
    import numpy as np
    import torch
    from torch_utils.ops import bias_act, upfirdn2d

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cases = [json.loads(str(s)) for s in arrays["cases_json"]]
    worst: Dict[str, float] = {}
    for case in (c for c in cases if c["op"] != "setup_filter"):
        for dt in DTYPES:
            dtype = getattr(torch, dt)
            x = torch.tensor(arrays[case["x"]], device="cuda").to(dtype)
            if case["op"] == "bias_act":
                b = None if case["b"] is None else torch.tensor(arrays[case["b"]], device="cuda").to(dtype)
                y = bias_act.bias_act(x, b, dim=case["dim"], act=case["act"], alpha=case["alpha"], gain=case["gain"],
                                      clamp=case["clamp"], impl="cuda")
            else:
                f = None if case["f"] is None else torch.tensor(arrays[case["f"]], device="cuda")
                kw = dict(padding=case["padding"], flip_filter=case["flip_filter"], gain=case["gain"], impl="cuda")
                op = getattr(upfirdn2d, case["op"])
                extra = {"up": case.get("up"), "down": case.get("down")}
                extra = {k: v for k, v in extra.items() if k in op.__code__.co_varnames and v is not None}
                y = op(x, f, **extra, **kw)
            err = float((y.double().cpu() - torch.from_numpy(arrays[case["id"] + "_y"])).abs().max())
            key = f"{case['op']} {dt}"
            worst[key] = max(worst.get(key, 0.0), err)
    return worst


def check_op_speed(report: dict) -> None:
    import torch

    for name, shape, fn in _op_pairs():
        row = {}
        for impl in ("ref", "cuda"):
            x = torch.randn(shape, device="cuda", dtype=torch.float16, requires_grad=True)
            row[f"{impl}_fwd_ms"] = round(_timed(lambda: fn(x, impl)) * 1000, 3)
            row[f"{impl}_fwd_bwd_ms"] = round(_timed(lambda: fn(x, impl).float().square().mean().backward()) * 1000, 3)
        row["speedup_fwd_bwd"] = round(row["ref_fwd_bwd_ms"] / max(row["cuda_fwd_bwd_ms"], 1e-9), 2)
        report[name] = row


def check_projection(report: dict, steps: int) -> None:
    import torch
    from stylegan_unmask.networks.stylegan2 import FFHQ_1024_KWARGS, Generator
    from stylegan_unmask.projector import ProjectionConfig, project

    torch.manual_seed(0)
    G = Generator(**FFHQ_1024_KWARGS).eval().requires_grad_(False).cuda()
    with torch.no_grad():
        target = G(torch.randn(1, 512, device="cuda"), None, noise_mode="const").clamp(-1, 1)
    hidden = torch.zeros(1, 1, 1024, 1024, dtype=torch.bool, device="cuda")
    hidden[..., 560:900, 300:724] = True
    for name, cfg in (("official fp32", ProjectionConfig(steps=steps, schedule="official", precision="fp32",
                                                         w_avg_samples=2000)),
                      ("default (fast, auto)", ProjectionConfig(steps=steps, w_avg_samples=2000))):
        t0 = time.perf_counter()
        result = project(G, target, hidden, cfg, device="cuda", progress=False)[0]
        _sync()
        report[name] = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "precision": result.precision,
                        "compiled": result.compiled, "final_loss": round(result.final_loss, 5),
                        "psnr_visible_db": round(result.psnr, 2)}


def check_samples(report: dict, steps: int) -> None:
    import dataclasses

    import torch
    from stylegan_unmask.checkpoints import load_generator
    from stylegan_unmask.networks.stylegan2 import FFHQ_1024_KWARGS, Generator
    from stylegan_unmask.projector import ProjectionConfig, project

    torch.manual_seed(0)
    big = Generator(**FFHQ_1024_KWARGS).eval().requires_grad_(False).cuda()
    for name, G in (("shipped", load_generator(device="cuda")), ("ffhq-1024 shape", big)):
        R = G.img_resolution
        with torch.no_grad():
            target = G(torch.randn(1, G.z_dim, device="cuda"), None, noise_mode="const").clamp(-1, 1)
        hidden = torch.zeros(1, 1, R, R, dtype=torch.bool, device="cuda")
        hidden[..., int(0.55 * R):int(0.88 * R), int(0.3 * R):int(0.7 * R)] = True
        config = ProjectionConfig(steps=steps, w_avg_samples=2000)
        row = {}
        for label, samples, cfg in (("single", 1, config), ("4 samples, fork 0.5", 4, config),
                                    ("4 independent starts", 4, dataclasses.replace(config, sample_fork=0.0))):
            project(G, target, hidden, dataclasses.replace(cfg, steps=5), device="cuda", progress=False,
                    samples=samples)  # warm-up (kernels, autotuning, compile)
            _sync()
            t0 = time.perf_counter()
            project(G, target, hidden, cfg, device="cuda", progress=False, samples=samples)
            _sync()
            row[f"{label} s"] = round(time.perf_counter() - t0, 2)
        for label in ("4 samples, fork 0.5", "4 independent starts"):
            row[f"{label} / single"] = round(row[f"{label} s"] / row["single s"], 2)
        report[f"{name} ({R} px, {steps} steps)"] = row


def check_training(report: dict, iters: int) -> None:
    import numpy as np
    from PIL import Image
    from stylegan_unmask.training.loop import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "faces"
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(64):
            Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(data / f"{i:03d}.png")
        for batch in (16, 64):
            tr = Trainer(TrainConfig(data=str(data), outdir=str(Path(tmp) / "runs"), batch=batch, device="cuda",
                                     metrics_samples=0), progress=False)
            s = _timed(tr.train_step, reps=iters, warmup=3)
            report[f"batch {batch}"] = {"s_per_iteration": round(s, 4), "img_per_s": round(batch / s, 1)}


def check_batch(report: dict, steps: int) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from stylegan_unmask.checkpoints import load_generator

    G = load_generator(device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        faces = Path(tmp) / "aligned"
        faces.mkdir()
        with torch.no_grad():
            imgs = G(torch.randn(20, G.z_dim, generator=torch.Generator().manual_seed(1)).cuda(), None,
                     truncation_psi=0.7, noise_mode="const")
        for i, im in enumerate(imgs):
            px = ((im.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            Image.fromarray(np.ascontiguousarray(px)).resize((256, 256), Image.LANCZOS).save(faces / f"face{i:02d}.png")
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "stylegan_unmask", "batch", str(faces), "--outdir",
                              str(Path(tmp) / "out"), "--aligned", "--steps", str(steps), "--device", "cuda", "-q"],
                             cwd=REPO_ROOT, capture_output=True, text=True)
        report.update(returncode=run.returncode, seconds=round(time.perf_counter() - t0, 1), faces=20, steps=steps,
                      output=(run.stdout + run.stderr).strip().splitlines()[-3:])


# ----------------------------------------------------------------------------- report
def write_report(out: Path, report: dict) -> None:
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [f"# GPU check — {report['device']}", "", f"torch {report['torch']}, CUDA {report['cuda']}, "
             f"{report['when']}, command: `{report['command']}`", ""]
    for section, body in report["sections"].items():
        lines += [f"## {section}", ""]
        if isinstance(body, dict):
            for k, v in body.items():
                lines.append(f"- **{k}**: {json.dumps(v) if not isinstance(v, str) else v}")
        else:
            lines.append(str(body))
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


@click.command(help=__doc__)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("gpu-report"), show_default=True,
              help="Report path without suffix: writes OUT.md and OUT.json.")
@click.option("--shared", type=click.Path(file_okay=False, path_type=Path), default=REPO_ROOT.parent / "shared",
              show_default=True, help="The reference-data folder (for the golden op cases).")
@click.option("--steps", type=click.IntRange(min=10), default=1000, show_default=True, help="Projection steps.")
@click.option("--batch-steps", type=click.IntRange(min=10), default=300, show_default=True,
              help="Steps per face in the batch section.")
@click.option("--train-iters", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--samples-steps", type=click.IntRange(min=10), default=300, show_default=True,
              help="Projection steps in the samples section.")
@click.option("--skip", multiple=True, type=click.Choice(["plugins", "pytest", "accuracy", "ops", "project", "train",
                                                          "batch", "samples"]),
              help="Leave a section out (repeatable).")
def main(out: Path, shared: Path, steps: int, batch_steps: int, samples_steps: int, train_iters: int, skip) -> None:
    import torch

    if not torch.cuda.is_available():
        click.echo("gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a machine with an "
                   "NVIDIA GPU and a CUDA build of torch.", err=True)
        sys.exit(2)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "sections": {}}
    sections = [("plugins", lambda r: check_plugins(r)), ("pytest", lambda r: check_pytest(r)),
                ("accuracy", lambda r: check_accuracy(r, shared)), ("ops", lambda r: check_op_speed(r)),
                ("project", lambda r: check_projection(r, steps)), ("train", lambda r: check_training(r, train_iters)),
                ("batch", lambda r: check_batch(r, batch_steps)), ("samples", lambda r: check_samples(r, samples_steps))]
    for name, fn in sections:
        if name in skip:
            continue
        body: dict = {}
        t0 = time.perf_counter()
        click.echo(f"gpu_check: {name} ...", err=True)
        try:
            fn(body)
        except Exception:  # noqa: BLE001 - one broken section must not hide the others
            body["error"] = traceback.format_exc(limit=4)[-3000:]
        body["section_seconds"] = round(time.perf_counter() - t0, 1)
        report["sections"][name] = body
        write_report(out, report)  # after every section: a run cut short still leaves a report
    click.echo(f"gpu_check: wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", err=True)


if __name__ == "__main__":
    main()
