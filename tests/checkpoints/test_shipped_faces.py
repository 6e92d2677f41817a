"""The shipped face models: load with no download, make faces, unmask a photo.

`faces-128` (the default) and `faces-64` are tracked in git
(stylegan_unmask/models/), so these tests never skip for want of them; only the
photo tests need ../shared.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DEV_DATA, _require

# Measured for the shipped files (stylegan_unmask/models/README.md): CenterFace finds a face in
# every held-out-sized set of samples at psi 1.0 (and in 0 of 100 for the 64 px random-weight
# fixture). The test asserts a margin below that on 64 samples.
MIN_FACE_SHARE = 0.8
SHIPPED = {"faces-128": 128, "faces-64": 64}


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def named_G(request):
    from stylegan_unmask.checkpoints import load_generator

    return request.param, load_generator(request.param)


def test_loads_offline_from_the_package(named_G, monkeypatch, tmp_path):
    from stylegan_unmask.checkpoints import resolve_checkpoint
    from stylegan_unmask.checkpoints.registry import bundled_path, get_entry

    name, G = named_G
    monkeypatch.setenv("STYLEGAN_UNMASK_CACHE", str(tmp_path / "empty-cache"))
    path, origin = resolve_checkpoint(name)
    entry = get_entry(name)
    assert path == bundled_path(entry) and path.stat().st_size <= 10 * 2 ** 20
    assert not (tmp_path / "empty-cache").exists()  # nothing downloaded or cached
    assert G.img_resolution == SHIPPED[name] and G.crop_scale == pytest.approx(0.8)
    assert "UTKFace" in entry.licence and "non-commercial" in entry.licence
    assert G.training_record["dataset"]["images"] > 20000


def test_shipped_models_fit_the_size_budget():
    from stylegan_unmask.checkpoints.registry import REGISTRY, bundled_path

    sizes = [bundled_path(e).stat().st_size for e in REGISTRY.values() if e.bundled]
    segmenter = bundled_path(REGISTRY["faces-64"]).parent / "segmenter.pt"
    assert len(sizes) == len(SHIPPED) and sum(sizes) + segmenter.stat().st_size <= 20 * 2 ** 20


def test_the_default_is_faces_128_and_recommends_the_latent_prior():
    from stylegan_unmask.checkpoints import load_generator
    from stylegan_unmask.checkpoints.registry import DEFAULT_NETWORK

    assert DEFAULT_NETWORK == "faces-128"
    assert load_generator(DEFAULT_NETWORK).projection_defaults["w_prior"] > 0


def test_samples_look_like_faces(named_G):
    from stylegan_unmask.training.metrics import face_share, generate

    name, G = named_G
    samples = generate(G, 64, seed=1234, truncation_psi=1.0)
    assert samples.shape == (64, 3, SHIPPED[name], SHIPPED[name])
    assert face_share(samples) >= MIN_FACE_SHARE
    assert samples.std(dim=0).mean() > 0.1  # not one face repeated


def test_generate_cli(tmp_path):
    from stylegan_unmask.cli import main

    with pytest.raises(SystemExit) as e:
        main(["generate", "--network", "faces-128", "--seeds", "0-2", "--outdir", str(tmp_path)])
    assert e.value.code == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png"]


def test_unmasks_a_real_photo_with_the_default_network(tmp_path):
    from stylegan_unmask.images import load_image
    from stylegan_unmask.pipeline import ProjectionConfig, save_outputs, unmask

    photo = sorted(_require(DEV_DATA / "paired" / "prajnasb").glob("*/masked.*"))[0]
    before = load_image(photo).pixels.copy()
    result = unmask(photo, ProjectionConfig(steps=60), progress=False)  # the default network: faces-128
    assert "faces-128" in result.network_source
    assert result.projection.config.w_prior > 0  # the file's recommendation
    assert result.aligned.transform.output_size == result.aligned_image.shape[0]
    out = save_outputs(result, tmp_path / "out")
    assert {"unmasked.png", "projection.png", "projected_w.npz"} <= set(out)
    after = load_image(tmp_path / "out" / "unmasked.png").pixels
    assert after.shape == before.shape
    changed = np.any(after != before, axis=2)
    assert 0.01 < changed.mean() < 0.6  # the lower face changed, the rest did not
    assert np.array_equal(load_image(photo).pixels, before)  # the input is untouched
