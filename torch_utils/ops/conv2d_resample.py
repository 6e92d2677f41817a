"""2-D convolution combined with FIR up-/down-sampling.

StyleGAN2's synthesis layers upsample *inside* the 3x3 convolution (a strided
transposed convolution followed by a low-pass FIR filter) and its
discriminator downsamples the same way (FIR filter, then a strided
convolution). Doing it in one step is cheaper than upsampling the feature map
first and keeps exactly the sampling grid of the official implementation,
which pretrained checkpoints depend on.

Semantics (what every code path below computes, up to float rounding):

    y = upfirdn2d(x, f, up, padding=P, gain=up**2)   # zero-insert + FIR
    y = conv2d(y, w, groups=groups)                   # see `flip_weight`
    y = upfirdn2d(y, f, down=down)                    # FIR + decimate

where ``P`` is ``padding`` widened so that the filter taps stay centred
(the same convention as ``upfirdn2d.upsample2d`` / ``downsample2d``).

``flip_weight=True`` means the weight is applied as a cross-correlation
(what ``torch.nn.functional.conv2d`` does); ``flip_weight=False`` means a true
convolution (weight rotated by 180 degrees). Both appear in the official
networks, and with learned, asymmetric kernels the choice changes the output.

No CUDA source of its own: it runs on ``upfirdn2d`` (``custom_ops/upfirdn2d.*``)
and torch's convolutions.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d

Padding = Union[int, Sequence[int]]


def _filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(width, height) of a FIR filter; 1-D filters are separable (same size both ways)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"FIR filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def _parse_padding(padding: Padding) -> List[int]:
    """int | [x, y] | [x0, x1, y0, y1]  ->  [x0, x1, y0, y1]."""
    if isinstance(padding, int):
        return [padding] * 4
    values = [int(p) for p in padding]
    if len(values) == 2:
        return [values[0], values[0], values[1], values[1]]
    if len(values) == 4:
        return values
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: Union[int, List[int]] = 0,
          groups: int = 1, transpose: bool = False, flip_weight: bool = True) -> torch.Tensor:
    """Plain (transposed) convolution with the `flip_weight` convention of this module."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[out, in/groups, kh, kw] (conv2d layout) -> [in, out/groups, kh, kw] (conv_transpose2d layout)."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    return w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """Convolve `x` [N, C*groups.., H, W] with `w` [O, C/groups, kh, kw], resampling by FIR filter `f`.

    `f` comes from ``upfirdn2d.setup_filter`` (or None = box/identity);
    `up`/`down` are integer factors >= 1; `padding` is applied on the
    (upsampled) input grid before the convolution.
    """
    if x.ndim != 4:
        raise ValueError(f"conv2d_resample: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError(f"conv2d_resample: w must be 4-D with x's dtype {x.dtype}, got {tuple(w.shape)} {w.dtype}")
    if f is not None and f.dtype != torch.float32:
        raise ValueError(f"conv2d_resample: FIR filter must be float32, got {f.dtype}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be integers >= 1, got up={up!r} down={down!r}")
    if not (isinstance(groups, int) and groups >= 1) or w.shape[0] % groups:
        raise ValueError(f"conv2d_resample: {w.shape[0]} output channels do not split into {groups} groups")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d_resample: x has {x.shape[1]} channels, weight expects {w.shape[1] * groups}")

    out_channels, _, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Widen the padding so the FIR taps are centred on the resampled grid.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    pointwise = kw == 1 and kh == 1

    # 1x1 kernel: the convolution commutes with resampling, so run it on the smaller grid.
    if pointwise and down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if pointwise and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                                   flip_filter=flip_filter)

    # Downsampling only: low-pass first, then let the strided convolution decimate.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed convolution does the zero insertion and the
    # convolution at once; the FIR filter then smooths the result.
    if up > 1:
        w_t = w.transpose(0, 1) if groups == 1 else _transpose_weight(w, groups)
        # What remains of the padding after the transposed convolution's implicit (k-1) border.
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        # Let the transposed convolution itself crop whatever both sides drop.
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        # A transposed convolution applies its kernel rotated relative to conv2d, hence the inverted flag.
        x = _conv(x, w_t, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                  flip_weight=not flip_weight)
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                                flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling and symmetric, non-negative padding: a single conv2d.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # Remaining case (no resampling, asymmetric or negative padding): pad/crop explicitly, then convolve.
    x = upfirdn2d.upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
