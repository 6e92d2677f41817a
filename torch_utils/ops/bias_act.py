"""Fused bias + activation + gain + clamp.

``bias_act`` is the elementwise tail of every StyleGAN2 layer. Doing it in one
CUDA kernel saves several full passes over large activation tensors; the
reference implementation is plain PyTorch, runs anywhere (CPU, MPS, ...) and is
what the fused kernel is tested against. Both follow the semantics of NVIDIA's
``torch_utils.ops.bias_act`` (same defaults, clamp after the gain), so networks
written for the official code behave identically.

The CUDA path supports first- and second-order gradients (R1-style penalties and
``create_graph=True`` projections): its backward is computed by the same kernel in
a gradient mode, wrapped in a second autograd Function whose own backward uses a
second-derivative mode.

Sources of the CUDA plugin: ``custom_ops/bias_act.h`` (the per-element math),
``custom_ops/bias_act.cpp`` (argument checks, binding) and ``custom_ops/bias_act.cu``
(the kernel launch); compiled on first use by ``torch_utils/custom_ops.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .. import custom_ops

__all__ = ["ActivationSpec", "activation_funcs", "bias_act", "plugin_status"]


@dataclass(frozen=True)
class ActivationSpec:
    """One activation: its reference function, NVIDIA-compatible defaults and kernel id."""

    name: str
    ref: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int  # su_bias_act::Activation in custom_ops/bias_act.h
    has_2nd_grad: bool  # act'' is not identically zero


def _swish(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(x) * x


_SQRT2 = math.sqrt(2)

activation_funcs: dict[str, ActivationSpec] = {
    s.name: s
    for s in (
        ActivationSpec("linear", lambda x, alpha: x, 0.0, 1.0, 0, False),
        ActivationSpec("relu", lambda x, alpha: F.relu(x), 0.0, _SQRT2, 1, False),
        ActivationSpec("lrelu", lambda x, alpha: F.leaky_relu(x, alpha), 0.2, _SQRT2, 2, False),
        ActivationSpec("tanh", lambda x, alpha: torch.tanh(x), 0.0, 1.0, 3, True),
        ActivationSpec("sigmoid", lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 4, True),
        ActivationSpec("elu", lambda x, alpha: F.elu(x), 0.0, 1.0, 5, True),
        ActivationSpec("selu", lambda x, alpha: F.selu(x), 0.0, 1.0, 6, True),
        ActivationSpec("softplus", lambda x, alpha: F.softplus(x), 0.0, 1.0, 7, True),
        ActivationSpec("swish", _swish, 0.0, _SQRT2, 8, True),
    )
}

PLUGIN = custom_ops.PluginSpec("bias_act", sources=("bias_act.cpp", "bias_act.cu"), headers=("bias_act.h",))
_PLUGIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MODE_FORWARD, _MODE_GRAD, _MODE_GRAD2 = 0, 1, 2


def plugin_status(load: bool = True) -> str:
    """'ok', 'disabled', 'unavailable: <reason>' or 'not loaded' for the fused kernel."""
    return custom_ops.plugin_state(PLUGIN, load=load)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = "cuda") -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)``.

    Args:
        x: input tensor of any shape.
        b: optional 1-D bias of length ``x.shape[dim]``, broadcast along ``dim``
            (cast to ``x.dtype``).
        dim: the dimension of ``x`` the bias runs along (negative counts from the end).
        act: one of ``activation_funcs`` (linear, relu, lrelu, tanh, sigmoid, elu,
            selu, softplus, swish).
        alpha: slope of lrelu's negative part (default 0.2); ignored by the others.
        gain: scale after the activation (default sqrt(2) for relu, lrelu and swish, else 1).
        clamp: clamp the result to [-clamp, clamp] after the gain (None: no clamping).
        impl: 'cuda' uses the fused kernel for CUDA tensors when it is available and
            the reference PyTorch code otherwise; 'ref' always uses the reference.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act: x must be a torch.Tensor, got {type(x).__name__}")
    if impl not in ("cuda", "ref"):
        raise ValueError(f"bias_act: impl must be 'cuda' or 'ref', got {impl!r}")
    if act not in activation_funcs:
        raise ValueError(f"bias_act: unknown activation {act!r}; choose from {', '.join(activation_funcs)}")
    spec = activation_funcs[act]
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.ndim != 1:
            raise ValueError(f"bias_act: b must be a 1-D tensor, got {getattr(b, 'shape', type(b).__name__)}")
        if not -x.ndim <= dim < x.ndim:
            raise ValueError(f"bias_act: dim={dim} is out of range for x with {x.ndim} dims")
        dim = dim % x.ndim
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: b has {b.shape[0]} elements but x.shape[{dim}] = {x.shape[dim]}")
        if b.device != x.device:
            raise ValueError(f"bias_act: b is on {b.device} but x is on {x.device}")
        b = b.to(x.dtype)
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)

    if impl == "cuda" and _plugin_applicable(x) and x.dtype in _PLUGIN_DTYPES:
        plugin = custom_ops.get_plugin(PLUGIN)
        if plugin is not None:
            cfg = _Config(dim=dim, act=spec.cuda_idx, alpha=alpha, gain=gain, clamp=clamp,
                          has_2nd_grad=spec.has_2nd_grad)
            return _BiasActCuda.apply(_dense(x), None if b is None else b.contiguous(), cfg)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _plugin_applicable(x: torch.Tensor) -> bool:
    """Only CUDA tensors can use the kernel; everything else silently runs the reference."""
    return x.device.type == "cuda"


# --------------------------------------------------------------------------- reference

def _bias_act_ref(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, spec: ActivationSpec, alpha: float,
                  gain: float, clamp: float) -> torch.Tensor:
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.ref(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


# --------------------------------------------------------------------------- CUDA plugin

@dataclass(frozen=True)
class _Config:
    dim: int
    act: int
    alpha: float
    gain: float
    clamp: float
    has_2nd_grad: bool

    @property
    def needs_x(self) -> bool:
        """The backward needs the forward input: the slope depends on the
        pre-activation, or clamping decides which elements pass a gradient."""
        return self.act != 0 or self.clamp >= 0

    def kernel_args(self) -> tuple:
        return (self.dim, self.act, self.alpha, self.gain, self.clamp)


def _dense(t: torch.Tensor) -> torch.Tensor:
    """The kernel addresses all tensors by one memory offset: accept row-major and
    channels-last layouts as they are, copy anything else."""
    if t.is_contiguous():
        return t
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t
    if t.ndim == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return t
    return t.contiguous()


def _like(t: torch.Tensor, ref: Optional[torch.Tensor]) -> torch.Tensor:
    """``t`` in the memory layout of ``ref`` (a dense tensor of the same shape)."""
    if ref is None:
        return _dense(t)
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


def _reduce_to_bias(g: torch.Tensor, dim: int) -> torch.Tensor:
    return g.sum([i for i in range(g.ndim) if i != dim])


def _kernel():
    return custom_ops.require_plugin(PLUGIN)


class _BiasActCuda(torch.autograd.Function):
    """y = clamp(act(x + b) * gain). x must already be dense (see ``_dense``)."""

    @staticmethod
    def forward(ctx, x, b, cfg: _Config):
        y = _kernel().bias_act(x, b, None, None, _MODE_FORWARD, *cfg.kernel_args())
        ctx.cfg = cfg
        ctx.save_for_backward(x if cfg.needs_x else None, b if cfg.needs_x else None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        cfg: _Config = ctx.cfg
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dx = _BiasActCudaGrad.apply(dy, x, b, cfg)
        if ctx.needs_input_grad[1]:
            db = _reduce_to_bias(dx, cfg.dim)
        return (dx if ctx.needs_input_grad[0] else None), db, None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * gain * act'(x + b) * [not clamped]; differentiable once more, which
    gives exact second-order gradients of ``bias_act``."""

    @staticmethod
    def forward(ctx, dy, x, b, cfg: _Config):
        dy = _like(dy, x)
        dx = _kernel().bias_act(dy, b, x, None, _MODE_GRAD, *cfg.kernel_args())
        ctx.cfg = cfg
        ctx.save_for_backward(dy if cfg.has_2nd_grad else None, x, b)
        return dx

    @staticmethod
    @once_differentiable
    def backward(ctx, gdx):
        dy, x, b = ctx.saved_tensors
        cfg: _Config = ctx.cfg
        g_dy = g_x = g_b = None
        gdx = _like(gdx, x)
        if ctx.needs_input_grad[0]:
            # dx is linear in dy: its derivative w.r.t. dy is the same slope.
            g_dy = _kernel().bias_act(gdx, b, x, None, _MODE_GRAD, *cfg.kernel_args())
        if cfg.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            g_s = _kernel().bias_act(gdx, b, x, dy, _MODE_GRAD2, *cfg.kernel_args())
            g_x = g_s if ctx.needs_input_grad[1] else None
            g_b = _reduce_to_bias(g_s, cfg.dim) if ctx.needs_input_grad[2] else None
        return g_dy, g_x, g_b, None
