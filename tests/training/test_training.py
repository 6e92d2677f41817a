"""Dataset tool, trainer, snapshots and metrics (issue: our own face StyleGAN2).

Everything runs on a handful of real UTKFace faces from ../shared at 32 px, a
few iterations at a time: these check behaviour (layout, resume, safety,
determinism), not image quality.
"""
from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_unmask.errors import CheckpointError, UnmaskError, UnsafePickleError

from conftest import SHARED, _require

UTK = SHARED / "data" / "train" / "utkface"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 training faces, one exact duplicate, one photo without a face, one broken file."""
    src = _require(UTK)
    d = tmp_path_factory.mktemp("photos")
    files = sorted(src.glob("*.jpg"))[:12]
    for f in files:
        shutil.copy(f, d / f.name)
    shutil.copy(files[0], d / "zz_duplicate.jpg")
    from PIL import Image

    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(d / "zz_grey.png")
    (d / "zz_broken.jpg").write_bytes(b"not a jpeg at all")
    return d


@pytest.fixture(scope="module")
def dataset32(photos, tmp_path_factory) -> Path:
    from stylegan_unmask.training.dataset_tool import DatasetOptions, prepare_dataset

    out = tmp_path_factory.mktemp("ds") / "faces-32"
    prepare_dataset(photos, out, DatasetOptions(resolution=32, crop_scale=0.8), progress=False)
    return out


def test_dataset_layout_report_and_skips(dataset32, photos):
    meta = json.loads((dataset32 / "dataset.json").read_text())
    assert meta["labels"] is None  # NVIDIA's loader reads this key
    rec = meta["stylegan_unmask"]
    assert rec["resolution"] == 32 and rec["crop_scale"] == 0.8 and rec["transform_size"] == 128
    pngs = sorted(dataset32.rglob("img*.png"))
    assert len(pngs) == rec["images"] == 12
    assert all(p.parent.name == "00000" for p in pngs)
    from PIL import Image

    with Image.open(pngs[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    report = (dataset32 / "report.csv").read_text()
    assert "duplicate" in report and "zz_duplicate.jpg" in report
    assert "no-face" in report and "zz_grey.png" in report
    assert "unreadable" in report and "zz_broken.jpg" in report
    assert sorted(photos.iterdir())  # the sources are untouched
    assert (photos / "zz_broken.jpg").read_bytes() == b"not a jpeg at all"


def test_dataset_resume_redoes_only_missing(photos, tmp_path):
    from stylegan_unmask.training import dataset_tool as dt

    out = tmp_path / "ds"
    opts = dt.DatasetOptions(resolution=32, crop_scale=0.8)
    dt.prepare_dataset(photos, out, opts, limit=5, progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in out.rglob("img*.png")}
    assert len(first) == 5
    report = dt.prepare_dataset(photos, out, opts, progress=False)
    again = {p.name: p.stat().st_mtime_ns for p in out.rglob("img*.png")}
    assert report.images == 12
    assert all(again[n] == t for n, t in first.items())  # earlier images were not redone
    with pytest.raises(UnmaskError, match="other settings"):
        dt.prepare_dataset(photos, out, dt.DatasetOptions(resolution=32, crop_scale=1.0), progress=False)


def test_dataset_zip_mirror_and_crop_scale(photos, tmp_path):
    from stylegan_unmask.training.dataset import load_dataset
    from stylegan_unmask.training.dataset_tool import DatasetOptions, prepare_dataset

    out = tmp_path / "faces.zip"
    prepare_dataset(photos, out, DatasetOptions(resolution=32, crop_scale=1.0, mirror=True), limit=3, progress=False)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert "dataset.json" in names and sum(n.endswith("_mirror.png") for n in names) == 3
    ds = load_dataset(out, progress=False)
    assert len(ds) == 6 and ds.crop_scale == 1.0
    a, b = ds.images[0], ds.images[1]  # img00000000 and its mirror
    assert torch.equal(a.flip(-1), b)
    zoomed = load_dataset(_zoomed(photos, tmp_path), progress=False)
    # crop_scale < 1 zooms in: the face covers more of the frame, so the images differ.
    assert zoomed.crop_scale == 0.6 and not torch.equal(zoomed.images[0], ds.images[0])


def _zoomed(photos, tmp_path):
    from stylegan_unmask.training.dataset_tool import DatasetOptions, prepare_dataset

    out = tmp_path / "zoomed"
    prepare_dataset(photos, out, DatasetOptions(resolution=32, crop_scale=0.6), limit=1, progress=False)
    return out


def test_dataset_cli_errors(tmp_path):
    from stylegan_unmask.cli import main

    with pytest.raises(SystemExit) as e:
        main(["dataset", str(tmp_path / "missing"), str(tmp_path / "out"), "--resolution", "64"])
    assert e.value.code == 1
    with pytest.raises(SystemExit) as e:
        main(["dataset", str(tmp_path), str(tmp_path / "out"), "--resolution", "48"])
    assert e.value.code == 2


def _cfg(data, outdir, **kw):
    from stylegan_unmask.training.loop import TrainConfig

    base = dict(data=str(data), outdir=str(outdir), kimg=0.016, batch=4, channel_base=512, channel_max=32,
                z_dim=32, w_dim=32, metrics_samples=0, precision="fp32", device="cpu", r1_gamma=0.05, r1_interval=2)
    base.update(kw)
    return TrainConfig(**base)


def test_training_step_changes_weights_and_writes_snapshot(dataset32, tmp_path, one_thread):
    from stylegan_unmask.checkpoints import load_generator
    from stylegan_unmask.training.loop import Trainer

    tr = Trainer(_cfg(dataset32, tmp_path), progress=False)
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    d_before = {k: v.clone() for k, v in tr.D.heads.state_dict().items()}
    frozen_before = {k: v.clone() for k, v in tr.D.projection.state_dict().items()}
    stats = tr.train_step()
    tr.train_step()  # iteration 1 is not an R1 step; 0 was
    assert {"loss_D", "loss_G", "r1"} <= set(stats) and all(np.isfinite(list(stats.values())))
    assert any(not torch.equal(before[k], v) for k, v in tr.G.state_dict().items())
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.heads.state_dict().items())
    # The feature network and its random projections stay frozen (batch-norm statistics included).
    assert all(torch.equal(frozen_before[k], v) for k, v in tr.D.projection.state_dict().items())
    net = tr.save_snapshot(metrics=False)
    assert net.name == "network-snapshot-000000.pt"
    assert (net.parent / "fakes000000.png").exists() and (net.parent / "training-state.pt").exists()
    G = load_generator(net)
    assert G.crop_scale == 0.8 and G.img_resolution == 32
    assert G.training_record["dataset"]["images"] == 12
    for k, v in tr.G_ema.state_dict().items():
        assert torch.equal(G.state_dict()[k], v)


def test_resume_continues_exactly(dataset32, tmp_path, one_thread):
    """4 iterations in one go == 2, snapshot, resume, 2 more (same weights bit for bit)."""
    from stylegan_unmask.training.loop import Trainer

    whole = Trainer(_cfg(dataset32, tmp_path / "a"), progress=False)
    for _ in range(4):
        whole.train_step()
    part = Trainer(_cfg(dataset32, tmp_path / "b"), progress=False)
    for _ in range(2):
        part.train_step()
    part.save_snapshot(metrics=False)
    resumed = Trainer(_cfg(dataset32, tmp_path / "b"), resume="latest", progress=False)
    assert resumed.nimg == 8 and resumed.run_dir == part.run_dir
    for _ in range(2):
        resumed.train_step()
    for k, v in whole.G.state_dict().items():
        assert torch.equal(resumed.G.state_dict()[k], v), k
    for k, v in whole.G_ema.state_dict().items():
        assert torch.equal(resumed.G_ema.state_dict()[k], v), k
    with pytest.raises(UnmaskError, match="settings differ"):
        Trainer(_cfg(dataset32, tmp_path / "b", glr=0.01), resume="latest", progress=False)


def test_train_cli_runs_and_resumes(dataset32, tmp_path, one_thread):
    from stylegan_unmask.cli import main

    args = ["train", "--data", str(dataset32), "--outdir", str(tmp_path), "--kimg", "0.008", "--batch", "4",
            "--cbase", "512", "--cmax", "32", "--z-dim", "16", "--w-dim", "32", "--metrics-samples", "0",
            "--precision", "bf16", "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    run = next(tmp_path.glob("00000-*"))
    assert (run / "network-snapshot-000000.pt").exists()
    with pytest.raises(SystemExit) as e:
        main(args[:6] + ["0.016"] + args[7:] + ["--resume", "latest"])
    assert e.value.code == 0
    state = torch.load(run / "training-state.pt", weights_only=True)
    assert state["training"]["nimg"] == 16 and state["training"]["precision"] == "bfloat16"
    assert (state["training"]["config"]["z_dim"], state["training"]["config"]["w_dim"]) == (16, 32)
    assert not list(tmp_path.glob("00001-*"))  # resumed in place


def test_bf16_autocast_training_mapping_updates_w_avg():
    """The w_avg update used to fail under autocast (bf16 activations, fp32 buffer)."""
    from stylegan_unmask.training.loop import TrainConfig, build_generator

    G = build_generator(TrainConfig(data="", outdir="", z_dim=32, w_dim=32, channel_base=256, channel_max=16), 16)
    G.train()
    before = G.mapping.w_avg.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(torch.randn(4, 32), None, noise_mode="random")
    img.float().mean().backward()
    assert G.mapping.w_avg.dtype == torch.float32 and not torch.equal(G.mapping.w_avg, before)


def test_network_file_is_loaded_safely(tmp_path):
    """Our network files load with weights_only=True: a file carrying code is refused, nothing runs."""
    from stylegan_unmask.checkpoints import load_generator

    sentinel = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    bad = {"format": "stylegan-unmask-network", "version": 1, "init_kwargs": {}, "G_ema": {}, "payload": Evil()}
    path = tmp_path / "evil.pt"
    torch.save(bad, path)
    with pytest.raises(UnsafePickleError):
        load_generator(path)
    assert not sentinel.exists()
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump({"format": "stylegan-unmask-network"}, f)
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "plain.pt")


def test_metrics_formulas():
    from stylegan_unmask.training.metrics import frechet_distance, kernel_inception_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    c = rng.normal(loc=1.0, size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) < 0.5 < frechet_distance(a, c)
    assert frechet_distance(a, c) == pytest.approx(8.0, rel=0.25)  # ||Δμ||² = 8 for unit shifts in 8 dims
    assert abs(kernel_inception_distance(a, b, subset_size=100)) < kernel_inception_distance(a, c, subset_size=100)


def test_face_share_of_real_faces_and_noise(dataset32):
    from stylegan_unmask.training.dataset import load_dataset
    from stylegan_unmask.training.metrics import face_share

    ds = load_dataset(dataset32, progress=False)
    assert face_share(ds.batch(torch.arange(len(ds)))) >= 0.9
    noise = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert face_share(noise) <= 0.2


def test_precision_modes_name_what_runs_where():
    from stylegan_unmask.training.loop import cpu_has_native_bf16, resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cpu) == (None, None)
    assert resolve_precision("mixed", cpu) == (torch.bfloat16, None)
    assert resolve_precision("mixed", cuda) == (torch.float16, None)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, torch.bfloat16)
    assert resolve_precision("auto", cuda) == (torch.float16, torch.float16)
    assert resolve_precision("auto", cpu) == ((torch.bfloat16, None) if cpu_has_native_bf16() else (None, None))
    with pytest.raises(UnmaskError, match="fp16 is for CUDA"):
        resolve_precision("fp16", cpu)


def test_mixed_precision_step_runs_g_in_bf16_and_d_in_fp32(dataset32, tmp_path, one_thread, monkeypatch):
    """One training step with G under bf16 autocast: D sees fp32 images, the losses are finite."""
    from stylegan_unmask.training.loop import Trainer

    tr = Trainer(_cfg(dataset32, tmp_path, precision="mixed"), progress=False)
    seen, g_autocast = [], []
    features = tr.D.features
    monkeypatch.setattr(tr.D, "features", lambda x: seen.append(x.dtype) or features(x))
    tr.G.synthesis.register_forward_pre_hook(
        lambda module, args: g_autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    stats = tr.train_step()
    assert g_autocast == [(True, torch.bfloat16)]
    assert seen and set(seen) == {torch.float32}
    assert np.isfinite(stats["loss_D"]) and np.isfinite(stats["loss_G"])
    assert tr.record()["g_precision"] == "bfloat16" and tr.record()["precision"] == "float32"


def test_metrics_command_draws_a_truncation_curve(dataset32, tmp_path):
    """--trunc 0,1 measures both psi on the same latents: at psi 0 every sample is the average face."""
    from click.testing import CliRunner

    from stylegan_unmask.cli import cli
    from stylegan_unmask.training.loop import Trainer

    net = Trainer(_cfg(dataset32, tmp_path), progress=False).save_snapshot(metrics=False)
    out_json, out_png = tmp_path / "curve.json", tmp_path / "curve.png"
    r = CliRunner().invoke(cli, ["metrics", "--network", str(net), "--data", str(dataset32), "--samples", "10",
                                 "--face-samples", "2", "--trunc", "0,1", "--json", str(out_json),
                                 "--plot", str(out_png), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    figures = json.loads(out_json.read_text())
    assert [f["truncation_psi"] for f in figures] == [0.0, 1.0]
    assert figures[0]["lpips_samples"] < 1e-3 < figures[1]["lpips_samples"]
    assert figures[0]["lpips_reals"] == figures[1]["lpips_reals"]  # the real faces are measured once
    assert out_png.stat().st_size > 1000 and "truncation curve ->" in r.output
    bad = CliRunner().invoke(cli, ["metrics", "--network", str(net), "--data", str(dataset32), "--trunc", "0.5,x"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
    one = CliRunner().invoke(cli, ["metrics", "--network", str(net), "--data", str(dataset32), "--plot",
                                   str(out_png)])
    assert one.exit_code == 2 and "several psi" in one.output
