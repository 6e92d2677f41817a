"""``eval-unmask`` and ``synth-masks`` end to end, with the 64-px fixture network and a few steps.

What is tested is the bookkeeping and the honesty of the figures (they can be
recomputed from the saved images), not the quality: the fixture network has
random weights and draws noise.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from stylegan_unmask.cli import cli  # noqa: E402
from stylegan_unmask.evaluation.metrics import METRIC_NAMES  # noqa: E402

STEPS = 3
#: The VGG perceptual term off: the projection path is the same, at a fraction of the CPU time.
FAST = ("--lambda", 0)
PAIRS = ["prajnasb/14", "prajnasb/24"]  # small dev photos (184x274, 349x367)
FACES = ["celebahq_female_031796.jpg", "celebahq_male_006930.jpg", "utkface_16_1_0_20170109213504335.jpg",
         "utkface_26_0_3_20170117153930604.jpg", "utkface_26_1_0_20170103180235712.jpg"]

pytestmark = pytest.mark.usefixtures("two_torch_threads")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _ok(r):
    assert r.exit_code == 0, r.output + repr(r.exception)


def _digest(folder: Path):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def paired(dev_data_dir, tmp_path_factory):
    """Two dev pairs, a pair whose masked photo is truncated, and a pair whose clean photo has another size."""
    root = tmp_path_factory.mktemp("paired")
    for rel in PAIRS:
        src = dev_data_dir / "paired" / rel
        if not src.is_dir():
            pytest.skip(f"dev pair {src} is missing")
        shutil.copytree(src, root / "dev" / rel.split("/")[1])
    broken = root / "dev" / "90_truncated"
    shutil.copytree(dev_data_dir / "paired" / PAIRS[0], broken)
    data = (broken / "masked.jpg").read_bytes()
    (broken / "masked.jpg").write_bytes(data[: len(data) // 3])
    odd = root / "dev" / "91_size"
    shutil.copytree(dev_data_dir / "paired" / PAIRS[0], odd)
    im = Image.open(odd / "clean.jpg")
    im.resize((im.width + 4, im.height)).save(odd / "clean.jpg")
    return root


@pytest.fixture(scope="module")
def evaluated(paired, ada_pkl, tmp_path_factory):
    before = _digest(paired)
    out = tmp_path_factory.mktemp("eval") / "out"
    r = _run("eval-unmask", paired, "--network", ada_pkl, "--steps", STEPS, "--outdir", out, "--device", "cpu",
             "--bootstrap", 200, "-q", *FAST)
    _ok(r)
    assert _digest(paired) == before, "the input folder was modified"
    return out, r.output


def _rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_method_has_every_metric_and_bad_pairs_are_reported(evaluated):
    out, text = evaluated
    rows = _rows(out)
    by = {(r["id"], r["method"]): r for r in rows}
    assert {r["method"] for r in rows} == {"ours", "telea", "ns", "none"}
    for key in ("dev/14", "dev/24"):
        for m in ("ours", "telea", "ns", "none"):
            r = by[(key, m)]
            assert r["status"] == "ok", r
            for name in METRIC_NAMES:
                assert r[name] != "", (key, m, name)
            assert float(r["seconds"]) >= 0 and r["image"] == f"{key}/{m}.png"
    trunc = by[("dev/90_truncated", "ours")]
    assert trunc["status"] == "failed" and "masked.jpg" in trunc["error"]
    size = by[("dev/91_size", "telea")]
    assert size["status"] == "failed" and "clean.jpg" in size["error"] and "pixel-aligned" in size["error"]
    assert "2 photos evaluated" in text and "2 failed" in text
    assert "median" in text and "ours" in text and "better than" in text


def test_without_samples_the_columns_and_pages_are_the_usual_ones(evaluated):
    from stylegan_unmask.evaluation.run import ROW_FIELDS

    out, text = evaluated
    with open(out / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == list(ROW_FIELDS)
    assert "oracle" not in text and "spread" not in text
    page = (out / "index.html").read_text()
    assert "_samples.jpg" not in page and "<th>samples</th>" not in page
    assert not list(out.rglob("ours_1.png"))


def test_psnr_in_gt_mask_recomputed_from_the_saved_images_matches_the_csv(evaluated, paired):
    out, _ = evaluated
    for r in _rows(out):
        if r["status"] != "ok":
            continue
        src = paired / "dev" / r["id"].split("/")[1]
        result = np.asarray(Image.open(out / r["image"]).convert("RGB"), np.float64)
        clean = np.asarray(Image.open(src / "clean.jpg").convert("RGB"), np.float64)
        gt = np.asarray(Image.open(src / "gt_mask.png").convert("L")) > 127
        assert result.shape == clean.shape  # the photo's original size
        mse = np.mean((result[gt] - clean[gt]) ** 2)
        assert abs(10 * math.log10(255 ** 2 / mse) - float(r["psnr_mask"])) < 0.05
        whole = np.mean((result - clean) ** 2)
        assert abs(10 * math.log10(255 ** 2 / whole) - float(r["psnr_full"])) < 0.05


def test_methods_differ_only_in_the_fill_of_the_same_region(evaluated, paired):
    out, _ = evaluated
    masked = np.asarray(Image.open(paired / "dev" / "14" / "masked.jpg").convert("RGB"))
    none = np.asarray(Image.open(out / "dev" / "14" / "none.png"))
    assert np.array_equal(none, masked)
    telea = np.asarray(Image.open(out / "dev" / "14" / "telea.png"))
    ours = np.asarray(Image.open(out / "dev" / "14" / "ours.png"))
    telea_changed = (telea != masked).any(axis=2)
    ours_changed = (ours != masked).any(axis=2)
    assert telea_changed.any() and ours_changed.any()
    # ours also feathers a few pixels around the region; Telea changes nothing outside it
    grown = np.asarray(Image.fromarray(telea_changed.astype(np.uint8) * 255).filter(
        __import__("PIL.ImageFilter", fromlist=["MaxFilter"]).MaxFilter(25))) > 0
    assert not (ours_changed & ~grown).any()


def test_summary_html_and_plots_are_written(evaluated):
    out, _ = evaluated
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert {(s["method"], s["metric"]) for s in summary} == {(m, n) for m in ("ours", "telea", "ns", "none")
                                                          for n in METRIC_NAMES}
    s = {(x["method"], x["metric"]): x for x in summary}
    assert s[("ours", "psnr_mask")]["n"] == "2" and s[("telea", "psnr_mask")]["ours_beats"] != ""
    page = (out / "index.html").read_text()
    for needle in ("dev/14", "dev/24", "dev/90_truncated", "sortRows", "thumb_ours.jpg", "distributions.png",
                   "<h2>Summary</h2>"):
        assert needle in page
    with Image.open(out / "plots" / "distributions.png") as im:
        assert im.format == "PNG" and im.width > 200


def test_a_rerun_reuses_results_and_a_new_method_alone_is_computed(evaluated, paired, ada_pkl):
    out, _ = evaluated
    marker = out / "dev" / "14" / "eval.json"
    ours_png = out / "dev" / "14" / "ours.png"
    stamp = ours_png.stat().st_mtime_ns
    r = _run("eval-unmask", paired, "--network", ada_pkl, "--steps", STEPS, "--outdir", out, "--device", "cpu",
             "--bootstrap", 50, "-q", *FAST)
    _ok(r)
    assert "2 reused" in r.output and ours_png.stat().st_mtime_ns == stamp
    # other projection settings: only ours is recomputed, the baselines are reused
    telea_stamp = (out / "dev" / "14" / "telea.png").stat().st_mtime_ns
    r = _run("eval-unmask", paired, "--network", ada_pkl, "--steps", STEPS + 1, "--outdir", out,
             "--device", "cpu", "--bootstrap", 50, "--limit", 1, "--methods", "ours,telea", "-q", *FAST)
    _ok(r)
    assert ours_png.stat().st_mtime_ns != stamp
    assert (out / "dev" / "14" / "telea.png").stat().st_mtime_ns == telea_stamp
    entry = json.loads(marker.read_text())["methods"]
    assert entry["ours"]["settings"]["steps"] == STEPS + 1 and "none" in entry
    # a changed input file is evaluated again
    none_png = out / "dev" / "14" / "none.png"
    none_stamp = none_png.stat().st_mtime_ns
    gt = paired / "dev" / "14" / "gt_mask.png"
    st = gt.stat()
    os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = _run("eval-unmask", paired, "--network", ada_pkl, "--steps", STEPS + 1, "--outdir", out, "--device", "cpu",
             "--bootstrap", 50, "--limit", 1, "--methods", "ours,none", "-q", *FAST)
    _ok(r)
    assert "1 photos evaluated" in r.output and none_png.stat().st_mtime_ns != none_stamp


def test_synth_masks_then_eval_on_them(dev_data_dir, ada_pkl, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in FACES:
        src = dev_data_dir / "faces" / name
        if not src.is_file():
            pytest.skip(f"dev face {src} is missing")
        im = Image.open(src).convert("RGB")
        im.thumbnail((320, 320), Image.LANCZOS)  # faster; the drawing is size-independent
        im.save(faces / name, quality=95)
    (faces / "notes.jpg").write_text("not an image")
    before = _digest(faces)
    out = tmp_path / "synth"
    r = _run("synth-masks", faces, out, "--seed", 3, "-q")
    _ok(r)
    assert _digest(faces) == before
    assert f"{len(FACES)} masked faces" in r.output and "1 failed" in r.output and "notes.jpg" in r.output
    assert "realism check" in r.output
    with open(out / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert [row["id"] for row in index] == sorted(Path(n).stem for n in FACES)
    assert all(row["style"] in ("surgical", "cloth", "kn95", "black") for row in index)
    for row in index:
        d = out / row["id"]
        masked = np.asarray(Image.open(d / "masked.png"))
        clean = np.asarray(Image.open(d / "clean.png"))
        gt = np.asarray(Image.open(d / "gt_mask.png")) > 127
        assert np.array_equal(masked[~gt], clean[~gt]) and (masked[gt] != clean[gt]).any()
    first = _digest(out)
    _ok(_run("synth-masks", faces, out, "--seed", 3, "-q", "--no-check"))
    assert {k: v for k, v in _digest(out).items() if k != "index.csv"} == {
        k: v for k, v in first.items() if k != "index.csv"}  # the same seed draws the same masks

    ev = tmp_path / "ev"
    r = _run("eval-unmask", out, "--network", ada_pkl, "--steps", 2, "--limit", 2, "--outdir", ev,
             "--device", "cpu", "--bootstrap", 50, "--no-plots", "-q", *FAST)
    _ok(r)
    rows = _rows(ev)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows), rows


def test_our_detector_finds_the_synthetic_masked_faces(dev_data_dir, tmp_path):
    """Realism check on the dev faces (every 5th face, 66 of 328, for time): >= 95 % must still be detected."""
    from stylegan_unmask.evaluation.synth_masks import synth_folder

    faces = dev_data_dir / "faces"
    subset = tmp_path / "faces"
    subset.mkdir()
    names = sorted(p.name for p in faces.glob("*.jpg"))[::5]
    for n in names:
        (subset / n).symlink_to(faces / n)
    report = synth_folder(subset, tmp_path / "out", seed=0, progress=False)
    assert len(report.ok) >= 0.95 * len(names), [r.error for r in report.failed]
    assert report.detection_rate >= 0.95, [r.id for r in report.ok if not r.detected]
