"""``align`` / ``mask`` / ``eval-masks`` through click, on dev photos."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from stylegan_unmask.cli import cli

pytest.importorskip("stylegan_unmask.face.landmarks", reason="stylegan_unmask.face.landmarks (detector) not present")


@pytest.fixture(scope="module")
def photo(dev_data_dir, tmp_path_factory):
    """A masked dev photo, copied so the no-overwrite checks can use its folder."""
    d = tmp_path_factory.mktemp("photo")
    p = d / "face.jpg"
    shutil.copy(dev_data_dir / "paired" / "prajnasb" / "100" / "masked.jpg", p)
    return p


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _size(path):
    with Image.open(path) as im:
        return im.size, im.mode


def _all_row(output):
    """The fields of the overall ("all") line of an eval-masks table."""
    return next(line for line in output.splitlines() if line.startswith("all ")).split()


def _ok(r):
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def test_mask_command_writes_single_channel_mask(photo, tmp_path):
    out = tmp_path / "mask.png"
    r = _ok(_run("mask", photo, "-o", out))
    (size, mode) = _size(out)
    assert size == _size(photo)[0] and mode == "L"
    m = np.asarray(Image.open(out))
    assert set(np.unique(m)) <= {0, 255} and 0.05 < (m == 255).mean() < 0.6
    assert "masked (segment) ->" in r.output
    overlay = tmp_path / "mask_overlay.png"
    assert _size(overlay) == (_size(photo)[0], "RGB")
    poly, wider = tmp_path / "poly.png", tmp_path / "wider.png"
    _ok(_run("mask", photo, "-o", poly, "--region", "landmarks"))
    _ok(_run("mask", photo, "-o", wider, "--region", "landmarks", "--margin", "0.6"))
    assert (np.asarray(Image.open(wider)) == 255).sum() > (np.asarray(Image.open(poly)) == 255).sum()


def test_mask_follows_exif_orientation(photo, tmp_path):
    """A photo stored sideways with an EXIF rotation gets the mask of the photo as viewers show it."""
    upright = np.asarray(Image.open(photo).convert("RGB"))
    sideways = tmp_path / "sideways.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": store the pixels turned 90 degrees CCW
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(sideways, exif=exif)
    straight = tmp_path / "straight.png"
    Image.fromarray(upright).save(straight)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _ok(_run("mask", sideways, "-o", a))
    _ok(_run("mask", straight, "-o", b))
    ma, mb = np.asarray(Image.open(a)), np.asarray(Image.open(b))
    assert ma.shape == upright.shape[:2]
    assert (ma == mb).all()


def test_align_command_with_landmark_roundtrip_and_debug(photo, tmp_path):
    out, lm, dbg = tmp_path / "aligned.png", tmp_path / "lm.npy", tmp_path / "debug.jpg"
    _ok(_run("align", photo, "-o", out, "--size", 256, "--save-landmarks", lm, "--debug", dbg))
    assert _size(out) == ((256, 256), "RGB")
    assert _size(dbg)[0] == _size(photo)[0]
    debug = np.asarray(Image.open(dbg).convert("RGB"), float)
    assert np.abs(debug - np.asarray(Image.open(photo).convert("RGB"), float)).max() > 100  # something drawn
    pts = np.load(lm)
    assert pts.shape == (68, 2)
    again = tmp_path / "again.png"
    _ok(_run("align", photo, "-o", again, "--size", 256, "--landmarks", lm))
    assert np.abs(np.asarray(Image.open(again), float) - np.asarray(Image.open(out), float)).max() == 0
    boxed = tmp_path / "boxed.png"
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    _ok(_run("align", photo, "-o", boxed, "--size", 64, "--box", f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"))
    assert _size(boxed) == ((64, 64), "RGB")


def test_never_overwrites_input(photo, tmp_path):
    before = photo.read_bytes()
    _ok(_run("mask", photo, "-o", photo.with_suffix(".png")))  # fine: another file
    r = _run("align", photo, "-o", photo)
    assert r.exit_code != 0 and "refusing to overwrite" in str(r.exception)
    lm = tmp_path / "lm.npy"
    _ok(_run("align", photo, "-o", tmp_path / "x.png", "--size", 64, "--save-landmarks", lm))
    lm_before = lm.read_bytes()
    r = _run("mask", photo, "-o", lm.with_suffix(".png"), "--landmarks", lm)
    assert r.exit_code == 0
    r = _run("align", photo, "-o", tmp_path / "y.png", "--landmarks", lm, "--save-landmarks", lm)
    assert r.exit_code != 0 and "refusing to overwrite" in str(r.exception)
    r = _run("align", photo, "-o", tmp_path / "z.png", "--debug", tmp_path / "z.png")
    assert r.exit_code != 0 and "different files" in str(r.exception)
    assert photo.read_bytes() == before and lm.read_bytes() == lm_before


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
    r = _run("mask", grey, "-o", tmp_path / "m.png", "--box", "10,10,5,50")
    assert isinstance(r.exception, UnmaskError) and "--box" in str(r.exception)
    r = _run("mask", tmp_path / "missing.jpg", "-o", tmp_path / "m.png")
    assert isinstance(r.exception, UnmaskError) and "missing.jpg" in str(r.exception)


def test_main_prints_error_line(tmp_path, capsys):
    from stylegan_unmask.cli import main

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(grey)
    with pytest.raises(SystemExit) as e:
        main(["mask", str(grey), "-o", str(tmp_path / "m.png")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "grey.png" in err and "no face" in err
    assert not (tmp_path / "m.png").exists()


def test_help_shows_the_real_default_margin():
    from stylegan_unmask.face.mask import DEFAULT_MARGIN

    for command in ("mask", "eval-masks"):
        r = _ok(_run(command, "--help"))
        assert f"default: {DEFAULT_MARGIN:g}" in r.output


def test_eval_masks_on_small_paired_folder(dev_data_dir, tmp_path):
    src = dev_data_dir / "paired" / "prajnasb"
    ids = ["100", "101", "104", "32"]  # 32 is flagged: other masks pasted outside the GT
    dst = tmp_path / "paired" / "prajnasb"
    dst.mkdir(parents=True)
    lines = (src / "index.csv").read_text().splitlines()
    kept = [line for line in lines[1:] if line.split(",")[0] in ids]
    (dst / "index.csv").write_text("\n".join([lines[0]] + kept) + "\n")
    for i in ids:
        shutil.copytree(src / i, dst / i)
    csv_path = tmp_path / "res.csv"
    r = _ok(_run("eval-masks", tmp_path / "paired", "--csv", csv_path, "--backend", "dlib"))
    assert "prajnasb" in r.output and "cov_med" in r.output and "prajnasb/32" in r.output
    assert "eyes_hit" in r.output and "targets:" in r.output
    row = _all_row(r.output)
    assert row[1] == "4" and row[2] == "100.0%" and row[3] == "3"
    assert float(row[4]) >= 0.95  # median coverage of the three measured pairs
    assert "side by side" in r.output and "region segment" in r.output and "region landmarks" in r.output
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + 2 * len(ids) and rows[0].startswith("source,id,path,detected,coverage")
    assert {row.split(",")[-1] for row in rows[1:]} == {"landmarks", "segment"}
    r = _ok(_run("eval-masks", tmp_path / "paired", "--limit", 2, "--margin", "0.1", "--no-eyes"))
    assert "margin 0.1" in r.output
    row = _all_row(r.output)
    assert row[1] == "2" and row[-1] == "-"  # no eye check


def test_eval_masks_on_plain_folder(dev_data_dir, tmp_path):
    for name in ("cdeb7_0417.jpg", "cdeb7_0_0_0_copy_2.jpg"):
        shutil.copy(dev_data_dir / "masked_real" / name, tmp_path / name)
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    r = _ok(_run("eval-masks", tmp_path))
    assert "plain folder" in r.output and "cov_med" not in r.output
    row = _all_row(r.output)
    assert row[1:] == ["3", "2", "66.7%"]
    assert "failures (1)" in r.output and "blank.png" in r.output and "detection_rate MISSED" in r.output
    r = _run("eval-masks", tmp_path / "nothing-here")
    assert r.exit_code != 0


def test_align_debug_outlines_the_region_the_pipeline_uses(dev_data_dir, tmp_path):
    """--debug draws the segmented region by default and the landmark polygon with --region landmarks."""
    masked = dev_data_dir / "real_masks" / "faceMask1_ttt_196_1_2" / "masked.jpg"
    outlines = {}
    for region in ("segment", "landmarks"):
        dbg = tmp_path / f"{region}.png"
        _ok(_run("align", masked, "-o", tmp_path / f"{region}_aligned.png", "--size", 64, "--debug", dbg,
                 "--region", region))
        px = np.asarray(Image.open(dbg).convert("RGB")).astype(int)
        outlines[region] = (px[..., 0] > 200) & (px[..., 1] < 90) & (px[..., 2] < 90)  # the red outline
    assert outlines["segment"].sum() > 20 and outlines["landmarks"].sum() > 20
    assert (outlines["segment"] != outlines["landmarks"]).mean() > 0.005
