"""Several completions per target (``project(..., samples=K)``) on the 64 px fixture network."""
from __future__ import annotations

import pytest
import torch

from stylegan_unmask.projector import ProjectionConfig, project
from stylegan_unmask.projector.start import SAMPLE_PSI, map_z, spread_starts

from test_projector import SHORT, lower_face_mask, render_target


def test_k_samples_per_target_target_major(G, vgg):
    targets = torch.cat([render_target(G, 31), render_target(G, 32)])
    masks = torch.cat([lower_face_mask(64), lower_face_mask(64, shift=4)])
    config = ProjectionConfig(steps=SHORT, precision="fp32")
    results = project(G, targets, masks, config, progress=False, features=vgg, samples=3)
    assert [r.sample for r in results] == [0, 1, 2, 0, 1, 2]
    assert results[0].init == "avg" and results[1].init.startswith("random face 1")
    # Sample 0 starts where a single projection starts and follows it (batched rounding apart).
    single = project(G, targets[:1], masks[:1], config, progress=False, features=vgg)[0]
    assert float((results[0].w_plus - single.w_plus).norm() / single.w_plus.norm()) < 1e-2
    # The other samples end elsewhere in W+.
    assert float((results[1].w_plus - results[0].w_plus).norm()) > 0.1 * float(results[0].w_plus.norm())


def test_spread_starts_are_seeded_truncated_random_faces(G):
    w0 = G.mapping.w_avg.detach().reshape(1, 1, -1).repeat(2, G.num_ws, 1)
    config = ProjectionConfig(seed=5)
    starts, names = spread_starts(G, config, w0, ["avg", "avg"], 3, "cpu")
    assert starts.shape == (6, G.num_ws, G.w_dim) and names[0] == names[3] == "avg"
    assert torch.equal(starts[0], w0[0]) and torch.equal(starts[3], w0[1])
    again, _ = spread_starts(G, config, w0, ["avg", "avg"], 3, "cpu")
    assert torch.equal(starts, again)
    gen = torch.Generator().manual_seed(5 + 7919)
    z = torch.randn([4, G.z_dim], generator=gen)
    w_avg = G.mapping.w_avg.reshape(1, 1, -1)
    expected = w_avg + SAMPLE_PSI * (map_z(G, z) - w_avg)
    torch.testing.assert_close(starts[1], expected[0])
    torch.testing.assert_close(starts[5], expected[3])


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_samples_must_be_a_whole_number(G, bad):
    with pytest.raises(ValueError, match="samples"):
        project(G, render_target(G, 1), lower_face_mask(64), ProjectionConfig(steps=1), progress=False, samples=bad)
