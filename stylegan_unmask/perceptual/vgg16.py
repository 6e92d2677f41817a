"""VGG16 features and the LPIPS distance as torch modules, without torchvision.

The projector's perceptual term compares VGG16 activations of the generated
and the target image; training's discriminator and metrics use the same
features, evaluation the LPIPS distance. The 13 convolutions of VGG16's
``features`` stack are written out here; their weights come from
:mod:`.weights`.

Input convention everywhere: float images in [-1, 1] (the generator's range);
the ImageNet mean/std normalisation happens inside the modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsMissingError
from .weights import LPIPS_LAYERS, POOL_AFTER, REINSTALL_HINT, VGG16_CONVS, VGG16_LAYERS, vgg16_weights

__all__ = ["VGG16Features", "LPIPS", "IMAGENET_MEAN", "IMAGENET_STD"]

# ImageNet statistics of [0, 1] RGB images (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ImageNetInput(nn.Module):
    """[-1, 1] images -> ImageNet-normalised input (as torchvision's VGG expects)."""

    def __init__(self):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        # (x + 1) / 2 - mean) / std  ==  (x - shift) / scale
        self.register_buffer("shift", 2 * mean - 1, persistent=False)
        self.register_buffer("scale", 2 * std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images shaped [N, 3, H, W], got {list(x.shape)}")
        return (x - self.shift) / self.scale


class VGG16Features(nn.Module):
    """VGG16 activations (after ReLU) of [-1, 1] RGB images, by layer name.

    ``VGG16Features(layers=("conv2_2",))(x)`` returns ``{"conv2_2": tensor}``;
    the network is only built and run up to the deepest requested layer.
    Layer names are ``conv1_1`` ... ``conv5_3`` (see :data:`VGG16_LAYERS`).
    Parameters are frozen (``requires_grad=False``); gradients still flow to
    the input, which is what a perceptual loss needs.
    """

    def __init__(self, layers: Sequence[str] = ("conv2_2",), *,
                 weights: Optional[Mapping[str, torch.Tensor]] = None,
                 cache_dir: Optional[Union[str, Path]] = None):
        super().__init__()
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if not layers or unknown:
            raise ValueError(f"unknown VGG16 layer(s) {unknown or '(none given)'}; choose from {', '.join(VGG16_LAYERS)}")
        self.layers = tuple(sorted(set(layers), key=VGG16_LAYERS.index))
        depth = max(VGG16_LAYERS.index(name) for name in self.layers) + 1
        self.input_transform = _ImageNetInput()
        self.convs = nn.ModuleDict()
        for name, cin, cout in VGG16_CONVS[:depth]:
            self.convs[name] = nn.Conv2d(cin, cout, kernel_size=3, padding=1)
        state = weights if weights is not None else vgg16_weights(cache_dir)
        for name, conv in self.convs.items():
            conv.weight.data.copy_(state[f"{name}.weight"])
            conv.bias.data.copy_(state[f"{name}.bias"])
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.input_transform(images)
        wanted = set(self.layers)
        out: Dict[str, torch.Tensor] = {}
        for name, conv in self.convs.items():
            x = F.relu(conv(x))
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
            if name in POOL_AFTER:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        return out

    def extra_repr(self) -> str:
        return f"layers={self.layers}"


class LPIPS(nn.Module):
    """LPIPS v0.1 (VGG variant) distance between [-1, 1] images; returns one value per pair.

    Same recipe as the published metric: per-layer channel-normalised
    features, squared difference weighted by the learned linear heads,
    spatial mean, summed over the five layers. Used for evaluation only.
    """

    def __init__(self, *, weights: Optional[Mapping[str, torch.Tensor]] = None,
                 cache_dir: Optional[Union[str, Path]] = None):
        super().__init__()
        state = weights if weights is not None else vgg16_weights(cache_dir)
        missing = [f"lpips.lin{i}.weight" for i in range(5) if f"lpips.lin{i}.weight" not in state]
        if missing:
            raise WeightsMissingError(f"LPIPS linear-layer weights missing ({', '.join(missing)}); "
                                      f"reinstall them with: {REINSTALL_HINT}")
        self.features = VGG16Features(LPIPS_LAYERS, weights=state)
        for i in range(5):
            self.register_buffer(f"lin{i}", state[f"lpips.lin{i}.weight"].clone())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of equal shape, got {list(x.shape)} and {list(y.shape)}")
        fx, fy = self.features(x), self.features(y)
        total = x.new_zeros(x.shape[0])
        for i, name in enumerate(LPIPS_LAYERS):
            a = fx[name] / (fx[name].square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = fy[name] / (fy[name].square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            weighted = F.conv2d((a - b).square(), getattr(self, f"lin{i}"))
            total = total + weighted.mean(dim=(1, 2, 3))
        return total
