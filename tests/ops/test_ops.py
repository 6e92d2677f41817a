"""bias_act and upfirdn2d against the official reference outputs, plus gradient checks.

Three implementations are exercised:

* ``ref``: the PyTorch reference (what CPU users run) against all 349 golden
  cases of ``ops-golden.npz``, and gradgradcheck in float64;
* ``emulated``: the plugin code path (autograd Functions, layout handling,
  separable two-pass split, gain folding, adjoint backward) on the CPU with the
  compiled kernel replaced by a Python stand-in with the same call signature, so
  CI without a GPU still checks everything around the kernel;
* ``cuda`` (marked ``cuda``, skipped without a GPU): the real fused kernels,
  against the goldens and against the reference on random inputs, to second order.
"""
from __future__ import annotations

import itertools
import json
import os
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import FIXTURES

from torch_utils import custom_ops
from torch_utils.ops import bias_act as bias_act_mod
from torch_utils.ops import upfirdn2d as upfirdn2d_mod


GOLDEN = FIXTURES / "ops-golden.npz"
HAS_CUDA = torch.cuda.is_available()
needs_cuda = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")]


def _golden_cases() -> list[dict]:
    if not GOLDEN.exists():
        return []
    with np.load(GOLDEN) as data:
        return [json.loads(str(s)) for s in data["cases_json"]]


CASES = _golden_cases()
SETUP_FILTER_CASES = [c for c in CASES if c["op"] == "setup_filter"]
OP_CASES = [c for c in CASES if c["op"] != "setup_filter"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: intra-op threads only add overhead, and on a busy
    2-core machine their spin-waiting makes each conv take tens of milliseconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    path = fixtures_dir / "ops-golden.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _ids(cases):
    return [c["id"] for c in cases] or ["ops-golden.npz-absent"]


def _params(cases):
    return cases or [None]


def assert_close(actual, expected, what: str, atol: float, rtol: float):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (
        f"{what}: max |diff| {err.max():.3g} (at value {expected.flat[worst]:.6g}, allowed {bound.flat[worst]:.3g})")


# --------------------------------------------------------------------------- emulated kernels

class EmulatedBiasActKernel:
    """Stands in for the compiled bias_act module: same arguments, same three modes,
    same layout checks; derivatives of the activation come from autograd."""

    def __init__(self):
        self.calls = Counter()
        self.by_idx = {s.cuda_idx: s for s in bias_act_mod.activation_funcs.values()}

    def bias_act(self, x, b, xref, aux, mode, dim, act, alpha, gain, clamp):
        self.calls[mode] += 1
        for name, t in (("xref", xref), ("aux", aux)):
            if t is not None:
                assert t.shape == x.shape and t.stride() == x.stride(), f"{name} layout differs from x"
        spec = self.by_idx[act]
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        if mode == 0:
            with torch.no_grad():
                return bias_act_mod._bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
        assert xref is not None or (act == 0 and clamp < 0), "kernel needs xref for this configuration"
        s = torch.zeros_like(x) if xref is None else xref
        if b is not None and xref is not None:
            s = s + b.reshape(shape)
        with torch.enable_grad():
            s = s.detach().requires_grad_(True)
            a = spec.ref(s, alpha) * gain
            (d1,) = torch.autograd.grad(a.sum(), s, create_graph=True)
            d2 = torch.autograd.grad(d1.sum(), s, allow_unused=True)[0] if d1.requires_grad else None
        d1 = d1.detach()
        d2 = torch.zeros_like(s) if d2 is None else d2.detach()
        keep = torch.ones_like(x) if clamp < 0 else (a.detach().abs() <= clamp).to(x.dtype)
        out = x * d1 * keep if mode == 1 else x * aux * d2 * keep
        return torch.empty_like(x).copy_(out)  # same strides as x, like the kernel


class EmulatedUpfirdn2dKernel:
    """Stands in for the compiled upfirdn2d module (2-D filter, gain already folded in)."""

    def __init__(self):
        self.calls = 0

    def upfirdn2d(self, x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter):
        self.calls += 1
        assert f.ndim == 2 and f.is_contiguous()
        assert f.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
        with torch.no_grad():
            return upfirdn2d_mod._upfirdn2d_ref(x, f, (up_x, up_y), (down_x, down_y),
                                               (pad_x0, pad_x1, pad_y0, pad_y1), flip_filter, 1)


@pytest.fixture
def emulated(monkeypatch):
    """Route CPU tensors through the plugin code path with emulated kernels."""
    kernels = {"bias_act": EmulatedBiasActKernel(), "upfirdn2d": EmulatedUpfirdn2dKernel()}
    monkeypatch.delenv(custom_ops.OPS_ENV, raising=False)
    monkeypatch.setattr(custom_ops, "get_plugin", lambda spec, warn=True: kernels[spec.name])
    monkeypatch.setattr(bias_act_mod, "_plugin_applicable", lambda x: True)
    monkeypatch.setattr(upfirdn2d_mod, "_plugin_applicable", lambda x: True)
    return kernels


@pytest.fixture
def cuda_plugins():
    if os.environ.get(custom_ops.OPS_ENV, "").lower() in ("ref", "reference"):
        pytest.skip(f"{custom_ops.OPS_ENV}=ref disables the plugins")
    for mod in (bias_act_mod, upfirdn2d_mod):
        status = mod.plugin_status()
        assert status == "ok", f"{mod.__name__}: CUDA plugin not usable on this GPU machine: {status}"


# --------------------------------------------------------------------------- goldens

@pytest.mark.parametrize("case", _params(SETUP_FILTER_CASES), ids=_ids(SETUP_FILTER_CASES))
def test_setup_filter_golden(case, golden):
    kwargs = {k: v for k, v in case.items() if k not in ("id", "op")}
    out = upfirdn2d_mod.setup_filter(**kwargs)
    assert out.dtype == torch.float32
    assert_close(out.numpy(), golden[case["id"] + "_out"], case["id"], atol=1e-6, rtol=1e-6)


def run_golden_case(case: dict, golden: dict, impl: str, device: str):
    """Forward and backward (upstream `<id>_dy`) of one golden case; returns y, dx, db."""
    cid, op = case["id"], case["op"]
    x = torch.tensor(golden[case["x"]], device=device, requires_grad=True)
    b = None
    if op == "bias_act":
        if case["b"] is not None:
            b = torch.tensor(golden[case["b"]], device=device, requires_grad=True)
        y = bias_act_mod.bias_act(x, b, dim=case["dim"], act=case["act"], alpha=case["alpha"], gain=case["gain"],
                                  clamp=case["clamp"], impl=impl)
    else:
        f = None if case["f"] is None else torch.tensor(golden[case["f"]], device=device)
        kw = dict(padding=case["padding"], flip_filter=case["flip_filter"], gain=case["gain"], impl=impl)
        if op == "upfirdn2d":
            y = upfirdn2d_mod.upfirdn2d(x, f, up=case["up"], down=case["down"], **kw)
        elif op == "upsample2d":
            y = upfirdn2d_mod.upsample2d(x, f, up=case["up"], **kw)
        elif op == "downsample2d":
            y = upfirdn2d_mod.downsample2d(x, f, down=case["down"], **kw)
        elif op == "filter2d":
            y = upfirdn2d_mod.filter2d(x, f, **kw)
        else:
            raise AssertionError(f"unknown op {op} in {cid}")
    dy = torch.tensor(golden[cid + "_dy"], device=device)
    (y * dy).sum().backward()
    return (y.detach().cpu().numpy(), x.grad.cpu().numpy(), None if b is None else b.grad.cpu().numpy())


def check_golden_case(case, golden, impl, device, atol, rtol):
    cid = case["id"]
    y, dx, db = run_golden_case(case, golden, impl, device)
    assert_close(y, golden[cid + "_y"], f"{cid} y", atol, rtol)
    assert_close(dx, golden[cid + "_dx"], f"{cid} dx", atol, rtol)
    if case["op"] == "bias_act" and case["b"] is not None:
        assert_close(db, golden[cid + "_db"], f"{cid} db", atol, rtol)


# Observed: the reference reproduces every golden bit-exactly; the bound leaves
# room for float32 reassociation only (1e-5 absolute, 1e-6 relative for the
# entries up to ~1400 in the clamp cases).
@pytest.mark.parametrize("case", _params(OP_CASES), ids=_ids(OP_CASES))
def test_golden_ref(case, golden):
    check_golden_case(case, golden, "ref", "cpu", atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("case", _params(OP_CASES), ids=_ids(OP_CASES))
def test_golden_emulated_plugin_path(case, golden, emulated):
    check_golden_case(case, golden, "cuda", "cpu", atol=1e-5, rtol=1e-6)
    if case["op"] == "bias_act":
        assert emulated["bias_act"].calls[0] == 1 and emulated["bias_act"].calls[1] >= 1
    else:
        assert emulated["upfirdn2d"].calls >= 2  # forward + adjoint backward


@pytest.mark.parametrize("case", _params(OP_CASES), ids=_ids(OP_CASES))
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_golden_cuda_plugin(case, golden, cuda_plugins):
    # GPU transcendental functions and summation order differ from the CPU by a few ulp.
    check_golden_case(case, golden, "cuda", "cuda", atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- reference: gradients

ACTS = list(bias_act_mod.activation_funcs)


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_ref_gradgradcheck(act):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64).requires_grad_(True)
    b3 = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(True)
    b4 = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_(True)
    # clamp 1.5 bites on part of the values, none of which sits within eps of the boundary
    for b, kwargs in ((b3, dict()), (b3, dict(gain=0.7, clamp=1.5)), (b4, dict(alpha=0.3, dim=2))):
        fn = lambda x_, b_: bias_act_mod.bias_act(x_, b_, act=act, impl="ref", **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


UPFIRDN_GRAD_CONFIGS = [
    # (filter kind, up, down, padding, flip, gain)
    ("sep4", 2, 1, [2, 1], False, 4),
    ("2d3x5", 1, 2, [1, 2, 0, 3], True, 1),
    ("2d4x4", [1, 2], [2, 1], [-1, 2, 1, -2], False, 1),
    ("none", 2, 2, 1, True, 2),
    ("sep8", 1, 1, [3, 4], False, 1),
]


def _filter(kind: str, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(7)
    if kind == "none":
        return None
    if kind.startswith("sep"):
        return torch.rand(int(kind[3:]), generator=gen, dtype=dtype).add(0.2).to(device)
    h, w = (int(v) for v in kind[2:].split("x"))
    return torch.randn(h, w, generator=gen, dtype=dtype).to(device)


@pytest.mark.parametrize("cfg", UPFIRDN_GRAD_CONFIGS, ids=[c[0] for c in UPFIRDN_GRAD_CONFIGS])
def test_upfirdn2d_ref_gradgradcheck(cfg):
    kind, up, down, padding, flip, gain = cfg
    f = _filter(kind)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    fn = lambda x_: upfirdn2d_mod.upfirdn2d(x_, f, up=up, down=down, padding=padding, flip_filter=flip,  # noqa: E731
                                             gain=gain, impl="ref")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_ref_filter_gradient():
    """The reference path is differentiable w.r.t. the filter too (used if a filter is learned)."""
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    f = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f_: upfirdn2d_mod.upfirdn2d(x, f_, up=2, padding=1, impl="ref"), (f,))


# --------------------------------------------------------------------------- plugin code path (emulated)

def _bias_act_configs():
    """(act, dim, with_bias, alpha, gain, clamp) covering defaults, dims and clamping."""
    out = []
    for act in ACTS:
        out.append((act, 1, True, None, None, None))
        out.append((act, 2, True, 0.3, 0.75, 0.8))
        out.append((act, -1, False, None, None, 1.0))
    return out


def _second_order(fn, x, b, seed=0):
    """y, dL/dx, dL/db and the gradient of <dL/dx, S> w.r.t. x, b for L = <y, R>."""
    gen = torch.Generator(device=x.device.type).manual_seed(seed)
    y = fn(x, b)
    r = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
    inputs = [x] if b is None else [x, b]
    grads = torch.autograd.grad((y * r).sum(), inputs, create_graph=True)
    s = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    if grads[0].requires_grad:
        second = torch.autograd.grad((grads[0] * s).sum(), inputs, allow_unused=True)
    else:  # dx does not depend on x or b (linear, unclamped)
        second = [None] * len(inputs)
    second = [torch.zeros_like(t) if g is None else g for g, t in zip(second, inputs)]
    return [y.detach(), *[g.detach() for g in grads], *second]


@pytest.mark.parametrize("cfg", _bias_act_configs(), ids=lambda c: "-".join(str(v) for v in c))
def test_bias_act_emulated_plugin_matches_ref(cfg, emulated):
    act, dim, with_bias, alpha, gain, clamp = cfg
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(x.shape[dim], generator=gen, dtype=torch.float64).requires_grad_(True) if with_bias else None

    def run(impl):
        return _second_order(lambda x_, b_: bias_act_mod.bias_act(x_, b_, dim=dim, act=act, alpha=alpha, gain=gain,
                                                                  clamp=clamp, impl=impl), x, b)

    for got, want in zip(run("cuda"), run("ref")):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    calls = emulated["bias_act"].calls
    assert calls[0] >= 1 and calls[1] >= 1
    assert calls[2] >= (1 if bias_act_mod.activation_funcs[act].has_2nd_grad else 0)


@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish"])
def test_bias_act_emulated_plugin_gradgradcheck(act, emulated):
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64).requires_grad_(True)
    fn = lambda x_, b_: bias_act_mod.bias_act(x_, b_, act=act, clamp=1.5, impl="cuda")  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_emulated_plugin_layouts(emulated):
    """channels_last input and an expanded (stride-0) upstream gradient."""
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_(True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = bias_act_mod.bias_act(x, b, act="swish", clamp=1.0, impl="cuda")
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()  # upstream gradient is an expanded scalar
    x_ref = x.detach().contiguous().requires_grad_(True)
    b_ref = b.detach().clone().requires_grad_(True)
    bias_act_mod.bias_act(x_ref, b_ref, act="swish", clamp=1.0, impl="ref").sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(b.grad, b_ref.grad)


def test_bias_act_plugin_third_order_is_refused(emulated):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = bias_act_mod.bias_act(x, act="tanh", impl="cuda")
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gg.sum(), x)


def _upfirdn_grid():
    filters = ["none", "sep4", "sep8", "2d3x5", "2d4x4"]
    ups = [1, 2, [1, 3]]
    downs = [1, 2, [3, 1]]
    pads = [0, [2, 1], [1, -2, 0, 3]]
    out = []
    for i, (kind, up, down, pad) in enumerate(itertools.product(filters, ups, downs, pads)):
        out.append((kind, up, down, pad, bool(i % 2), [1, 4][(i // 2) % 2]))
    return out


UPFIRDN_GRID = _upfirdn_grid()
UPFIRDN_GRID_IDS = ["{}-up{}-down{}-pad{}-flip{}-gain{}".format(*c).replace(" ", "") for c in UPFIRDN_GRID]


def _upfirdn_compare(cfg, device, dtype, atol, rtol, second_order):
    kind, up, down, pad, flip, gain = cfg
    f = _filter(kind, dtype=torch.float32, device=device)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)

    def run(impl):
        xx = x.clone().requires_grad_(True)
        y = upfirdn2d_mod.upfirdn2d(xx, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl=impl)
        r = torch.randn(y.shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64).to(device, dtype)
        (dx,) = torch.autograd.grad((y * r).sum(), xx, create_graph=second_order)
        out = [y.detach(), dx.detach()]
        if second_order:  # d/dr of <dx, s>: exercises the backward of the backward
            s = torch.randn(x.shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64).to(device, dtype)
            rr = r.clone().requires_grad_(True)
            (dx2,) = torch.autograd.grad((y * rr).sum(), xx, create_graph=True)
            (dr,) = torch.autograd.grad((dx2 * s).sum(), rr)
            out.append(dr)
        return out

    for name, got, want in zip(["y", "dx", "d2"], run("cuda"), run("ref")):
        scale = max(1.0, want.abs().max().item())  # sums of products cancel: compare relative to the largest value
        torch.testing.assert_close(got.float(), want.float(), atol=atol * scale, rtol=rtol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("cfg", UPFIRDN_GRID, ids=UPFIRDN_GRID_IDS)
def test_upfirdn2d_emulated_plugin_matches_ref(cfg, emulated):
    _upfirdn_compare(cfg, "cpu", torch.float64, atol=1e-10, rtol=1e-10, second_order=True)
    assert emulated["upfirdn2d"].calls >= 2


def test_upfirdn2d_emulated_plugin_gradgradcheck(emulated):
    f = _filter("2d3x5")
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64).requires_grad_(True)
    fn = lambda x_: upfirdn2d_mod.upfirdn2d(x_, f, up=[2, 1], down=[1, 2], padding=[1, 0, 2, -1],  # noqa: E731
                                             flip_filter=True, gain=3, impl="cuda")
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_learned_filter_uses_reference(emulated):
    """A filter that requires grad is handled by the reference path (the kernel has no filter gradient)."""
    x = torch.randn(1, 2, 5, 6)
    f = torch.randn(4, 4, requires_grad=True)
    upfirdn2d_mod.upfirdn2d(x, f, up=2, impl="cuda").sum().backward()
    assert f.grad is not None and emulated["upfirdn2d"].calls == 0


# --------------------------------------------------------------------------- argument handling

def test_bias_act_argument_errors():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act_mod.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="b has 4 elements"):
        bias_act_mod.bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match="out of range"):
        bias_act_mod.bias_act(x, torch.zeros(3), dim=3)
    with pytest.raises(ValueError, match="impl"):
        bias_act_mod.bias_act(x, impl="triton")


def test_bias_act_defaults_match_nvidia_convention():
    funcs = bias_act_mod.activation_funcs
    assert funcs["lrelu"].def_alpha == 0.2
    assert {k for k, s in funcs.items() if s.def_gain != 1} == {"relu", "lrelu", "swish"}
    x = torch.tensor([-300.0, -1.0, 2.0, 300.0])
    y = bias_act_mod.bias_act(x, act="lrelu", clamp=256, impl="ref")
    torch.testing.assert_close(y, torch.tensor([-60 * 2**0.5, -0.2 * 2**0.5, 2 * 2**0.5, 256.0]))


def test_upfirdn2d_argument_errors():
    x = torch.randn(1, 1, 4, 4)
    f = upfirdn2d_mod.setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match="4-D"):
        upfirdn2d_mod.upfirdn2d(x[0], f)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d_mod.upfirdn2d(x, f, padding=[1, 2, 3])
    with pytest.raises(ValueError, match=">= 1"):
        upfirdn2d_mod.upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match="smaller than"):
        upfirdn2d_mod.upfirdn2d(x, f, padding=-2)
    with pytest.raises(ValueError, match="separable"):
        upfirdn2d_mod.setup_filter([[1, 2], [3, 4]], separable=True)


def test_upsample_downsample_shapes_and_dc_gain():
    """A constant image stays constant (away from the border) through the resamplers."""
    f = upfirdn2d_mod.setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 2, 8, 8)
    up = upfirdn2d_mod.upsample2d(x, f, impl="ref")
    down = upfirdn2d_mod.downsample2d(x, f, impl="ref")
    same = upfirdn2d_mod.filter2d(x, f, impl="ref")
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4) and same.shape == (1, 2, 8, 8)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))
    torch.testing.assert_close(same[..., 2:-2, 2:-2], torch.ones_like(same[..., 2:-2, 2:-2]))


# --------------------------------------------------------------------------- real CUDA plugin

CUDA_DTYPES = {"float32": (torch.float32, 2e-5, 2e-5), "float64": (torch.float64, 1e-12, 1e-12),
               "float16": (torch.float16, 2e-3, 2e-3), "bfloat16": (torch.bfloat16, 2e-2, 2e-2)}


@pytest.mark.parametrize("dtype_name", list(CUDA_DTYPES))
@pytest.mark.parametrize("cfg", _bias_act_configs(), ids=lambda c: "-".join(str(v) for v in c))
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_bias_act_cuda_matches_ref(cfg, dtype_name, cuda_plugins):
    act, dim, with_bias, alpha, gain, clamp = cfg
    dtype, atol, rtol = CUDA_DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(21)
    x64 = torch.randn(3, 16, 9, 7, generator=gen, dtype=torch.float64) * 2
    b64 = torch.randn(x64.shape[dim], generator=gen, dtype=torch.float64) if with_bias else None
    low_precision = dtype in (torch.float16, torch.bfloat16)

    for layout in ("contiguous", "channels_last"):
        x = x64.to("cuda", dtype)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        b = None if b64 is None else b64.to("cuda", dtype).requires_grad_(True)

        def fn(impl, x_=x, b_=b):
            if low_precision and impl == "ref":  # reference in float32, rounded like the kernel's output
                y = bias_act_mod.bias_act(x_.float(), None if b_ is None else b_.float(), dim=dim, act=act,
                                          alpha=alpha, gain=gain, clamp=clamp, impl="ref")
                return y.to(dtype)
            return bias_act_mod.bias_act(x_, b_, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl=impl)

        if low_precision:  # forward and first order only
            got = _first_order(fn("cuda"), x, b)
            want = _first_order(fn("ref"), x, b)
        else:
            got = _second_order(lambda x_, b_: fn("cuda", x_, b_), x, b)
            want = _second_order(lambda x_, b_: fn("ref", x_, b_), x, b)
        names = ["y", "dx", "db", "d2x", "d2b"] if b is not None else ["y", "dx", "d2x"]
        for name, g, w in zip(names, got, want):
            tol = atol * max(1.0, w.abs().max().item())
            if name == "db" and low_precision:
                # db sums x.numel() / len(b) gradients that were each rounded to `dtype`
                count = x.numel() // x.shape[dim]
                tol = 4 * torch.finfo(dtype).eps * count**0.5 * max(1.0, want[1].abs().max().item())
            torch.testing.assert_close(g.float(), w.float(), atol=tol, rtol=rtol,
                                       msg=lambda m: f"{layout} {name}: {m}")


def _first_order(y, x, b):
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32).to(y.device, y.dtype)
    inputs = [x] if b is None else [x, b]
    return [y.detach(), *torch.autograd.grad((y * r).sum(), inputs)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_bias_act_cuda_gradgradcheck(act, cuda_plugins):
    x = torch.randn(2, 3, 4, dtype=torch.float64, device="cuda").requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, device="cuda").requires_grad_(True)
    for clamp in (None, 1.5):
        fn = lambda x_, b_: bias_act_mod.bias_act(x_, b_, act=act, clamp=clamp, impl="cuda")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("cfg", UPFIRDN_GRID, ids=UPFIRDN_GRID_IDS)
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_upfirdn2d_cuda_matches_ref(cfg, cuda_plugins):
    _upfirdn_compare(cfg, "cuda", torch.float32, atol=2e-5, rtol=2e-5, second_order=True)
    _upfirdn_compare(cfg, "cuda", torch.float64, atol=1e-12, rtol=1e-12, second_order=False)
    _upfirdn_compare(cfg, "cuda", torch.float16, atol=1e-2, rtol=1e-2, second_order=False)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_upfirdn2d_cuda_layouts_and_gradgradcheck(cuda_plugins):
    f = upfirdn2d_mod.setup_filter([1, 3, 3, 1], device="cuda")
    base = torch.randn(2, 6, 17, 19, device="cuda")
    for x in (base[:, ::2, 1:, :-2], base.to(memory_format=torch.channels_last), base.transpose(2, 3)):
        for fn_name in ("upsample2d", "downsample2d", "filter2d"):
            fn = getattr(upfirdn2d_mod, fn_name)
            torch.testing.assert_close(fn(x, f, impl="cuda"), fn(x.contiguous(), f, impl="ref"), atol=2e-5, rtol=2e-5)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, device="cuda").requires_grad_(True)
    f2 = torch.randn(3, 5, dtype=torch.float32, device="cuda")
    fn = lambda x_: upfirdn2d_mod.upfirdn2d(x_, f2, up=[2, 1], down=[1, 2], padding=[1, 0, 2, -1],  # noqa: E731
                                             flip_filter=True, gain=3, impl="cuda")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_resample_1024_cuda_matches_ref(cuda_plugins):
    f = upfirdn2d_mod.setup_filter([1, 3, 3, 1], device="cuda")
    x = torch.randn(2, 32, 512, 512, device="cuda")
    for fn, arg in ((upfirdn2d_mod.upsample2d, x), (upfirdn2d_mod.downsample2d, upfirdn2d_mod.upsample2d(x, f))):
        for dtype, tol in ((torch.float32, 2e-5), (torch.float16, 4e-3)):
            a = arg.to(dtype)
            torch.testing.assert_close(fn(a, f, impl="cuda").float(), fn(a.float(), f, impl="ref"), atol=tol, rtol=tol)


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_kernels_64bit_indexing(cuda_plugins):
    """More than 2**31 elements switches the kernels to 64-bit indexing."""
    free, _ = torch.cuda.mem_get_info()
    if free < 24 * 2**30:
        pytest.skip(f"needs ~24 GiB free GPU memory, {free / 2**30:.1f} GiB free")
    n = 2**31 + 2**20
    x = torch.randn(n // 1024, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, device="cuda", dtype=torch.float16)
    y = bias_act_mod.bias_act(x, b, act="lrelu", impl="cuda")
    for rows in (slice(0, 64), slice(x.shape[0] - 64, None)):
        torch.testing.assert_close(y[rows], bias_act_mod.bias_act(x[rows], b, act="lrelu", impl="ref"),
                                   atol=2e-3, rtol=2e-3)
    del x, y
    x = torch.randn(1, 1030, 1024, 2048, device="cuda", dtype=torch.float16)  # 2.16e9 outputs
    f = upfirdn2d_mod.setup_filter([1, 2, 1], device="cuda")
    y = upfirdn2d_mod.filter2d(x, f, impl="cuda")
    for ch in (slice(0, 2), slice(1028, 1030)):
        torch.testing.assert_close(y[:, ch].float(), upfirdn2d_mod.filter2d(x[:, ch].float(), f, impl="ref"),
                                   atol=4e-3, rtol=4e-3)
