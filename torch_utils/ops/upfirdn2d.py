"""Upsample, pad, FIR-filter and downsample 2-D images in one op.

StyleGAN2 resamples with a low-pass FIR filter (normally the [1,3,3,1] binomial)
instead of nearest/bilinear interpolation; ``upfirdn2d`` is that operation, and
``upsample2d``/``downsample2d``/``filter2d`` wrap it with the padding that keeps
the image centred. Semantics (those of NVIDIA's op, pinned down by the golden
tests in ``tests/test_ops.py``):

1. upsample by inserting ``up - 1`` zeros after every input sample;
2. pad with zeros (negative padding crops), order ``[x0, x1, y0, y1]``;
3. 'valid' 2-D convolution with ``f`` (correlation when ``flip_filter=True``);
4. keep every ``down``-th sample, starting with the first;
5. multiply by ``gain``. A 1-D filter acts as its outer product, with sqrt(gain)
   applied per axis.

The reference path is plain PyTorch (any device, gradients of any order). The
CUDA path runs a fused kernel; its backward is again ``upfirdn2d`` (the adjoint:
flipped filter, up/down swapped, padding adjusted), so its gradients are exact to
any order as well.

Sources of the CUDA plugin: ``custom_ops/upfirdn2d.h`` (the per-pixel math),
``custom_ops/upfirdn2d.cpp`` (argument checks, binding) and ``custom_ops/upfirdn2d.cu``
(the kernel launch); compiled on first use by ``torch_utils/custom_ops.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .. import custom_ops

__all__ = [
    "downsample2d",
    "filter2d",
    "get_filter_size",
    "parse_padding",
    "parse_scaling",
    "plugin_status",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]

IntOrPair = Union[int, Sequence[int]]

PLUGIN = custom_ops.PluginSpec("upfirdn2d", sources=("upfirdn2d.cpp", "upfirdn2d.cu"), headers=("upfirdn2d.h",))
_PLUGIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def plugin_status(load: bool = True) -> str:
    """'ok', 'disabled', 'unavailable: <reason>' or 'not loaded' for the fused kernel."""
    return custom_ops.plugin_state(PLUGIN, load=load)


# --------------------------------------------------------------------------- argument parsing

def _as_int(v, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"upfirdn2d: {what} must be integers, got {v!r}")
    return int(v)


def parse_scaling(scaling: IntOrPair) -> tuple[int, int]:
    """``up``/``down``: int or ``[x, y]`` -> ``(sx, sy)``, each >= 1."""
    if isinstance(scaling, (int, np.integer)) and not isinstance(scaling, bool):
        sx = sy = int(scaling)
    else:
        values = list(scaling)
        if len(values) != 2:
            raise ValueError(f"upfirdn2d: a scaling factor must be an int or [x, y], got {scaling!r}")
        sx, sy = (_as_int(v, "scaling factors") for v in values)
    if sx < 1 or sy < 1:
        raise ValueError(f"upfirdn2d: scaling factors must be >= 1, got {scaling!r}")
    return sx, sy


def parse_padding(padding: IntOrPair) -> tuple[int, int, int, int]:
    """int, ``[x, y]`` or ``[x0, x1, y0, y1]`` -> ``(x0, x1, y0, y1)``; negative crops."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        p = int(padding)
        return p, p, p, p
    values = [_as_int(v, "paddings") for v in padding]
    if len(values) == 2:
        px, py = values
        return px, px, py, py
    if len(values) == 4:
        return values[0], values[1], values[2], values[3]
    raise ValueError(f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def get_filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """``(fw, fh)`` of a filter; a 1-D filter is square, ``None`` is 1x1."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: the filter must be a 1-D or 2-D tensor, got {getattr(f, 'shape', f)!r}")
    if f.ndim == 1:
        return int(f.shape[0]), int(f.shape[0])
    return int(f.shape[1]), int(f.shape[0])


# Names used by code written against NVIDIA's module (e.g. conv2d_resample).
_parse_scaling = parse_scaling
_parse_padding = parse_padding
_get_filter_size = get_filter_size


# --------------------------------------------------------------------------- filters

def setup_filter(f, device: torch.device = torch.device("cpu"), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn filter taps into the float32 tensor the ops expect.

    ``f`` may be None (identity), a scalar, a 1-D list/array/tensor or a 2-D one. A
    1-D filter stays separable (1-D) when ``separable`` is True, or when it is None
    and the filter has 8 or more taps; otherwise it becomes its outer product.
    ``normalize`` makes the taps sum to 1; ``flip_filter`` mirrors it; ``gain``
    multiplies the overall response (sqrt(gain) per axis for a separable filter).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim > 2:
        raise ValueError(f"setup_filter: the filter must have at most 2 dims, got shape {tuple(f.shape)}")
    if f.numel() == 0:
        raise ValueError("setup_filter: the filter is empty")
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: a 2-D filter cannot be separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


# --------------------------------------------------------------------------- public ops

def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntOrPair = 1, down: IntOrPair = 1,
              padding: IntOrPair = 0, flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample by ``up``, pad by ``padding``, convolve with ``f``, keep every ``down``-th
    sample and multiply by ``gain`` (see the module docstring).

    Args:
        x: ``[N, C, H, W]``.
        f: ``[fh, fw]`` (2-D), ``[n]`` (separable) or None (identity); float32 as
            made by :func:`setup_filter`.
        impl: 'cuda' uses the fused kernel for CUDA tensors when available, else the
            reference; 'ref' always uses the reference. A filter that requires grad
            always takes the reference path (the kernel has no filter gradient).
    Returns:
        ``[N, C, (H*up_y + y0 + y1 - fh) // down_y + 1, (W*up_x + x0 + x1 - fw) // down_x + 1]``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', type(x).__name__)}")
    if impl not in ("cuda", "ref"):
        raise ValueError(f"upfirdn2d: impl must be 'cuda' or 'ref', got {impl!r}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = get_filter_size(f)
    if not f.is_floating_point():
        raise ValueError(f"upfirdn2d: the filter must be a floating-point tensor, got {f.dtype}")
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    in_h, in_w = int(x.shape[2]), int(x.shape[3])
    if in_w * upx + px0 + px1 < fw or in_h * upy + py0 + py1 < fh:
        raise ValueError(f"upfirdn2d: a {in_h}x{in_w} input with up=[{upx}, {upy}] and padding "
                         f"[{px0}, {px1}, {py0}, {py1}] is smaller than the {fh}x{fw} filter (empty output)")

    if impl == "cuda" and _plugin_applicable(x) and x.dtype in _PLUGIN_DTYPES and not f.requires_grad:
        plugin = custom_ops.get_plugin(PLUGIN)
        if plugin is not None:
            return _upfirdn2d_cuda(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)
    return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntOrPair = 2, padding: IntOrPair = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample by ``up`` with filter ``f``: output ``[N, C, H*up_y, W*up_x]`` (plus
    ``padding``). The filter's DC gain is compensated (gain is multiplied by up_x*up_y)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: IntOrPair = 2, padding: IntOrPair = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Low-pass filter with ``f`` and keep every ``down``-th sample: output
    ``[N, C, H/down_y, W/down_x]`` (plus ``padding``)."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: IntOrPair = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Filter with ``f`` keeping the size (plus ``padding``), centred on the input."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [
        px0 + fw // 2,
        px1 + (fw - 1) // 2,
        py0 + fh // 2,
        py1 + (fh - 1) // 2,
    ]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def _plugin_applicable(x: torch.Tensor) -> bool:
    """Only CUDA tensors can use the kernel; everything else silently runs the reference."""
    return x.device.type == "cuda"


# --------------------------------------------------------------------------- reference

def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                   pad: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    n, c, in_h, in_w = x.shape
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = pad

    if upx > 1 or upy > 1:  # zero insertion: each sample followed by up-1 zeros
        x = x.reshape(n, c, in_h, 1, in_w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, in_h * upy, in_w * upx)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    f = (f * (gain ** (f.ndim / 2))).to(device=x.device, dtype=x.dtype)
    if not flip_filter:  # conv2d correlates; mirror the taps for a true convolution
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = f[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, weight, stride=(downy, downx), groups=c)
    x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), stride=(1, downx), groups=c)
    return F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), stride=(downy, 1), groups=c)


# --------------------------------------------------------------------------- CUDA plugin

@dataclass(frozen=True)
class _Config:
    """One kernel pass; the filter passed with it already includes the gain."""

    up: tuple[int, int]
    down: tuple[int, int]
    pad: tuple[int, int, int, int]
    flip_filter: bool

    def kernel_args(self) -> tuple:
        return (*self.up, *self.down, *self.pad, self.flip_filter)

    def adjoint(self, in_h: int, in_w: int, fh: int, fw: int) -> "_Config":
        """The pass whose output is the gradient w.r.t. this pass's input."""
        (upx, upy), (downx, downy) = self.up, self.down
        px0, px1, py0, py1 = self.pad
        out_w = (in_w * upx + px0 + px1 - fw) // downx + 1
        out_h = (in_h * upy + py0 + py1 - fh) // downy + 1
        pad = (
            fw - px0 - 1,
            in_w * upx - out_w * downx + px0 - upx + 1,
            fh - py0 - 1,
            in_h * upy - out_h * downy + py0 - upy + 1,
        )
        return _Config(up=self.down, down=self.up, pad=pad, flip_filter=not self.flip_filter)


def _upfirdn2d_cuda(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                    pad: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    fdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    f = f.detach().to(device=x.device, dtype=fdtype)
    if f.ndim == 1:  # separable: a horizontal pass, then a vertical one
        f = f * (gain ** 0.5)
        fx = f.reshape(1, -1).contiguous()
        fy = f.reshape(-1, 1).contiguous()
        x = _UpFirDn2dCuda.apply(x, fx, _Config((up[0], 1), (down[0], 1), (pad[0], pad[1], 0, 0), flip_filter))
        return _UpFirDn2dCuda.apply(x, fy, _Config((1, up[1]), (1, down[1]), (0, 0, pad[2], pad[3]), flip_filter))
    return _UpFirDn2dCuda.apply(x, (f * gain).contiguous(), _Config(up, down, pad, flip_filter))


def _kernel():
    return custom_ops.require_plugin(PLUGIN)


class _UpFirDn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, cfg: _Config):
        y = _kernel().upfirdn2d(x, f, *cfg.kernel_args())
        ctx.save_for_backward(f)
        ctx.cfg = cfg
        ctx.in_hw = (int(x.shape[2]), int(x.shape[3]))
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            adj = ctx.cfg.adjoint(*ctx.in_hw, fh=int(f.shape[0]), fw=int(f.shape[1]))
            dx = _UpFirDn2dCuda.apply(dy, f, adj)
        return dx, None, None
