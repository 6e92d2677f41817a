"""The loaded network and perceptual features, cached per process, and what a result records about them.

Loading the 1024-px checkpoint takes seconds; the notebook, the folder runs and
the evaluation call the pipeline many times with the same network.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

from .. import DEFAULT_NETWORK
from ..checkpoints import load_generator
from ..perceptual import VGG16Features
from ..runtime.device import resolve_device

__all__ = ["get_network", "get_features", "network_source", "network_crop_scale"]

PathLike = Union[str, "os.PathLike[str]"]

_NETWORKS: Dict[Tuple[str, str], object] = {}
_FEATURES: Dict[Tuple[Tuple[str, ...], str], object] = {}
_CACHE_LOCK = threading.Lock()


def _spec_key(spec) -> str:
    p = Path(str(spec)).expanduser()
    if p.exists():
        st = p.stat()
        return f"{p.resolve()}@{st.st_mtime_ns}:{st.st_size}"
    return str(spec)


def get_network(spec: PathLike = DEFAULT_NETWORK, device=None):
    """``load_generator`` with a per-process cache (by spec and device)."""
    dev = resolve_device(device)
    key = (_spec_key(spec), str(dev))
    with _CACHE_LOCK:
        G = _NETWORKS.get(key)
        if G is None:
            G = load_generator(str(spec), device=dev)
            _NETWORKS[key] = G
    return G


def get_features(layers: Sequence[str], device) -> VGG16Features:
    """The projector's VGG16 features for ``layers`` on ``device``, built once per process."""
    key = (tuple(layers), str(device))
    with _CACHE_LOCK:
        f = _FEATURES.get(key)
        if f is None:
            f = VGG16Features(tuple(layers)).to(device).eval()
            _FEATURES[key] = f
    return f


def network_source(G) -> str:
    """Where a generator came from (``G.source``), for reports and the latent file."""
    return str(getattr(G, "source", None) or "<in-memory network>")


def network_crop_scale(G) -> float:
    """The alignment zoom ``G`` was trained with (recorded in our network files; NVIDIA's: 1.0)."""
    return float(getattr(G, "crop_scale", 1.0))
