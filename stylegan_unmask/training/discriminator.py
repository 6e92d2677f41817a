"""A projected discriminator on frozen VGG16 features (after Sauer et al., 2021, "Projected GANs Converge Faster").

Judging images in the feature space of a pretrained network lets a GAN learn
from far fewer images: D does not have to learn what an edge, an eye or skin
texture is, only how real and generated features differ. We reuse the
ImageNet VGG16 the projector already ships (no download), take four stages
(conv1_2 … conv4_3, i.e. 1/1 … 1/8 of the input) and put a small
spectrally-normalised convolutional head on each; the logit is the sum of the
heads' mean outputs. Only the heads train.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..perceptual import VGG16Features

FEATURE_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3")
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
                 vgg: VGG16Features = None):
        super().__init__()
        self.img_resolution = int(img_resolution)
        self.layers = tuple(layers)
        self.features = vgg if vgg is not None else VGG16Features(self.layers)
        self.features.requires_grad_(False).eval()
        heads = {}
        for name in self.layers:
            stride = 2 ** int(name[4]) // 2  # conv1 → 1, conv2 → 2, conv3 → 4, conv4 → 8, conv5 → 16
            heads[name] = Head(FEATURE_CHANNELS.get(name, 512), max(self.img_resolution // stride, 4), width)
        self.heads = nn.ModuleDict(heads)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen: never in training mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats: Dict[str, torch.Tensor] = self.features(images)
        logits = images.new_zeros(images.shape[0], dtype=torch.float32)
        for name, head in self.heads.items():
            logits = logits + head(feats[name]).float().mean(dim=(1, 2, 3))
        return logits

    def trainable_parameters(self):
        return self.heads.parameters()
