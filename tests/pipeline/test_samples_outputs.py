"""``project --samples N``: N completions ranked by visible loss, their files, grid, ranking and latents."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from stylegan_unmask.cli import cli  # noqa: E402

from test_pipeline import photo  # noqa: E402,F401  (the dev photo fixture)


def test_cli_samples_write_ranked_completions(photo, ada_pkl, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["project", str(photo), "--network", str(ada_pkl), "--steps", "4", "--samples",
                                   "3", "--device", "cpu", "--quiet", "--outdir", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("unmasked.png", "unmasked_1.png", "unmasked_2.png", "unmasked_3.png", "completions.png",
                 "completions.json", "projected_w.npz"):
        assert (out / name).is_file(), name
    record = json.loads((out / "completions.json").read_text())
    losses = [c["final_loss"] for c in record["completions"]]
    assert losses == sorted(losses) and [c["rank"] for c in record["completions"]] == [1, 2, 3]
    assert sorted(c["sample"] for c in record["completions"]) == [0, 1, 2]
    # unmasked.png is the best completion
    from stylegan_unmask.images import load_image

    assert np.array_equal(load_image(out / "unmasked.png").pixels, load_image(out / "unmasked_1.png").pixels)
    with np.load(out / "projected_w.npz") as npz:
        assert npz["w"].shape[0] == 3
        meta = json.loads(str(npz["meta_json"]))
    assert meta["samples"] == 3 and meta["samples_final_loss"] == pytest.approx(losses, rel=1e-6)


def test_cli_samples_and_video_are_refused_together(photo, ada_pkl, tmp_path):
    res = CliRunner().invoke(cli, ["project", str(photo), "--network", str(ada_pkl), "--steps", "2", "--samples",
                                   "2", "--save-video", "--outdir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--save-video" in res.output
