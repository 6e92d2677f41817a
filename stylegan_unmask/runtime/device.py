"""Which device to run on, and which device a network lives on: the one place that decides."""
from __future__ import annotations

import os
from typing import Optional, Union

import torch

from ..errors import UnmaskError

__all__ = ["resolve_device", "module_device"]

DeviceLike = Optional[Union[str, torch.device]]


def resolve_device(device: DeviceLike = None, *, per_process: bool = False) -> torch.device:
    """The device to run on.

    None, '' or 'auto': CUDA when available, else the CPU. A ``torch.device``
    is taken as it is; a name as torch reads it ('cpu', 'cuda', 'cuda:1'),
    refused when it asks for CUDA on a machine without it. ``per_process``
    (folder runs, which torchrun may start once per GPU): a request that names
    no GPU index gets this process's GPU, ``LOCAL_RANK``.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "", "auto"):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UnmaskError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if per_process and dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return dev


def module_device(module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for an empty module."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
