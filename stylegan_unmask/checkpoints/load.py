"""From a network name, URL or file to a ready StyleGAN2 generator.

``load_generator(DEFAULT_NETWORK)`` resolves the name in :mod:`.registry`, finds or
downloads the file (:mod:`.download`), reads it without executing anything
(:mod:`.safe_pickle`/:mod:`.nvidia_pickle` for NVIDIA pickles, :mod:`.torch_file`
with :mod:`.rosinality` or :mod:`.ours` for ``.pt`` files) into a :class:`NetworkSpec`, and builds
:class:`stylegan_unmask.networks.stylegan2.Generator` from it with a strict
state-dict load. It never returns a network with random weights: every problem
is a :class:`~stylegan_unmask.errors.CheckpointError` or
:class:`~stylegan_unmask.errors.DownloadError` naming the file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Tuple, Union

from .. import DEFAULT_NETWORK
from ..errors import CheckpointError
from ..networks.stylegan2 import Generator
from . import download
from .download import fetch, url_filename
from .nvidia_pickle import read_nvidia_pickle
from .ours import is_record, read_ours
from .registry import REGISTRY, CheckpointEntry, bundled_path, find_entry_by_url, get_entry
from .rosinality import is_rosinality_state, read_rosinality
from .spec import FORMAT_NVIDIA_PICKLE, NetworkSpec
from .torch_file import load_torch_file

__all__ = ["build_generator", "load_generator", "read_checkpoint", "resolve_checkpoint", "sniff_format"]

_ZIP_MAGIC = b"PK\x03\x04"
# A legacy (non-zip) torch.save file starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."

FORMAT_TORCH = "torch"


def sniff_format(path: Union[str, Path]) -> str:
    """``'nvidia-pickle'`` or ``'torch'`` from the file's first bytes (the extension is not trusted)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(f"{path}: the file is empty (an interrupted download?); delete it and download it again")
    if head.startswith(_ZIP_MAGIC) or head[2:].startswith(_LEGACY_TORCH_MAGIC):
        return FORMAT_TORCH
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return FORMAT_NVIDIA_PICKLE
    stripped = head.lstrip().lower()
    if stripped.startswith(b"version https://git-lfs"):
        problem = "is a Git LFS pointer, not the weights; fetch the real file with `git lfs pull` or download it"
    elif stripped.startswith((b"<!doctype", b"<html", b"<?xml")):
        problem = "is an HTML/XML page, not a checkpoint (a failed or redirected download?); download it again"
    else:
        problem = ("is not a network checkpoint: expected an NVIDIA network pickle (.pkl, stylegan2-ada-pytorch / "
                   "stylegan3) or a rosinality PyTorch file (.pt)")
    raise CheckpointError(f"{path}: {problem}")


def read_checkpoint(path: Union[str, Path], key: str = "G_ema", source: str = "") -> NetworkSpec:
    """Read the generator ``key`` (``'G_ema'`` or ``'G'``) of a checkpoint file into a :class:`NetworkSpec`.

    Works for NVIDIA network pickles and rosinality ``.pt`` files; executes nothing from the file.
    """
    path = Path(path)
    source = source or str(path)
    kind = sniff_format(path)
    if kind == FORMAT_NVIDIA_PICKLE:
        return read_nvidia_pickle(path, key=key, source=source)
    obj = load_torch_file(path, source)
    if is_record(obj):
        return read_ours(obj, key, source)
    if isinstance(obj, dict) and (
        is_rosinality_state(obj)
        or any(isinstance(v, dict) and is_rosinality_state({k.replace("module.", "", 1): t for k, t in v.items()})
               for v in obj.values())
    ):
        return read_rosinality(path, key=key, source=source, obj=obj)
    found = ", ".join(repr(k) for k in list(obj)[:10]) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{source}: a PyTorch file, but not a rosinality StyleGAN2 checkpoint (found {found}; expected "
        f"'g_ema' with keys like 'style.1.weight'). NVIDIA networks must be given as their .pkl files"
    )


def resolve_checkpoint(spec: Union[str, Path], cache_dir: Optional[Union[str, Path]] = None,
                       progress: bool = True) -> Tuple[Path, str]:
    """(local file, human-readable origin) for a registry name, http(s) URL or local path."""
    if isinstance(spec, Path) or (isinstance(spec, str) and os.path.exists(spec)):
        path = Path(spec)
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        return path, str(path)
    if not isinstance(spec, str) or not spec.strip():
        raise CheckpointError(f"invalid network {spec!r}: give a registry name, a URL or a file path")
    text = spec.strip()
    search = [d for d in [download.repo_checkpoints_dir()] if d is not None]
    if re.match(r"^https?://", text, re.IGNORECASE):
        entry = find_entry_by_url(text)
        if entry is not None:
            return _fetch_entry(entry, cache_dir, progress, search), f"{text} ({entry.name})"
        path = fetch(text, url_filename(text), None, "checkpoints", cache_dir=cache_dir, progress=progress)
        return path, text
    entry = get_entry(text)
    if entry is not None:
        path = _fetch_entry(entry, cache_dir, progress, search)
        return path, f"{entry.name} ({path})"
    if "/" in text or "\\" in text or text.lower().endswith((".pkl", ".pt", ".pth")):
        raise CheckpointError(f"{text}: no such file")
    raise CheckpointError(
        f"unknown network {text!r}: not a file, an http(s) URL or a known name "
        f"({', '.join(REGISTRY)}; see checkpoints/README.md)"
    )


def _fetch_entry(entry: CheckpointEntry, cache_dir, progress: bool, search) -> Path:
    if entry.bundled:
        path = bundled_path(entry)
        if not path.is_file():
            raise CheckpointError(f"{entry.name}: the shipped network file {path} is missing from this installation; "
                                  f"reinstall stylegan-unmask (pip install -e . from a full checkout)")
        return path
    return fetch(
        entry.url,
        entry.filename,
        entry.sha256,
        "checkpoints",
        cache_dir=cache_dir,
        search_dirs=search,
        local_names=entry.local_names,
        progress=progress,
        reference_sha256=entry.reference_sha256,
        reference_source=entry.reference_source,
    )


def build_generator(net: NetworkSpec, device: Union[str, "torch.device"] = "cpu"):  # noqa: F821
    """Instantiate the Generator described by ``net`` and load its weights strictly."""
    try:
        G = Generator(**net.init_kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{net.source}: cannot build a StyleGAN2 generator with this configuration: {e}") from None
    own = G.state_dict()
    missing = [k for k in own if k not in net.state_dict]
    unexpected = [k for k in net.state_dict if k not in own]
    wrong = [f"{k} {tuple(net.state_dict[k].shape)} (expected {tuple(own[k].shape)})"
             for k in own if k in net.state_dict and net.state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}")
        raise CheckpointError(f"{net.source}: the weights do not fit the network they describe ({'; '.join(parts)})")
    G.load_state_dict(net.state_dict, strict=True)
    return G.eval().requires_grad_(False).to(device)


def load_generator(spec: Union[str, Path, NetworkSpec] = DEFAULT_NETWORK, device: Union[str, "torch.device"] = "cpu",  # noqa: F821
                   key: str = "G_ema", cache_dir: Optional[Union[str, Path]] = None, progress: bool = True):
    """A ready generator (eval mode, no gradients) from a name, URL, file or :class:`NetworkSpec`.

    ``spec``: a registry name (``DEFAULT_NETWORK``, ``'faces-128'``, by default), an http(s) URL, or
    a local ``.pkl`` (NVIDIA) / ``.pt`` (rosinality, or our own network file) file. ``key`` picks
    ``'G_ema'`` (default) or ``'G'``. The result has ``G.source`` (where it came
    from) and ``G.checkpoint_notes`` (decisions the reader made, usually empty).
    """
    if isinstance(spec, NetworkSpec):
        net, origin = spec, spec.source
    else:
        path, origin = resolve_checkpoint(spec, cache_dir=cache_dir, progress=progress)
        net = read_checkpoint(path, key=key)
    G = build_generator(net, device)
    G.source = f"{origin} [{net.key}, {net.format}]"
    G.checkpoint_notes = list(net.notes)
    G.crop_scale = float(net.crop_scale)
    G.training_record = dict(net.training)
    G.projection_defaults = dict(net.projection)
    return G
