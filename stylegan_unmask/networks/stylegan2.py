"""The StyleGAN2 generator (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN").

Written from the paper and from the observable behaviour of NVIDIA's official
PyTorch releases, which this module reproduces numerically: module, parameter
and buffer names are exactly the official ones (``mapping.fc0.weight``,
``synthesis.b8.conv0.affine.bias``, ``synthesis.b64.torgb.weight``, ...), so an
official ``G_ema`` state dict loads with ``load_state_dict(strict=True)``, and
the forward pass follows the official conventions that pretrained weights
depend on (equalised learning rate, weight flips, FIR filter orientation,
w-index sharing between ToRGB and the next block, activation clamping).

Shapes:  z [N, z_dim] -> mapping -> ws [N, num_ws, w_dim] -> synthesis -> img [N, C, R, R].
The projector optimises ``ws`` (W+) directly and the per-layer noise maps, which is
why synthesis accepts an explicit ``noise=`` list (see ``SynthesisNetwork.forward``).
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from torch_utils.ops import bias_act, upfirdn2d
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.demod_bias_act import demod_bias_act

__all__ = [
    "Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer", "ToRGBLayer",
    "Conv2dLayer", "FullyConnectedLayer", "modulated_conv2d", "normalize_2nd_moment", "NOISE_MODES",
    "ARCHITECTURES", "CONFIG_DEFAULTS",
]

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
FUSED_MODCONV_CHOICES = (True, False, "inference_only")

# The two official code bases share the architecture but differ in constructor defaults.
# stylegan2-ada-pytorch (training/networks.py) nests synthesis options in `synthesis_kwargs`;
# the stylegan3 repository (training/networks_stylegan2.py) passes them flat. A checkpoint's
# stored init kwargs omit values equal to its own code's defaults, so the defaults must follow
# the style the kwargs were written in.
CONFIG_DEFAULTS: Dict[str, Dict[str, dict]] = {
    "stylegan2-ada": {"mapping": {"w_avg_beta": 0.995}, "synthesis": {"num_fp16_res": 0, "conv_clamp": None}},
    "stylegan3": {"mapping": {"w_avg_beta": 0.998}, "synthesis": {"num_fp16_res": 4, "conv_clamp": 256}},
}

# Official option names accepted in mapping_kwargs / synthesis kwargs.
MAPPING_OPTIONS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta")
SYNTHESIS_OPTIONS = (
    "channel_base", "channel_max", "num_fp16_res",                        # SynthesisNetwork
    "channels_dict",                                                      # (ours: explicit channel table)
    "architecture", "resample_filter", "conv_clamp", "fp16_channels_last",  # SynthesisBlock
    "fused_modconv_default",
    "kernel_size", "use_noise", "activation",                             # SynthesisLayer
)

Noise = Optional[Sequence[Optional[torch.Tensor]]]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate.

    Parameters are stored divided by `lr_multiplier` and rescaled at run time
    (weight by lr/sqrt(fan_in), bias by lr), so optimisers see unit-scale values.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution with optional FIR resampling (the 'resnet' blocks' skip path)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.activation = activation
        self.up = int(up)
        self.down = int(down)
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = bias_act_default_gain(activation)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device="cpu"))

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)


def bias_act_default_gain(activation: str) -> float:
    """Gain that keeps activations' variance ~1 (sqrt(2) for the ReLU family, as the official ops)."""
    return math.sqrt(2) if activation in ("relu", "lrelu", "swish") else 1.0


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: int = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True, defer_demod: bool = False):
    """StyleGAN2 weight modulation / demodulation around `conv2d_resample`.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I]. With `fused_modconv`
    every sample gets its own modulated kernel in one grouped convolution;
    otherwise the styles scale the activations before a shared convolution and
    the demodulation scales the result. Both compute the same function.
    ``defer_demod`` (non-fused only) returns ``(convolution, demod [N, O])``
    without applying demodulation and noise, for `demod_bias_act` to do.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must be [{batch}, {in_channels}], got {tuple(styles.shape)}")

    if x.dtype == torch.float16 and demodulate:
        # Keep the products inside float16 range. Demodulation divides by the
        # kernel norm afterwards, so these per-row rescalings cancel out.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    demod = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        demod = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if defer_demod:
            return x, demod
        if demod is not None:
            x = x * demod.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if defer_demod:
        raise ValueError("defer_demod needs fused_modconv=False")
    if demod is not None:
        w = w * demod.reshape(batch, out_channels, 1, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    w = w.reshape(batch * out_channels, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=batch,
                        flip_weight=flip_weight)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (+ optional 2x upsampling), per-pixel noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.w_dim = int(w_dim)
        self.resolution = int(resolution)
        self.up = int(up)
        self.use_noise = bool(use_noise)
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = bias_act_default_gain(activation)
        # Registration order matters: it fixes the official state-dict order.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device="cpu"))
        if self.use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True,
                gain: float = 1, noise: Optional[torch.Tensor] = None, lean: bool = False) -> torch.Tensor:
        """``lean``: non-fused, with demodulation, noise, bias, activation and clamp in one autograd
        node (`demod_bias_act`: the same function, far less memory traffic in the backward pass)."""
        styles = self.affine(w)
        noise_term = None
        if self.use_noise:
            if noise is not None:
                noise_term = noise.to(x.device, torch.float32) * self.noise_strength
            elif noise_mode == "random":
                noise_term = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                         device=x.device) * self.noise_strength
            elif noise_mode == "const":
                noise_term = self.noise_const * self.noise_strength
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if lean and self.activation == "lrelu":
            x, demod = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                                        resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                                        fused_modconv=False, defer_demod=True)
            return demod_bias_act(x, demod, noise_term, self.bias, alpha=0.2, gain=act_gain, clamp=act_clamp)
        # Upsampling layers apply the kernel as a true convolution; the official code does this
        # for speed and pretrained kernels are oriented accordingly.
        x = modulated_conv2d(x, self.weight, styles, noise=noise_term, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
                f"up={self.up}, use_noise={self.use_noise}, conv_clamp={self.conv_clamp}")


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution from features to image channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.w_dim = int(w_dim)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, conv_clamp={self.conv_clamp}"


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0,) conv1, and ToRGB feeding the running skip image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: Union[bool, str] = "inference_only", **layer_kwargs):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if fused_modconv_default not in FUSED_MODCONV_CHOICES:
            raise ValueError(f"fused_modconv_default must be one of {FUSED_MODCONV_CHOICES}, "
                             f"got {fused_modconv_default!r}")
        self.in_channels = int(in_channels)
        self.w_dim = int(w_dim)
        self.resolution = int(resolution)
        self.img_channels = int(img_channels)
        self.is_last = bool(is_last)
        self.architecture = architecture
        self.use_fp16 = bool(use_fp16)
        self.channels_last = bool(use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device="cpu"))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def noise_layers(self) -> List[Tuple[str, SynthesisLayer]]:
        """(name, layer) of the layers that add noise, in forward order."""
        layers = [(name, getattr(self, name)) for name in ("conv0", "conv1") if hasattr(self, name)]
        return [(name, layer) for name, layer in layers if layer.use_noise]

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fp16_on_cpu: bool = False, fused_modconv: Optional[bool] = None,
                noise_mode: str = "const", noise: Noise = None, lean: bool = False,
                channels_last: Optional[bool] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """ws [N, num_conv + num_torgb, w_dim]; noise: one entry per `noise_layers()` (None = noise_mode).

        lean: the layers' one-node tail (`SynthesisLayer.forward`; implies non-fused modulation).
        channels_last: None = the block's own rule (float16 blocks built with fp16_channels_last);
        True/False = channels-last activations or not (same function; faster convolutions on some CPUs).
        """
        w_iter = iter(ws.unbind(dim=1))
        on_gpu = ws.device.type == "cuda"
        use_fp16 = self.use_fp16 and not force_fp32 and (on_gpu or fp16_on_cpu)
        dtype = torch.float16 if use_fp16 else torch.float32
        if channels_last is None:
            channels_last = self.channels_last and not force_fp32
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = (not self.training) if self.fused_modconv_default == "inference_only" \
                else bool(self.fused_modconv_default)
        if lean:
            fused_modconv = False
        layer_noise = dict(zip([name for name, _ in self.noise_layers()], noise)) if noise is not None else {}

        if self.in_channels == 0:
            x = self.const.unsqueeze(0).to(dtype=dtype, memory_format=memory_format)
            x = x.expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv,
                           noise=layer_noise.get("conv1"), lean=lean)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv,
                               noise=layer_noise.get("conv0"), lean=lean)
                x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv,
                               gain=math.sqrt(0.5), noise=layer_noise.get("conv1"), lean=lean)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv,
                               noise=layer_noise.get("conv0"), lean=lean)
                x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv,
                               noise=layer_noise.get("conv1"), lean=lean)

        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = y if img is None else img + y
        return x, img

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}, "
                f"num_conv={self.num_conv}, num_torgb={self.num_torgb}")


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """z (+ class label c) -> w, broadcast to `num_ws` copies, with truncation around `w_avg`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"mapping num_layers must be >= 1, got {num_layers}")
        if z_dim == 0 and c_dim == 0:
            raise ValueError("the mapping network needs z_dim > 0 or c_dim > 0")
        self.z_dim = int(z_dim)
        self.c_dim = int(c_dim)
        self.w_dim = int(w_dim)
        self.num_ws = num_ws
        self.num_layers = int(num_layers)
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: Optional[bool] = None,
                skip_w_avg_update: bool = False) -> torch.Tensor:
        """Returns ws [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

        `update_emas` (default: the module's training flag) moves `w_avg`
        towards this batch's mean w; evaluation never changes it.
        `skip_w_avg_update=True` (stylegan2-ada's spelling) disables the update.
        """
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this network is conditional: c must be [N, {self.c_dim}] (one-hot class), "
                                 f"got {None if c is None else tuple(c.shape)}")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas is None:
            update_emas = self.training and not skip_w_avg_update
        if update_emas and self.w_avg_beta is not None and hasattr(self, "w_avg"):
            # Under autocast x may be bf16/fp16 while the buffer stays fp32: average in fp32.
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs the w_avg buffer (this mapping was built with w_avg_beta=None)")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                cutoff = int(truncation_cutoff)
                x = torch.cat([self.w_avg.lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] -> image [N, img_channels, R, R]; one block per resolution 4..R."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0,
                 channels_dict: Optional[Mapping[Union[int, str], int]] = None, **block_kwargs):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = int(w_dim)
        self.img_resolution = int(img_resolution)
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = int(img_channels)
        self.num_fp16_res = int(num_fp16_res)
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        if channels_dict is None:
            channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        else:
            # Checkpoints from other code bases (e.g. rosinality's with a custom channel table)
            # cannot always be described by channel_base / channel_max.
            channels = {int(res): int(ch) for res, ch in channels_dict.items()}
            missing = [res for res in self.block_resolutions if channels.get(res, 0) < 1]
            if missing:
                raise ValueError(f"channels_dict must give a positive channel count for every resolution "
                                 f"{self.block_resolutions}; missing or invalid: {missing}")
        # float16 for the `num_fp16_res` highest resolutions, but never below 8x8.
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - self.num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == self.img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last,
                                   use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> Iterator[SynthesisBlock]:
        for res in self.block_resolutions:
            yield getattr(self, f"b{res}")

    def noise_shapes(self) -> List[Tuple[str, List[int]]]:
        """(name, [1, 1, r, r]) for every noise input, in the order `forward(noise=...)` expects."""
        return [(f"b{block.resolution}.{name}", [1, 1, layer.resolution, layer.resolution])
                for block in self.blocks() for name, layer in block.noise_layers()]

    def noise_const_buffers(self) -> List[torch.Tensor]:
        """The stored constant noise maps (views of the `noise_const` buffers) in `noise_shapes()` order."""
        return [layer.noise_const for block in self.blocks() for _, layer in block.noise_layers()]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False,
                noise: Noise = None, fused_modconv: Optional[bool] = None, fp16_on_cpu: bool = False,
                update_emas: bool = False, lean: bool = False,
                channels_last_from: Optional[int] = None) -> torch.Tensor:
        """Render W+ latents.

        noise_mode: 'const' (stored maps), 'random' (fresh draws) or 'none'.
        noise: optional list, one tensor per `noise_shapes()` entry, each
            broadcastable to [N, 1, r, r] (an entry may be None to use noise_mode);
            the tensors replace the stored maps and are scaled by the learned
            noise strengths, exactly like the 'const' maps.
        force_fp32: never use float16. float16 blocks run only on CUDA unless
            `fp16_on_cpu` asks for it. fused_modconv: None = the block default.
        lean / channels_last_from: the fast CPU path (same function): see `SynthesisBlock.forward`;
            blocks of at least `channels_last_from` px use channels-last activations (None: the blocks' rule).
        update_emas: accepted for API compatibility with the official code; synthesis has no EMAs.
        """
        del update_emas
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] (W+), got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        block_noise = self._split_noise(noise, ws.shape[0])

        w_idx = 0
        x = img = None
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            channels_last = None if channels_last_from is None else block.resolution >= channels_last_from
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fp16_on_cpu=fp16_on_cpu,
                           fused_modconv=fused_modconv, noise_mode=noise_mode,
                           noise=block_noise[block.resolution] if block_noise is not None else None,
                           lean=lean, channels_last=channels_last)
        return img

    def _split_noise(self, noise: Noise, batch: int) -> Optional[Dict[int, list]]:
        """Validate a noise override list and split it per block."""
        if noise is None:
            return None
        shapes = self.noise_shapes()
        noise = list(noise)
        if len(noise) != len(shapes):
            raise ValueError(f"noise must have one entry per noise layer ({len(shapes)}: "
                             f"{', '.join(name for name, _ in shapes)}), got {len(noise)}")
        for (name, shape), n in zip(shapes, noise):
            if n is None:
                continue
            r = shape[-1]
            ok = n.shape[-2:] == (r, r) and (
                n.ndim == 2 or (n.ndim == 4 and n.shape[1] == 1 and n.shape[0] in (1, batch)))
            if not ok:
                raise ValueError(f"noise for {name} must be broadcastable to [{batch}, 1, {r}, {r}], "
                                 f"got {tuple(n.shape)}")
        per_block: Dict[int, list] = {}
        it = iter(noise)
        for block in self.blocks():
            per_block[block.resolution] = [next(it) for _ in block.noise_layers()]
        return per_block

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}")


#: Constructor arguments of NVIDIA's official FFHQ 1024 StyleGAN2 (for benchmarks and GPU checks
#: that need its shapes without its weights).
FFHQ_1024_KWARGS = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=1024, img_channels=3,
                        mapping_kwargs=dict(num_layers=8),
                        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))


class Generator(nn.Module):
    """Mapping + synthesis, constructed from the official config fields.

    Accepts the stored init kwargs of both official code bases:
    stylegan2-ada-pytorch ``Generator(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs={...}, synthesis_kwargs={...})`` and the
    stylegan3 repository's ``networks_stylegan2.Generator`` with the same
    synthesis options passed flat (e.g. ``channel_base=..., fused_modconv_default=...``).
    Options a kwarg set leaves out take that code base's default (ada: no fp16,
    no clamp, w_avg_beta 0.995; stylegan3: 4 fp16 resolutions, clamp 256,
    w_avg_beta 0.998); `config_defaults` picks the set explicitly.
    Unknown option names raise TypeError rather than being silently ignored.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None,
                 config_defaults: Optional[str] = None, **flat_synthesis_kwargs):
        super().__init__()
        if synthesis_kwargs is not None and flat_synthesis_kwargs:
            raise TypeError("Generator: pass synthesis options either nested in synthesis_kwargs "
                            "(stylegan2-ada style) or flat (stylegan3 style), not both; got flat "
                            f"{sorted(flat_synthesis_kwargs)}")
        if config_defaults is None:
            config_defaults = "stylegan3" if flat_synthesis_kwargs else "stylegan2-ada"
        if config_defaults not in CONFIG_DEFAULTS:
            raise ValueError(f"config_defaults must be one of {sorted(CONFIG_DEFAULTS)}, got {config_defaults!r}")
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs if synthesis_kwargs is not None else flat_synthesis_kwargs)
        _reject_unknown("mapping_kwargs", mapping_kwargs, MAPPING_OPTIONS)
        _reject_unknown("synthesis options", synthesis_kwargs, SYNTHESIS_OPTIONS)
        defaults = CONFIG_DEFAULTS[config_defaults]
        mapping_kwargs = {**defaults["mapping"], **mapping_kwargs}
        synthesis_kwargs = {**defaults["synthesis"], **synthesis_kwargs}
        if "resample_filter" in synthesis_kwargs:
            synthesis_kwargs["resample_filter"] = [float(v) for v in synthesis_kwargs["resample_filter"]]

        self.z_dim = int(z_dim)
        self.c_dim = int(c_dim)
        self.w_dim = int(w_dim)
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.config_defaults = config_defaults
        # Synthesis first: it fixes num_ws, and the official parameter order lists it first.
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)
        # Fully resolved config (nested style): Generator(**G.init_kwargs) rebuilds the same network.
        self.init_kwargs = dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                                img_resolution=self.img_resolution, img_channels=self.img_channels,
                                mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: Optional[bool] = None,
                skip_w_avg_update: bool = False, **synthesis_kwargs) -> torch.Tensor:
        """z [N, z_dim] (+ one-hot c) -> image [N, C, R, R]; synthesis_kwargs as `SynthesisNetwork.forward`."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas, skip_w_avg_update=skip_w_avg_update)
        return self.synthesis(ws, **synthesis_kwargs)

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"img_resolution={self.img_resolution}, img_channels={self.img_channels}")


def _reject_unknown(where: str, kwargs: dict, accepted: Sequence[str]) -> None:
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"Generator: unknown {where} {unknown}; accepted official fields: {list(accepted)}")
