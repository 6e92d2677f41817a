"""A projected discriminator on frozen VGG16 features (after Sauer et al., 2021, "Projected GANs Converge Faster").

Judging images in the feature space of a pretrained network lets a GAN learn
from far fewer images: D does not have to learn what an edge, an eye or skin
texture is, only how real and generated features differ. We reuse the
ImageNet VGG16 the projector already ships (no download), take three stages
(conv2_2, conv3_3, conv4_3: 1/2, 1/4, 1/8 of the input) and put a small
spectrally-normalised convolutional head on each; the logit is the sum of the
heads' mean outputs. Only the heads train.

VGG features are nearly blind to global colour (measured: with VGG heads
alone, samples after 2k images were saturated pink/green blobs), so one more
head looks at the RGB pixels themselves at half resolution: cheap, and it
pins down skin tones from the first thousand images. conv1_2 is left out:
with a head on it, G learned to add per-pixel speckle that excites VGG's
first layer (measured: 6 kimg of noisy, structureless samples).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..perceptual import VGG16Features

FEATURE_LAYERS = ("conv2_2", "conv3_3", "conv4_3")
RGB_HEAD = "rgb"  # the pixels, average-pooled to half resolution
FEATURE_CHANNELS = {"conv1_2": 64, "conv2_2": 128, "conv3_3": 256, "conv4_3": 512}


def _conv(cin, cout, k, stride=1, padding=0):
    return spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=padding))


class Head(nn.Module):
    """Feature map (C × S × S) → per-position logits, halving the grid down to 4 × 4."""

    def __init__(self, channels: int, size: int, width: int = 128):
        super().__init__()
        layers = [_conv(channels, width, 1), nn.LeakyReLU(0.2)]
        while size > 4:
            layers += [_conv(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            size //= 2
        layers += [_conv(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ProjectedDiscriminator(nn.Module):
    """Images in [-1, 1] → one logit per image (higher = more real)."""

    def __init__(self, img_resolution: int, layers: Sequence[str] = FEATURE_LAYERS, width: int = 128,
                 vgg: VGG16Features = None, rgb_head: bool = True, rgb_width: int = 32):
        super().__init__()
        self.img_resolution = int(img_resolution)
        self.layers = tuple(layers)
        self.features = vgg if vgg is not None else VGG16Features(self.layers)
        self.features.requires_grad_(False).eval()
        heads = {}
        for name in self.layers:
            stride = 2 ** int(name[4]) // 2  # conv1 → 1, conv2 → 2, conv3 → 4, conv4 → 8, conv5 → 16
            heads[name] = Head(FEATURE_CHANNELS.get(name, 512), max(self.img_resolution // stride, 4), width)
        if rgb_head:
            heads[RGB_HEAD] = Head(3, max(self.img_resolution // 2, 4), rgb_width)
        self.heads = nn.ModuleDict(heads)
        # One scale per feature stage, set from the first real batch so every head sees unit-RMS
        # inputs (conv4_3 activations are ~50x conv2_2's; unscaled, the deepest head dominated).
        self.register_buffer("feature_scale", torch.zeros(len(self.layers)))

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen: never in training mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats: Dict[str, torch.Tensor] = self.features(images)
        if not bool((self.feature_scale > 0).all()):
            with torch.no_grad():
                self.feature_scale.copy_(torch.stack([feats[n].detach().float().square().mean().sqrt().clamp_min(1e-6)
                                                      for n in self.layers]))
        logits = images.new_zeros(images.shape[0], dtype=torch.float32)
        scales = {n: 1.0 / self.feature_scale[i] for i, n in enumerate(self.layers)}
        for name, head in self.heads.items():
            x = F.avg_pool2d(images, 2) if name == RGB_HEAD else feats[name] * scales[name].to(feats[name].dtype)
            logits = logits + head(x).float().mean(dim=(1, 2, 3))
        return logits

    def trainable_parameters(self):
        return self.heads.parameters()
