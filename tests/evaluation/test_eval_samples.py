"""``eval-unmask --samples N``: the chosen, first-start and oracle completions and their spread, end to end.

With the 64-px random-weight fixture network and a few steps: what is tested
is the bookkeeping (the oracle is the best by the ground truth, the chosen row
is ours' usual row, bad photos are reported), not the quality.
"""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from stylegan_unmask.cli import cli  # noqa: E402
from stylegan_unmask.evaluation.run import ROW_FIELDS  # noqa: E402
from stylegan_unmask.evaluation.samples import SAMPLE_FIELDS  # noqa: E402

PAIR = "prajnasb/14"  # a small dev photo (184x274)
SAMPLES = 3

pytestmark = pytest.mark.usefixtures("two_torch_threads")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def paired(dev_data_dir, tmp_path_factory):
    """One dev pair and a copy of it whose masked photo is truncated."""
    src = dev_data_dir / "paired" / PAIR
    if not src.is_dir():
        pytest.skip(f"dev pair {src} is missing")
    root = tmp_path_factory.mktemp("paired")
    shutil.copytree(src, root / "14")
    shutil.copytree(src, root / "90_truncated")
    data = (root / "90_truncated" / "masked.jpg").read_bytes()
    (root / "90_truncated" / "masked.jpg").write_bytes(data[: len(data) // 3])
    return root


def _eval(paired, ada_pkl, out, *extra):
    return _run("eval-unmask", paired, "--network", ada_pkl, "--steps", 3, "--lambda", 0, "--samples", SAMPLES,
                "--methods", "ours,none", "--outdir", out, "--device", "cpu", "--bootstrap", 50, "--no-plots", "-q",
                *extra)


@pytest.fixture(scope="module")
def evaluated(paired, ada_pkl, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    r = _eval(paired, ada_pkl, out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out, r.output


def test_oracle_is_best_by_the_ground_truth_and_chosen_is_ours_row(evaluated):
    out, text = evaluated
    rows = _rows(out)
    assert list(rows[0]) == list(ROW_FIELDS + SAMPLE_FIELDS)
    ours = [r for r in rows if r["method"] == "ours" and r["status"] == "ok"]
    assert [r["id"] for r in ours] == ["14"]
    for r in ours:
        lp, first, oracle = float(r["lpips_mask"]), float(r["lpips_mask_first"]), float(r["lpips_mask_oracle"])
        assert oracle <= lp and oracle <= first
        assert r["samples"] == str(SAMPLES) and float(r["spread"]) > 0
        assert r["oracle_beats_first"] == ("true" if oracle < first else "false")
        info = json.loads((out / r["id"] / "eval.json").read_text())["methods"]["ours"]["info"]
        records = info["samples"]
        assert [x["rank"] for x in records] == [1, 2, 3] and sorted(x["sample"] for x in records) == [0, 1, 2]
        losses = [x["final_loss"] for x in records]
        assert losses == sorted(losses) and info["final_loss"] == losses[0]
        # the chosen one is ours' usual result, its figures the row's
        assert records[0]["lpips_mask"] == pytest.approx(lp, abs=1e-6)
        assert min(x["lpips_mask"] for x in records) == pytest.approx(oracle, abs=1e-6)
        assert next(x for x in records if x["sample"] == 0)["lpips_mask"] == pytest.approx(first, abs=1e-6)
        ours_png = np.asarray(Image.open(out / r["image"]))
        assert np.array_equal(ours_png, np.asarray(Image.open(out / r["id"] / "ours_1.png")))
        assert all((out / r["id"] / x["file"]).is_file() for x in records)
    none = [r for r in rows if r["method"] == "none"]
    assert all(r[f] == "" for r in none for f in SAMPLE_FIELDS)
    assert "oracle (best of 3 by LPIPS_m; needs the ground truth)" in text and "first start" in text


def test_a_bad_photo_is_reported_and_the_run_goes_on(evaluated):
    out, text = evaluated
    bad = [r for r in _rows(out) if r["id"] == "90_truncated"]
    assert bad and all(r["status"] == "failed" and "masked.jpg" in r["error"] for r in bad)
    assert "1 photos evaluated" in text and "1 failed" in text


def test_summary_and_page_report_the_samples(evaluated):
    out, _ = evaluated
    with open(out / "summary.csv", newline="") as f:
        summary = {(s["method"], s["metric"]): s for s in csv.DictReader(f)}
    for name in ("lpips_mask_first", "lpips_mask_oracle", "spread", "oracle_beats_first"):
        assert summary[("ours", name)]["n"] == "1"
    assert float(summary[("ours", "lpips_mask_oracle")]["mean"]) <= float(summary[("ours", "lpips_mask")]["mean"])
    page = (out / "index.html").read_text()
    for needle in ("thumb_ours_samples.jpg", "data-ours-lpips_mask_oracle", "data-ours-spread", "oracle",
                   "<th>samples</th><td>3</td>"):
        assert needle in page, needle
    with Image.open(out / "14" / "thumb_ours_samples.jpg") as im:
        assert im.width > im.height * (SAMPLES + 1)  # masked, every completion, ground truth side by side


def test_a_rerun_reuses_the_samples_and_one_sample_is_another_setting(evaluated, paired, ada_pkl):
    out, _ = evaluated
    stamp = (out / "14" / "ours.png").stat().st_mtime_ns
    r = _eval(paired, ada_pkl, out)
    assert r.exit_code == 0 and "1 reused" in r.output
    assert (out / "14" / "ours.png").stat().st_mtime_ns == stamp
    assert "oracle (best of 3" in r.output  # the reused rows still carry the sample figures
    # without --samples: ours is projected again, the columns and the section are the usual ones
    r = _run("eval-unmask", paired, "--network", ada_pkl, "--steps", 3, "--lambda", 0, "--methods", "ours,none",
             "--outdir", out, "--device", "cpu", "--bootstrap", 50, "--no-plots", "-q")
    assert r.exit_code == 0, r.output
    assert (out / "14" / "ours.png").stat().st_mtime_ns != stamp and "oracle" not in r.output
    assert list(_rows(out)[0]) == list(ROW_FIELDS)
    assert "samples" not in json.loads((out / "14" / "eval.json").read_text())["methods"]["ours"]["settings"]


def test_samples_need_ours(paired, tmp_path):
    r = _run("eval-unmask", paired, "--methods", "telea", "--samples", 2, "--outdir", tmp_path / "o", "-q")
    assert r.exit_code != 0 and "ours" in r.output + str(r.exception)
