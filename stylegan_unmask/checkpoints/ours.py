"""Our own network format: a ``torch.save`` file of tensors and plain values only.

Written by training (``stylegan-unmask train`` / ``export``), read back through
:mod:`.torch_file` (``torch.load(weights_only=True)``), so nothing in it can run
code. A *network file* holds ``G_ema`` (and optionally ``G``) with the
Generator's constructor arguments, the crop scale the training faces were
aligned with, and the training record; a *training state* adds ``D``, the
optimisers, the random-generator states and the image counter, so ``--resume``
continues exactly where a run stopped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..atomic import atomic_file
from ..errors import CheckpointError
from .spec import FORMAT_OURS, NetworkSpec
from .torch_file import load_torch_file

__all__ = ["FORMAT", "VERSION", "network_record", "save", "load", "is_record", "read_ours", "export_network"]

FORMAT = "stylegan-unmask-network"
VERSION = 1


def network_record(G_ema, init_kwargs: dict, crop_scale: float, training: Optional[dict] = None,
                   G=None, half: bool = False) -> Dict[str, Any]:
    """The dict written to a network file (``half`` stores float weights as fp16 to halve the size)."""
    def state(module):
        sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        if half:
            sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        return sd

    rec: Dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "init_kwargs": _plain(init_kwargs),
        "crop_scale": float(crop_scale),
        "G_ema": state(G_ema),
        "training": _plain(training or {}),
    }
    if G is not None:
        rec["G"] = state(G)
    return rec


def save(path: Union[str, Path], record: Dict[str, Any]) -> Path:
    """Write atomically: a run killed mid-write leaves the previous file intact."""
    with atomic_file(path, suffix=".pt") as tmp:
        torch.save(record, tmp)
    return Path(path)


def load(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a network file or training state safely (``weights_only=True``)."""
    obj = load_torch_file(path)
    if not is_record(obj):
        raise CheckpointError(f"{path}: not a stylegan-unmask network file (no 'format': {FORMAT!r} entry)")
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: written by a newer stylegan-unmask (format version {obj['version']}); upgrade")
    return obj


def is_record(obj: Any) -> bool:
    """Is ``obj`` (a loaded ``torch.save`` file) one of our network files or training states?"""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def read_ours(obj: dict, key: str, source: str) -> NetworkSpec:
    """The generator ``key`` of a loaded network file as a :class:`NetworkSpec` (weights widened to fp32)."""
    if key not in obj:
        have = [k for k in ("G_ema", "G") if k in obj]
        raise CheckpointError(f"{source}: has no {key!r} network (it holds {', '.join(have) or 'none'})")
    kwargs = obj.get("init_kwargs")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the network file lacks its init_kwargs")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in obj[key].items()
             if isinstance(v, torch.Tensor)}
    return NetworkSpec(init_kwargs=dict(kwargs), state_dict=state, format=FORMAT_OURS, source=source, key=key,
                       raw_init_kwargs=dict(kwargs), crop_scale=float(obj.get("crop_scale", 1.0)),
                       training=dict(obj.get("training") or {}),
                       projection=_projection_settings(obj.get("projection"), source))


PROJECTION_SETTINGS = ("w_prior",)


def _projection_settings(value, source: str) -> Dict[str, float]:
    """A file's recommended projection settings: known names, non-negative numbers."""
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - set(PROJECTION_SETTINGS) \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise CheckpointError(f"{source}: its 'projection' entry must map {PROJECTION_SETTINGS} to numbers >= 0, "
                              f"got {value!r}")
    return {k: float(v) for k, v in value.items()}


def _plain(value):
    """Only types ``weights_only`` loading accepts: dict/list/tuple/str/int/float/bool/None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return str(value)  # also turns str subclasses (torch.__version__) into plain str
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value
    return str(value)


def export_network(src: Union[str, Path], dst: Union[str, Path], half: bool = True,
                   w_prior: Optional[float] = None) -> Path:
    """A network snapshot or training state → a small network file (G_ema only; fp16 weights by default).

    fp16 storage halves the file (the shipped ``faces-128`` and ``faces-64`` are stored this way);
    weights are widened back to fp32 when loaded, so results differ from the
    fp32 snapshot only by that rounding. ``w_prior``: the projection's latent
    prior this network recommends (``ProjectionConfig.w_prior``), kept in the file.
    """
    rec = load(src)
    out = {k: v for k, v in rec.items()
           if k in ("format", "version", "init_kwargs", "crop_scale", "training", "projection")}
    if w_prior is not None:
        out["projection"] = dict(_projection_settings(out.get("projection"), str(src)), w_prior=float(w_prior))
    out["G_ema"] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in rec["G_ema"].items()}
    out["training"] = dict(out.get("training") or {}, exported_from=Path(src).name,
                           stored_dtype="float16" if half else "float32")
    return save(dst, out)
