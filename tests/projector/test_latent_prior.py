"""The projection's latent prior (``ProjectionConfig.w_prior``) and the network file's recommendation of it."""
from __future__ import annotations

import pytest
import torch

from stylegan_unmask.projector import ProjectionConfig, project
from stylegan_unmask.projector.loss import latent_prior
from stylegan_unmask.projector.start import map_z, w_statistics

from test_projector import SHORT, lower_face_mask, render_target


def test_prior_is_zero_at_the_average_and_about_one_for_a_random_face(G):
    w_avg, w_std = w_statistics(G, 2000, "cpu")
    at_avg = w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    assert float(latent_prior(at_avg, w_avg, w_std)) == pytest.approx(0.0, abs=1e-6)
    z = torch.randn([500, G.z_dim], generator=torch.Generator().manual_seed(3))
    assert float(latent_prior(map_z(G, z), w_avg, w_std).mean()) == pytest.approx(1.0, rel=0.15)


def test_prior_keeps_the_latent_near_its_start_the_average_face(G, vgg):
    target, mask = render_target(G, 41), lower_face_mask(64)
    w_avg, w_std = w_statistics(G, 10000, "cpu")
    distance = {}
    for weight in (0.0, 1000.0):
        config = ProjectionConfig(steps=2 * SHORT, precision="fp32", w_prior=weight)
        result = project(G, target, mask, config, progress=False, features=vgg)[0]
        assert result.config.w_prior == weight
        distance[weight] = float(latent_prior(result.w_plus[None], w_avg, w_std))
    assert distance[1000.0] < 0.2 * distance[0.0]


def test_none_takes_the_networks_recommendation_and_an_explicit_value_wins(G, monkeypatch):
    assert ProjectionConfig().w_prior is None and ProjectionConfig().prior_weight == 0.0
    monkeypatch.setattr(G, "projection_defaults", {"w_prior": 3.0}, raising=False)
    assert ProjectionConfig().for_network(G).w_prior == 3.0
    assert ProjectionConfig(w_prior=0.0).for_network(G).w_prior == 0.0
    monkeypatch.setattr(G, "projection_defaults", {}, raising=False)
    assert ProjectionConfig().for_network(G).w_prior == 0.0
    with pytest.raises(ValueError, match="w_prior"):
        ProjectionConfig(w_prior=-1.0)


def test_export_records_the_prior_and_the_loader_reads_it(tmp_path):
    from stylegan_unmask.checkpoints import load_generator
    from stylegan_unmask.checkpoints.ours import export_network, load, save
    from stylegan_unmask.checkpoints.registry import bundled_path, get_entry
    from stylegan_unmask.errors import CheckpointError

    shipped = bundled_path(get_entry("faces-64"))
    out = export_network(shipped, tmp_path / "net.pt", w_prior=2.5)
    assert load(out)["projection"] == {"w_prior": 2.5}
    assert load_generator(str(out)).projection_defaults == {"w_prior": 2.5}
    again = export_network(out, tmp_path / "again.pt")           # a re-export keeps the recommendation
    assert load(again)["projection"] == {"w_prior": 2.5}
    record = load(out)
    record["projection"] = {"w_prior": "print('hi')"}
    save(tmp_path / "bad.pt", record)
    with pytest.raises(CheckpointError, match="projection"):
        load_generator(str(tmp_path / "bad.pt"))


def test_each_sample_is_held_near_its_own_start(G, vgg):
    from stylegan_unmask.projector.start import sample_offsets

    target, mask = render_target(G, 43), lower_face_mask(64)
    config = ProjectionConfig(steps=2 * SHORT, precision="fp32", w_prior=1000.0)
    results = project(G, target, mask, config, progress=False, features=vgg, samples=2)
    _, w_std = w_statistics(G, 10000, "cpu")
    start = G.mapping.w_avg.detach().reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    starts = start + sample_offsets(G, config, 1, 2, "cpu")
    for result, own in zip(results, starts):
        assert float(latent_prior(result.w_plus[None], own, w_std)) < 0.1
    assert float(latent_prior(results[1].w_plus[None], starts[0], w_std)) > 0.3  # not pulled to the average
