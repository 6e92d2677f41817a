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


def test_save_chosen_writes_the_picked_completion_and_its_latent(photo, ada_pkl, tmp_path):
    import shutil

    from stylegan_unmask.errors import UnmaskError
    from stylegan_unmask.images import load_image
    from stylegan_unmask.pipeline import ProjectionConfig, save_chosen, save_outputs, unmask

    result = unmask(photo, ProjectionConfig(steps=2, lambda_perceptual=0), network=ada_pkl, device="cpu",
                    samples=3, progress=False)
    out = tmp_path / "out"
    save_outputs(result, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = save_chosen(result, 2, out)
    assert set(written) == {"unmasked_chosen.png", "projected_w_chosen.npz"}
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before  # the ranked files stay
    picked = result.completions[1]
    assert np.array_equal(load_image(written["unmasked_chosen.png"]).pixels, picked.unmasked)
    assert np.array_equal(load_image(out / "unmasked_2.png").pixels, picked.unmasked)
    with np.load(written["projected_w_chosen.npz"]) as npz:
        np.testing.assert_array_equal(npz["w"][0], picked.projection.w_plus.numpy())
        assert npz["w"].shape[0] == 1
        meta = json.loads(str(npz["meta_json"]))
    assert meta["chosen_rank"] == 2 and meta["chosen_sample"] == picked.projection.sample
    assert meta["final_loss"] == pytest.approx(picked.final_loss)
    for bad in (0, 4, 1.5):
        with pytest.raises(UnmaskError, match="1..3"):
            save_chosen(result, bad, out)
    # never over an input: a photo of the user's named like the output
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(photo, own / "unmasked_chosen.png")
    kept = (own / "unmasked_chosen.png").read_bytes()
    with pytest.raises(UnmaskError, match="refusing"):
        save_chosen(result, 1, own, protect=[own / "unmasked_chosen.png"])
    assert (own / "unmasked_chosen.png").read_bytes() == kept
