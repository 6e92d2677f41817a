"""End to end: photo -> unmasked.png, with the 64-px fixture network (random weights, so no real face).

What is checked is the plumbing a user relies on: output files and sizes,
pixels away from the mask untouched, the saved latent re-rendering the
projection, --aligned with a user mask, reproducibility, and the CLI.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from stylegan_unmask.cli import cli, main  # noqa: E402
from stylegan_unmask.face.frontend import FaceOptions  # noqa: E402
from stylegan_unmask.projector import ProjectionConfig  # noqa: E402

# A real photo of a person wearing a mask (dev set), small enough to keep the test fast.
PHOTO = "masked_real/cdeb7_with_mask087.jpg"
STEPS = 50


pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def photo(dev_data_dir):
    p = dev_data_dir / PHOTO
    if not p.is_file():
        pytest.skip(f"dev photo {p} is missing")
    return p


@pytest.fixture(scope="module")
def G(ada_pkl):
    from stylegan_unmask.pipeline import get_network

    return get_network(ada_pkl, "cpu")


@pytest.fixture(scope="module")
def run(photo, G, ada_pkl, tmp_path_factory):
    """One full pipeline run, shared by the checks below."""
    from stylegan_unmask.pipeline import save_outputs, unmask

    outdir = tmp_path_factory.mktemp("project")
    result = unmask(photo, ProjectionConfig(steps=STEPS, seed=0), G=G, device="cpu", progress=False,
                    record_video=True, video_every=10)
    written = save_outputs(result, outdir)
    return result, written, outdir


def _load(path):
    from stylegan_unmask.images import load_image

    return load_image(path).pixels


def test_outputs_exist_with_the_right_sizes(run, photo):
    result, written, outdir = run
    for name in ("unmasked.png", "aligned.png", "mask.png", "projection.png", "comparison.png", "projected_w.npz"):
        assert (outdir / name).is_file(), name
    src = Image.open(photo)
    assert Image.open(outdir / "unmasked.png").size == src.size
    assert Image.open(outdir / "projection.png").size == (64, 64)
    s = result.aligned_image.shape[0]
    # The working size follows the face's size in the photo (clamped to [64, 1024]).
    assert 64 <= s <= 1024
    assert Image.open(outdir / "aligned.png").size == (s, s)
    mask = Image.open(outdir / "mask.png")
    assert mask.mode == "L" and mask.size == (s, s)
    m = np.asarray(mask)
    assert set(np.unique(m)) <= {0, 255} and 0.05 < (m == 255).mean() < 0.6
    cmp_ = Image.open(outdir / "comparison.png")
    assert cmp_.width > 3.5 * cmp_.height  # four labelled panels in a row
    assert written["video"].suffix in (".mp4", ".gif") and written["video"].stat().st_size > 1000
    assert len(result.frames) == STEPS // 10 + 1  # steps 0, 10, ..., 40 and the last
    assert not list(outdir.glob(".*.tmp"))  # no temp files left behind


def test_pixels_away_from_the_mask_are_untouched(run, photo):
    import cv2

    from stylegan_unmask.face.blend import default_feather_px

    result, _, outdir = run
    before = _load(photo)
    after = _load(outdir / "unmasked.png")
    assert before.shape == after.shape
    # Region that may change: the warped mask grown by the feather (+2 px for interpolation taps).
    tr = result.aligned.transform
    coverage, _ = tr.warp_to_source(result.mask_aligned.astype(np.float32))
    region = (coverage > 1e-3).astype(np.uint8)
    grow = int(np.ceil(default_feather_px(tr))) + 2
    region = cv2.dilate(region, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)
    assert region.mean() < 0.5
    assert np.array_equal(before[~region], after[~region])  # bit-identical away from the mask
    changed = np.any(before != after, axis=2)
    assert changed[region].mean() > 0.2  # and the masked region really was replaced


def test_latent_file_rerenders_the_projection(run, ada_pkl, tmp_path):
    _, _, outdir = run
    with np.load(outdir / "projected_w.npz") as npz:
        assert npz["w"].shape == (1, 10, 512) and npz["w"].dtype == np.float32
        meta = json.loads(str(npz["meta_json"]))
        noise_keys = [k for k in npz.files if k.startswith("noise_")]
    assert meta["steps"] == STEPS and meta["lambda_perceptual"] == 0.8 and meta["seed"] == 0
    assert meta["init"] == "avg" and meta["noise_source"] == "const" and np.isfinite(meta["final_loss"])
    assert str(ada_pkl) in meta["network"]
    assert len(noise_keys) > 0
    res = CliRunner().invoke(cli, ["generate", "--network", str(ada_pkl), "--ws", str(outdir / "projected_w.npz"),
                                   "--outdir", str(tmp_path), "--device", "cpu"]
                             + (["--force-fp32"] if meta["force_fp32"] else []))
    assert res.exit_code == 0, res.output
    rerendered = np.asarray(Image.open(tmp_path / "proj00.png"))
    projection = np.asarray(Image.open(outdir / "projection.png"))
    diff = np.abs(rerendered.astype(int) - projection.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_aligned_input_with_a_user_mask(run, G, tmp_path):
    from stylegan_unmask.pipeline import save_outputs, unmask

    result, _, outdir = run
    size = 96  # neither the working size nor the network's: resized for projection, blended at 96
    face = Image.open(outdir / "aligned.png").resize((size, size), Image.LANCZOS)
    face.save(tmp_path / "face.png")
    mask = Image.open(outdir / "mask.png").resize((size, size), Image.NEAREST)
    mask.save(tmp_path / "mask.png")
    res = unmask(tmp_path / "face.png", ProjectionConfig(steps=10),
                 FaceOptions(aligned=True, mask=tmp_path / "mask.png"), G=G, progress=False)
    assert res.is_aligned_input and res.mask_source == str(tmp_path / "mask.png")
    assert res.projection_image.shape == (64, 64, 3)
    assert res.unmasked.shape == (size, size, 3)
    written = save_outputs(res, tmp_path / "out")
    after = np.asarray(Image.open(written["unmasked.png"]).convert("RGB"))
    before = np.asarray(face)
    hidden = np.asarray(mask) > 127
    assert np.array_equal(after[~hidden], before[~hidden])
    assert np.any(after[hidden] != before[hidden])
    # A mask of the wrong size is refused, naming the file.
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "small.png")
    from stylegan_unmask.errors import UnmaskError

    with pytest.raises(UnmaskError, match="small.png"):
        unmask(tmp_path / "face.png", ProjectionConfig(steps=1), FaceOptions(aligned=True, mask=tmp_path / "small.png"),
               G=G, progress=False)


def test_user_mask_drawn_on_the_photo(run, photo, G, tmp_path):
    """A --mask for a normal photo is in photo pixels; it is warped into the aligned square."""
    from stylegan_unmask.pipeline import unmask

    result, _, _ = run
    drawn, _ = result.aligned.transform.warp_to_source(result.mask_aligned)
    Image.fromarray(drawn.astype(np.uint8) * 255).save(tmp_path / "drawn.png")
    res = unmask(photo, ProjectionConfig(steps=2), FaceOptions(mask=tmp_path / "drawn.png"), G=G, progress=False)
    a, b = res.mask_aligned, result.mask_aligned
    assert (a & b).sum() / (a | b).sum() > 0.95  # the same region, up to resampling at its edge


def test_same_seed_same_result(photo, G):
    from stylegan_unmask.pipeline import unmask

    kw = dict(G=G, device="cpu", progress=False)
    a = unmask(photo, ProjectionConfig(steps=4, init="random", seed=3), **kw)
    b = unmask(photo, ProjectionConfig(steps=4, init="random", seed=3), **kw)
    c = unmask(photo, ProjectionConfig(steps=4, init="random", seed=4), **kw)
    assert torch.equal(a.projection.w_plus, b.projection.w_plus)
    assert np.array_equal(a.unmasked, b.unmasked)
    assert not torch.equal(a.projection.w_plus, c.projection.w_plus)


def test_cli_project_end_to_end(photo, ada_pkl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["project", str(photo), "--network", str(ada_pkl), "--steps", "5",
                                   "--device", "cpu", "--quiet", "--lambda", "0.5", "--seed", "7"])
    assert res.exit_code == 0, res.output
    outdir = tmp_path / "out" / photo.stem  # the default output folder
    assert (outdir / "unmasked.png").is_file() and (outdir / "projected_w.npz").is_file()
    assert "PSNR" in res.output and f"out{os.sep}{photo.stem}" in res.output
    with np.load(outdir / "projected_w.npz") as npz:
        meta = json.loads(str(npz["meta_json"]))
    assert meta["steps"] == 5 and meta["lambda_perceptual"] == 0.5 and meta["seed"] == 7


def test_cli_refuses_to_overwrite_the_input(photo, ada_pkl, tmp_path, capsys):
    victim = tmp_path / "unmasked.png"
    Image.open(photo).save(victim)
    before = victim.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["project", str(victim), "--network", str(ada_pkl), "--steps", "1", "--outdir", str(tmp_path),
              "--device", "cpu", "--quiet"])
    assert exc.value.code == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert victim.read_bytes() == before


def test_cli_bad_photo_is_a_one_line_error(ada_pkl, tmp_path, capsys):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo\n")
    with pytest.raises(SystemExit) as exc:
        main(["project", str(bad), "--network", str(ada_pkl), "--steps", "1", "--outdir", str(tmp_path / "o")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "notes.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
