"""The projected discriminator of Sauer et al. (NeurIPS 2021, "Projected GANs Converge Faster").

D judges images in the feature space of a frozen ImageNet network, so it
does not have to learn what an eye or skin texture is. Four stages of the
backbone are mixed by frozen *random* projections, first across channels
(CCM: a 1×1 convolution per stage) and then across scales (CSM: each stage is
added to the 2× upsampled, 1×1-projected stage below it, from the deepest up);
the randomness spreads the signal over all channels so D cannot lean on a few
of them. One small discriminator per scale (spectrally normalised convs,
batch-norm, LeakyReLU, halving to 8×8, then a 4×4 conv) outputs a grid of
logits; all logits of all scales are returned. As the authors did for a
StyleGAN2 generator, the heads can be weakened to separable convolutions.

Backbones: ``lite0`` (EfficientNet-lite0, the published one) and ``vgg16``
(the ImageNet VGG16 the projector ships).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

BACKBONES = ("lite0", "vgg16")
#: Head widths by feature-map size, as in the paper's code (the first layer takes the stage's channels).
HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
#: The heads halve their input until this size; then one 4x4 conv makes the logits.
HEAD_END = 8
#: CCM widths (cout, 2 cout, 4 cout, 8 cout) and the nominal sizes after CSM, fixed as in the paper (256 px input).
CCM_BASE = 64
NOMINAL_SIZES = (128, 64, 32, 16)
#: The smallest input whose deepest map (1/32, upsampled 2x by CSM, halved once) still fits the 4x4 logit conv.
MIN_INPUT = 128


def _sn_conv(cin, cout, k, stride=1, padding=0, groups=1, bias=True):
    return spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=bias))


# ----------------------------------------------------------------------------- frozen feature network
class Lite0Stages(nn.Module):
    """EfficientNet-lite0 cut into four stages at 1/4, 1/8, 1/16, 1/32 of the input (24, 40, 112, 320 channels)."""

    CHANNELS = (24, 40, 112, 320)
    CUTS = (2, 3, 5, 7)  # stages[0:2], [2:3], [3:5], [5:7]

    def __init__(self):
        super().__init__()
        from ..perceptual.efficientnet_lite import EfficientNetLite0

        self.net = EfficientNetLite0()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.net.stem(x)
        outs, start = [], 0
        for cut in self.CUTS:
            for stage in self.net.stages[start:cut]:
                x = stage(x)
            outs.append(x)
            start = cut
        return outs


class VGG16Stages(nn.Module):
    """VGG16 conv2_2, conv3_3, conv4_3, conv5_3 (1/2 ... 1/16 of the input)."""

    LAYERS = ("conv2_2", "conv3_3", "conv4_3", "conv5_3")
    CHANNELS = (128, 256, 512, 512)

    def __init__(self):
        super().__init__()
        from ..perceptual import VGG16Features

        self.net = VGG16Features(self.LAYERS)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.net(x)
        return [feats[name] for name in self.LAYERS]


class FuseUp(nn.Module):
    """CSM step: (deeper + this stage) → 2× bilinear upsample → 1×1 conv (halving channels where asked)."""

    def __init__(self, channels: int, halve: bool):
        super().__init__()
        self.out = nn.Conv2d(channels, channels // 2 if halve else channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor = None) -> torch.Tensor:
        if skip is not None:
            x = x + skip
        return self.out(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class RandomProjection(nn.Module):
    """Backbone → CCM → CSM, all frozen. Returns four maps of (64, 64, 128, 256) channels, shallow first."""

    def __init__(self, backbone: str = "lite0"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
        self.backbone = Lite0Stages() if backbone == "lite0" else VGG16Stages()
        mixed = [CCM_BASE * 2 ** i for i in range(4)]
        self.ccm = nn.ModuleList(nn.Conv2d(c, m, 1) for c, m in zip(self.backbone.CHANNELS, mixed))
        self.csm = nn.ModuleList(FuseUp(m, halve=i > 0) for i, m in enumerate(mixed))
        self.channels: Tuple[int, ...] = (mixed[0],) + tuple(m // 2 for m in mixed[1:])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: batch-norm statistics never move

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [ccm(f) for ccm, f in zip(self.ccm, self.backbone(x))]
        out = [self.csm[3](feats[3])]
        for i in (2, 1, 0):
            out.insert(0, self.csm[i](out[0], feats[i]))
        return out


# ----------------------------------------------------------------------------- trainable heads
class DownBlock(nn.Module):
    """Halve the map: 4×4 stride-2 conv, or (separable) depthwise 3×3 + pointwise + 2×2 average pool."""

    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        if separable:
            conv = [_sn_conv(cin, cin, 3, padding=1, groups=cin, bias=False), _sn_conv(cin, cout, 1, bias=False)]
            self.net = nn.Sequential(*conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2), nn.AvgPool2d(2))
        else:
            self.net = nn.Sequential(_sn_conv(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ScaleHead(nn.Module):
    """One scale's discriminator: down blocks from the nominal size to 8, then a 4×4 conv to a logit grid."""

    def __init__(self, channels: int, nominal_size: int, separable: bool):
        super().__init__()
        widths = {**HEAD_CHANNELS, nominal_size: channels}
        layers, size = [], nominal_size
        while size > HEAD_END:
            layers.append(DownBlock(widths[size], widths[size // 2], separable))
            size //= 2
        layers.append(_sn_conv(widths[HEAD_END], 1, 4, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    """Images in [-1, 1] → ``[N, L]`` logits (every head's grid, concatenated; higher = more real)."""

    def __init__(self, backbone: str = "lite0", input_size: int = 224, separable: bool = True,
                 channels_last: bool = False):
        super().__init__()
        if input_size < MIN_INPUT:
            raise ValueError(f"D input size {input_size} is below {MIN_INPUT} (the deepest head needs a 4x4 map)")
        self.input_size = int(input_size)
        self.channels_last = bool(channels_last)
        self.projection = RandomProjection(backbone)
        self.heads = nn.ModuleList(ScaleHead(c, s, separable)
                                   for c, s in zip(self.projection.channels, NOMINAL_SIZES))
        if self.channels_last:  # oneDNN's depthwise convolutions are much faster in NHWC on CPUs
            self.to(memory_format=torch.channels_last)

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The frozen part: resize to the backbone's input size, project. Gradients flow to ``images``."""
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.projection(images)

    def judge(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The trainable part: the heads on projected features."""
        return torch.cat([head(f) for head, f in zip(self.heads, features)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge(self.features(images))

    def trainable_parameters(self):
        return self.heads.parameters()
