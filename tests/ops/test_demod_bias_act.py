"""demod_bias_act (the lean synthesis-layer tail) against its separate-op reference.

The fused node must compute the same function as the six PyTorch ops it
replaces: forward bit for bit in float32 (same operations in the same order),
gradients to float rounding, including where the clamp is active, for every
optional argument left out, in channels-last memory, and in bfloat16.
"""
from __future__ import annotations

import pytest
import torch

from torch_utils.ops.demod_bias_act import demod_bias_act, demod_bias_act_ref


def _inputs(n=2, c=5, h=6, w=7, dtype=torch.float32, noise_shape="map", seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, w, generator=g) * scale).to(dtype)
    demod = (torch.rand(n, c, generator=g) + 0.5).to(dtype)
    noise = {"map": torch.randn(n, 1, h, w, generator=g), "shared": torch.randn(1, 1, h, w, generator=g),
             "plane": torch.randn(h, w, generator=g)}[noise_shape].to(dtype)
    bias = torch.randn(c, generator=g).to(dtype)
    return x, demod, noise, bias


def _run(fn, x, demod, noise, bias, **kw):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, demod, noise, bias)]
    y = fn(*leaves, **kw)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    (y * dy).sum().backward()
    return y.detach(), [t.grad if t is not None else None for t in leaves]


def _assert_grads_close(got, want, rtol, atol):
    for name, g, r in zip(("x", "demod", "noise", "bias"), got, want):
        if r is None:
            assert g is None, name
            continue
        assert g is not None, f"no gradient for {name}"
        assert g.shape == r.shape and g.dtype == r.dtype, name
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("noise_shape", ["map", "shared", "plane"])
@pytest.mark.parametrize("gain,clamp", [(1.0, None), (2 ** 0.5, None), (2 ** 0.5, 256.0), (2 ** 0.5 * 0.7, 1.0)])
def test_matches_reference(noise_shape, gain, clamp):
    args = _inputs(noise_shape=noise_shape, scale=2.0)
    y, grads = _run(demod_bias_act, *args, alpha=0.2, gain=gain, clamp=clamp)
    y_ref, grads_ref = _run(demod_bias_act_ref, *args, alpha=0.2, gain=gain, clamp=clamp)
    assert torch.equal(y, y_ref)
    _assert_grads_close(grads, grads_ref, rtol=1e-5, atol=1e-6)


def test_clamp_is_active_and_blocks_gradients():
    x, demod, noise, bias = _inputs(scale=4.0)
    y, grads = _run(demod_bias_act, x, demod, noise, bias, gain=1.0, clamp=0.5)
    assert (y.abs() == 0.5).float().mean() > 0.3, "test inputs should saturate the clamp"
    clamped = y.abs() >= 0.5
    assert torch.all(grads[0][clamped] == 0)
    _, grads_ref = _run(demod_bias_act_ref, x, demod, noise, bias, gain=1.0, clamp=0.5)
    _assert_grads_close(grads, grads_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("drop", ["demod", "noise", "bias", "all"])
def test_optional_arguments(drop):
    x, demod, noise, bias = _inputs()
    if drop in ("demod", "all"):
        demod = None
    if drop in ("noise", "all"):
        noise = None
    if drop in ("bias", "all"):
        bias = None
    y, grads = _run(demod_bias_act, x, demod, noise, bias, gain=1.5, clamp=2.0)
    y_ref, grads_ref = _run(demod_bias_act_ref, x, demod, noise, bias, gain=1.5, clamp=2.0)
    assert torch.equal(y, y_ref)
    _assert_grads_close(grads, grads_ref, rtol=1e-5, atol=1e-6)


def test_does_not_modify_its_inputs():
    args = _inputs()
    copies = [t.clone() for t in args]
    _run(demod_bias_act, *args, gain=1.4, clamp=1.0)
    for original, copy in zip(args, copies):
        assert torch.equal(original, copy)
    x = args[0].clone()
    y = demod_bias_act(x, None, None, None, gain=1.0)  # no demod: must not write into x either
    assert torch.equal(x, args[0]) and y.data_ptr() != x.data_ptr()


def test_channels_last_input():
    x, demod, noise, bias = _inputs(c=8, h=5, w=5)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    y, grads = _run(demod_bias_act, x_cl, demod, noise, bias, gain=2 ** 0.5, clamp=256.0)
    y_ref, grads_ref = _run(demod_bias_act_ref, x, demod, noise, bias, gain=2 ** 0.5, clamp=256.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    _assert_grads_close([g.contiguous() if g is not None else None for g in grads], grads_ref, rtol=1e-5, atol=1e-6)


def test_bfloat16():
    args = _inputs(dtype=torch.bfloat16, scale=2.0)
    y, grads = _run(demod_bias_act, *args, gain=2 ** 0.5, clamp=256.0)
    y_ref, grads_ref = _run(demod_bias_act_ref, *args, gain=2 ** 0.5, clamp=256.0)
    assert y.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)
    torch.testing.assert_close(y, y_ref, rtol=1e-2, atol=1e-2)
    _assert_grads_close(grads, grads_ref, rtol=2e-2, atol=2e-2)


def test_bfloat16_with_active_clamp():
    """Values that round exactly onto the clamp get no gradient here (as in NVIDIA's bias_act kernel),
    while ``Tensor.clamp`` passes it; away from that measure-zero boundary the two agree."""
    args = _inputs(dtype=torch.bfloat16, scale=2.0)
    y, grads = _run(demod_bias_act, *args, gain=2 ** 0.5, clamp=1.5)
    y_ref, grads_ref = _run(demod_bias_act_ref, *args, gain=2 ** 0.5, clamp=1.5)
    torch.testing.assert_close(y, y_ref, rtol=1e-2, atol=1e-2)
    inside = y_ref.abs() < 1.5
    assert inside.float().mean() > 0.5 and (~inside).any()
    torch.testing.assert_close(grads[0][inside], grads_ref[0][inside], rtol=2e-2, atol=2e-2)
    assert torch.all(grads[0][~inside] == 0)


def test_float64_gradcheck():
    x, demod, noise, bias = (t.double().requires_grad_(True) for t in _inputs(n=1, c=2, h=3, w=3, scale=0.5))
    fn = lambda *a: demod_bias_act(*a, alpha=0.2, gain=1.3, clamp=10.0)  # noqa: E731 (away from kinks)
    assert torch.autograd.gradcheck(fn, (x, demod, noise, bias))


def test_rejects_bad_arguments():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        demod_bias_act(x, None, None, None)
    with pytest.raises(ValueError, match="gain must be > 0"):
        demod_bias_act(torch.zeros(1, 1, 2, 2), None, None, None, gain=0.0)
