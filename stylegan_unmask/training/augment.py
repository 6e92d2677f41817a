"""DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable colour / translation / cutout transforms are
applied to real and generated images before the discriminator, so D cannot
memorise the training faces and G still receives gradients through them.
Written from the paper's description; a ``torch.Generator`` drives every draw.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def diff_augment(x: torch.Tensor, policy: Sequence[str] = POLICIES, generator: Optional[torch.Generator] = None,
                 translation: float = 0.125, cutout: float = 0.5) -> torch.Tensor:
    for name in policy:
        if name == "color":
            x = _color(x, generator)
        elif name == "translation":
            x = _translate(x, translation, generator)
        elif name == "cutout":
            x = _cutout(x, cutout, generator)
        elif name:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(POLICIES)}")
    return x


def _rand(shape, x, generator):
    return torch.rand(shape, generator=generator, device="cpu").to(device=x.device, dtype=x.dtype)


def _color(x, generator):
    n = x.shape[0]
    x = x + (_rand([n, 1, 1, 1], x, generator) - 0.5)                    # brightness ±0.5 (images in [-1, 1])
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand([n, 1, 1, 1], x, generator) * 2) + mean      # saturation 0..2
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * (_rand([n, 1, 1, 1], x, generator) + 0.5) + mean    # contrast 0.5..1.5
    return x


def _translate(x, ratio, generator):
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, [n, 1, 1], generator=generator).to(x.device)
    tx = torch.randint(-sw, sw + 1, [n, 1, 1], generator=generator).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy.unsqueeze(0) + ty + 1, 0, h + 1)
    gx = torch.clamp(gx.unsqueeze(0) + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # shifted-in pixels are zero (mid-grey)
    idx = (gy * (w + 2) + gx).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, idx).view_as(x)


def _cutout(x, ratio, generator):
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), [n, 1, 1], generator=generator).to(x.device)
    ox = torch.randint(0, w + (1 - cw % 2), [n, 1, 1], generator=generator).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy.unsqueeze(0) >= oy - ch // 2) & (gy.unsqueeze(0) < oy - ch // 2 + ch)
              & (gx.unsqueeze(0) >= ox - cw // 2) & (gx.unsqueeze(0) < ox - cw // 2 + cw))
    return x * (~inside).unsqueeze(1).to(x.dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur with a Gaussian of ``sigma`` pixels (radius 3σ), reflect-padded; identity for σ < 1/3.

    StyleGAN-XL blurs D's input early in training so that D first judges the
    coarse layout of a face and only later its fine texture.
    """
    radius = int(sigma * 3)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, [radius] * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
