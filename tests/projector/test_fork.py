"""The samples' fork (``projector/fork.py``): one projection per target, then K that part under the mask."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan_unmask.projector import ProjectionConfig, project
from stylegan_unmask.projector.fork import Variables

from test_projector import SHORT, lower_face_mask, render_target


def _batch_sizes(G, targets, masks, config, vgg, samples):
    """The number of images the projector renders at each step, seen through its callback."""
    sizes = []

    def callback(step, info):
        sizes.append(info.images.shape[0])

    results = project(G, targets, masks, config, progress=False, features=vgg, samples=samples, callback=callback)
    return results, sizes


def test_samples_share_the_steps_before_the_fork(G, vgg):
    targets = torch.cat([render_target(G, 51), render_target(G, 52)])
    config = ProjectionConfig(steps=SHORT, precision="fp32", compile="off", preview_every=1, sample_fork=0.4)
    results, sizes = _batch_sizes(G, targets, lower_face_mask(64, n=2), config, vgg, samples=3)
    fork = config.fork_step
    assert fork == 10 and sizes == [2] * fork + [6] * (SHORT - fork)   # the trunk costs one image per target
    assert len(results) == 6 and [r.sample for r in results] == [0, 1, 2, 0, 1, 2]
    for target in (results[:3], results[3:]):
        trunk = [r.losses["total"][:fork] for r in target]
        assert all(np.array_equal(trunk[0], t) for t in trunk[1:])      # one history until the fork
        assert not np.array_equal(target[0].losses["total"][fork:], target[1].losses["total"][fork:])
    assert not np.array_equal(results[0].losses["total"][:fork], results[3].losses["total"][:fork])


def test_fork_zero_is_independent_starts(G, vgg):
    config = ProjectionConfig(steps=SHORT // 5, precision="fp32", compile="off", preview_every=1, sample_fork=0.0)
    results, sizes = _batch_sizes(G, render_target(G, 53), lower_face_mask(64), config, vgg, samples=2)
    assert sizes == [2] * (SHORT // 5)
    assert results[0].losses["total"][0] != results[1].losses["total"][0]


def test_sample_zero_continues_the_single_projection(G, vgg):
    target, mask = render_target(G, 54), lower_face_mask(64)
    config = ProjectionConfig(steps=SHORT, precision="fp32", compile="off")
    single = project(G, target, mask, config, progress=False, features=vgg)[0]
    first = project(G, target, mask, config, progress=False, features=vgg, samples=3)[0]
    np.testing.assert_array_equal(first.losses["total"][:config.fork_step], single.losses["total"][:config.fork_step])
    assert float((first.w_plus - single.w_plus).norm() / single.w_plus.norm()) < 1e-2   # batched rounding apart


def test_forked_variables_continue_adams_optimisation():
    """Forking with zero offsets changes nothing: each copy takes the step the original would take."""
    torch.manual_seed(0)
    w0, noise = torch.randn(2, 3, 4), [torch.randn(1, 1, 4, 4)]
    config = ProjectionConfig(optimize_noise=True, lr=0.05)
    variables = Variables.create(w0, noise, config)
    for _ in range(3):
        for p in variables.params:
            p.grad = torch.sin(p.detach() * 3)
        variables.optimizer.step()
    forked = variables.fork(2, torch.zeros(4, 3, 4))
    for vs in (variables, forked):
        for p in vs.params:
            p.grad = torch.sin(p.detach() * 3)
        vs.optimizer.step()
    torch.testing.assert_close(forked.w, variables.w.repeat_interleave(2, 0), rtol=0, atol=0)
    torch.testing.assert_close(forked.noise[0], variables.noise[0].repeat_interleave(2, 0), rtol=0, atol=0)
    assert forked.w.shape == (4, 3, 4) and forked.noise[0].shape == (4, 1, 4, 4)


def test_offsets_move_each_fork(G):
    offsets = torch.zeros(2, G.num_ws, G.w_dim)
    variables = Variables.create(torch.zeros(1, G.num_ws, G.w_dim), [], ProjectionConfig())
    offsets[1] = 1.0
    forked = variables.fork(2, offsets)
    assert torch.equal(forked.w.detach(), offsets)


def test_a_run_stopped_before_the_fork_still_returns_every_sample(G, vgg):
    config = ProjectionConfig(steps=SHORT, precision="fp32", compile="off", preview_every=1)
    results = project(G, render_target(G, 55), lower_face_mask(64), config, progress=False, features=vgg,
                      samples=2, callback=lambda step, info: step == 2)
    assert len(results) == 2 and all(r.stopped_early and r.steps_run == 3 for r in results)
    assert not torch.equal(results[0].w_plus, results[1].w_plus)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sample_fork_must_be_a_share_of_the_steps(bad):
    with pytest.raises(ValueError, match="sample_fork"):
        ProjectionConfig(sample_fork=bad)
