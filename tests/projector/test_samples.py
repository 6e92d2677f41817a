"""Several completions per target (``project(..., samples=K)``) on the 64 px fixture network."""
from __future__ import annotations

import pytest
import torch

from stylegan_unmask.projector import ProjectionConfig, project
from stylegan_unmask.projector.start import SAMPLE_PSI, initial_noise, map_z, sample_offsets

from test_projector import SHORT, lower_face_mask, render_target


def test_k_samples_per_target_target_major(G, vgg):
    targets = torch.cat([render_target(G, 31), render_target(G, 32)])
    masks = torch.cat([lower_face_mask(64), lower_face_mask(64, shift=4)])
    config = ProjectionConfig(steps=SHORT, precision="fp32")
    results = project(G, targets, masks, config, progress=False, features=vgg, samples=3)
    assert [r.sample for r in results] == [0, 1, 2, 0, 1, 2]
    assert results[0].init == "avg" and results[1].init == "avg, forked at step 12 toward random face 1 (seed 0)"
    # Sample 0 starts where a single projection starts and follows it (batched rounding apart).
    single = project(G, targets[:1], masks[:1], config, progress=False, features=vgg)[0]
    assert float((results[0].w_plus - single.w_plus).norm() / single.w_plus.norm()) < 1e-2
    # The other samples end elsewhere in W+.
    assert float((results[1].w_plus - results[0].w_plus).norm()) > 0.1 * float(results[0].w_plus.norm())


def test_sample_offsets_are_seeded_random_faces_offsets(G):
    config = ProjectionConfig(seed=5)
    offsets = sample_offsets(G, config, 2, 3, "cpu")
    assert offsets.shape == (6, G.num_ws, G.w_dim)
    assert not offsets[0].any() and not offsets[3].any()         # sample 0 stays where it is
    again = sample_offsets(G, config, 2, 3, "cpu")
    assert torch.equal(offsets, again)
    gen = torch.Generator().manual_seed(5 + 7919)
    z = torch.randn([4, G.z_dim], generator=gen)
    w_avg = G.mapping.w_avg.reshape(1, 1, -1)
    expected = SAMPLE_PSI * (map_z(G, z) - w_avg)
    torch.testing.assert_close(offsets[1], expected[0])
    torch.testing.assert_close(offsets[5], expected[3])


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_samples_must_be_a_whole_number(G, bad):
    with pytest.raises(ValueError, match="samples"):
        project(G, render_target(G, 1), lower_face_mask(64), ProjectionConfig(steps=1), progress=False, samples=bad)


def test_hidden_closeness_sees_only_the_hidden_region_of_each_target():
    from stylegan_unmask.projector.loss import MaskedLoss, hidden_closeness

    target, mask = torch.zeros([2, 3, 64, 64]), lower_face_mask(64, n=2)
    images = torch.rand([4, 3, 64, 64], generator=torch.Generator().manual_seed(0)) * 2 - 1
    images[1] = images[0]                                    # target 0: two identical samples
    loss = MaskedLoss(target.repeat_interleave(2, 0), mask.repeat_interleave(2, 0), samples=2)
    closeness = hidden_closeness(images, loss)
    assert torch.allclose(closeness[:2], torch.ones(2))       # exp(0)
    assert float(closeness[2]) == float(closeness[3]) < 0.5
    visible_only = images.clone()
    visible_only[3, :, :20] = -visible_only[3, :, :20]        # change only visible rows
    assert torch.allclose(hidden_closeness(visible_only, loss), closeness)
    single = MaskedLoss(target, mask)
    assert torch.equal(hidden_closeness(images[:2], single), torch.zeros(2))
    assert torch.equal(hidden_closeness(images[:2], loss.select(0)), torch.zeros(2))  # one target's view


def test_sample_spread_pushes_close_samples_apart(G, vgg):
    """Two starts of one target a hair apart in W+: with the spread term, a gradient step moves
    them further apart than the visible loss alone does; with one start the term is absent."""
    from stylegan_unmask.projector.loss import MaskedLoss
    from stylegan_unmask.projector.speed import StepFunction

    target, mask = render_target(G, 31), lower_face_mask(64)
    w = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(3)), None).detach()
    delta = torch.randn(w.shape, generator=torch.Generator().manual_seed(4)) * 1e-3
    ws = torch.cat([w, w + delta]).requires_grad_(True)
    loss = MaskedLoss(target.repeat(2, 1, 1, 1), mask.repeat(2, 1, 1, 1), features=vgg, samples=2)
    noise, _ = initial_noise(G, ProjectionConfig(), torch.Generator().manual_seed(0), torch.device("cpu"))
    separation = {}
    for spread in (0.0, 50.0):
        config = ProjectionConfig(precision="fp32", compile="off", sample_spread=spread)
        *_, (grad,) = StepFunction(G, config, torch.device("cpu"))(ws, noise, loss, [ws])
        separation[spread] = float(((grad[0] - grad[1]) * delta[0]).sum())  # > 0: descent moves them apart
    assert separation[50.0] > separation[0.0]
    alone = MaskedLoss(target, mask, features=vgg)
    for spread in (0.0, 50.0):
        config = ProjectionConfig(precision="fp32", compile="off", sample_spread=spread)
        separation[f"alone {spread}"] = StepFunction(G, config, torch.device("cpu"))(ws[:1], noise, alone, [ws])[2]
    assert torch.equal(separation["alone 0.0"], separation["alone 50.0"])
