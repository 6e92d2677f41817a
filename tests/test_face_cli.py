"""``align`` / ``mask`` / ``eval-masks`` through click, on dev photos."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from stylegan_unmask.cli import cli

pytest.importorskip("stylegan_unmask.landmarks", reason="stylegan_unmask.landmarks (detector) not present")


@pytest.fixture(scope="module")
def photo(dev_data_dir, tmp_path_factory):
    """A masked dev photo, copied so the no-overwrite checks can use its folder."""
    d = tmp_path_factory.mktemp("photo")
    p = d / "face.jpg"
    shutil.copy(dev_data_dir / "paired" / "mfn" / "00001_correct" / "masked.jpg", p)
    return p


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _size(path):
    with Image.open(path) as im:
        return im.size, im.mode


def test_mask_command_writes_single_channel_mask(photo, tmp_path):
    out = tmp_path / "mask.png"
    r = _run("mask", photo, "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    (size, mode) = _size(out)
    assert size == _size(photo)[0] and mode == "L"
    m = np.asarray(Image.open(out))
    assert set(np.unique(m)) <= {0, 255} and 0.05 < (m == 255).mean() < 0.6
    wider = tmp_path / "wider.png"
    assert _run("mask", photo, "-o", wider, "--margin", "0.6").exit_code == 0
    assert (np.asarray(Image.open(wider)) == 255).sum() > (m == 255).sum()


def test_align_command_with_landmark_roundtrip_and_debug(photo, tmp_path):
    out, lm, dbg = tmp_path / "aligned.png", tmp_path / "lm.npy", tmp_path / "debug.jpg"
    r = _run("align", photo, "-o", out, "--size", 256, "--save-landmarks", lm, "--debug", dbg)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert _size(out) == ((256, 256), "RGB")
    assert _size(dbg)[0] == _size(photo)[0]
    pts = np.load(lm)
    assert pts.shape == (68, 2)
    again = tmp_path / "again.png"
    r = _run("align", photo, "-o", again, "--size", 256, "--landmarks", lm)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert np.abs(np.asarray(Image.open(again), float) - np.asarray(Image.open(out), float)).mean() < 1e-6


def test_never_overwrites_input(photo):
    before = photo.read_bytes()
    r = _run("mask", photo, "-o", photo.with_suffix(".png"))  # fine: another file
    assert r.exit_code == 0
    r = _run("align", photo, "-o", photo)
    assert r.exit_code != 0 and "refusing to overwrite" in str(r.exception)
    assert photo.read_bytes() == before


def test_bad_inputs_are_clear_errors(tmp_path):
    from stylegan_unmask.errors import NoFaceError, UnmaskError

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = _run("mask", corrupt, "-o", tmp_path / "m.png")
    assert r.exit_code != 0 and isinstance(r.exception, UnmaskError) and "corrupt.jpg" in str(r.exception)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(grey)
    r = _run("align", grey, "-o", tmp_path / "a.png")
    assert isinstance(r.exception, NoFaceError) and "grey.png" in str(r.exception)
    assert not (tmp_path / "a.png").exists()
    r = _run("mask", grey, "-o", tmp_path / "m.jpg")
    assert isinstance(r.exception, UnmaskError) and ".png" in str(r.exception)


def test_main_prints_error_line(tmp_path, capsys):
    from stylegan_unmask.cli import main

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(grey)
    with pytest.raises(SystemExit) as e:
        main(["mask", str(grey), "-o", str(tmp_path / "m.png")])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("Error: ")


def test_eval_masks_on_small_paired_folder(dev_data_dir, tmp_path):
    src = dev_data_dir / "paired" / "prajnasb"
    ids = ["100", "101", "104", "32"]  # 32 is flagged: other masks pasted outside the GT
    dst = tmp_path / "paired" / "prajnasb"
    dst.mkdir(parents=True)
    lines = (src / "index.csv").read_text().splitlines()
    (dst / "index.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",")[0] in ids]) + "\n")
    for i in ids:
        shutil.copytree(src / i, dst / i)
    csv_path = tmp_path / "res.csv"
    r = _run("eval-masks", tmp_path / "paired", "--csv", csv_path, "--backend", "dlib")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "prajnasb" in r.output and "cov_med" in r.output and "prajnasb/32" in r.output
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + len(ids)
    r = _run("eval-masks", tmp_path / "paired", "--limit", 2, "--margin", "0.1")
    assert r.exit_code == 0 and "margin 0.1" in r.output
