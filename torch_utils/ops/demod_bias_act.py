"""Demodulation + noise + bias + leaky ReLU + gain + clamp in one autograd node.

The tail of a non-fused modulated convolution (StyleGAN2's ``SynthesisLayer``)
is six elementwise operations. Under plain autograd each one allocates a new
full-size tensor and saves its input for the backward pass, and at 1024 px
(32 channels x 1024 x 1024 = 128 MiB per tensor) a CPU spends more time on
this memory traffic than on the convolutions. Here the forward works in place
on one new tensor and saves only the convolution output and the result; the
backward recovers the activation slope from the result's sign (as NVIDIA's
fused bias_act kernel does) in a few passes. It computes the same function as

    y = clamp(lrelu(x * demod + noise + bias, alpha) * gain, -clamp, clamp)

written with separate PyTorch ops (the float rounding of the forward is the
same; gradients agree to float rounding). Pure PyTorch, no CUDA source in
``custom_ops/``: it runs on any device; the projector uses it on the CPU (its
measured gain: docs/projector.md).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["demod_bias_act", "demod_bias_act_ref"]


def demod_bias_act_ref(x: torch.Tensor, demod: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                       bias: Optional[torch.Tensor], alpha: float = 0.2, gain: float = 1.0,
                       clamp: Optional[float] = None) -> torch.Tensor:
    """The same function with separate autograd ops (what `demod_bias_act` is tested against)."""
    if demod is not None:
        x = x * demod.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = F.leaky_relu(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def demod_bias_act(x: torch.Tensor, demod: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor], alpha: float = 0.2, gain: float = 1.0,
                   clamp: Optional[float] = None) -> torch.Tensor:
    """``clamp(lrelu(x * demod + noise + bias) * gain)`` for x [N, C, H, W] (any memory format).

    demod [N, C] or None; noise broadcastable to [N, 1, H, W] or None; bias [C] or None.
    Every tensor argument may require grad; gradients have the argument's dtype and shape.
    """
    if x.ndim != 4:
        raise ValueError(f"demod_bias_act: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if gain <= 0:
        raise ValueError(f"demod_bias_act: gain must be > 0 (the slope is read from the result's sign), got {gain}")
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    return _DemodBiasAct.apply(x, demod, noise, bias, float(alpha), float(gain), clamp)


class _DemodBiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, demod, noise, bias, alpha, gain, clamp):
        dtype = x.dtype
        y = x * demod.to(dtype).reshape(x.shape[0], -1, 1, 1) if demod is not None else x.clone()
        if noise is not None:
            y.add_(noise.to(dtype))
        if bias is not None:
            y.add_(bias.to(dtype).reshape(1, -1, 1, 1))
        F.leaky_relu_(y, alpha)
        if gain != 1:
            y.mul_(gain)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(x if demod is not None else None, demod, y)
        ctx.config = (alpha, gain, clamp, None if noise is None else (noise.shape, noise.dtype),
                      None if bias is None else bias.dtype)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, demod, y = ctx.saved_tensors
        alpha, gain, clamp, noise_meta, bias_dtype = ctx.config
        # d y / d pre-activation: gain where y > 0, gain * alpha elsewhere, 0 where clamped.
        g = torch.where(y > 0, gain, gain * alpha).to(dy.dtype)
        if clamp is not None:
            low, high = torch.aminmax(y)
            if float(high) >= clamp or float(low) <= -clamp:
                g.masked_fill_(y.abs() >= clamp, 0)
        g.mul_(dy)
        need_x, need_demod, need_noise, need_bias = ctx.needs_input_grad[:4]
        grad_demod = grad_noise = grad_bias = None
        if need_demod:
            grad_demod = (g * x).sum(dim=(2, 3), dtype=torch.float32).to(demod.dtype)
        if need_noise:
            shape, dtype = noise_meta
            grad_noise = g.sum(dim=1, keepdim=True, dtype=torch.float32).sum_to_size(shape).to(dtype)
        if need_bias:
            grad_bias = g.sum(dim=(0, 2, 3), dtype=torch.float32).to(bias_dtype)
        grad_x = None
        if need_x:
            grad_x = g.mul_(demod.to(g.dtype).reshape(g.shape[0], -1, 1, 1)) if demod is not None else g
        return grad_x, grad_demod, grad_noise, grad_bias, None, None, None
