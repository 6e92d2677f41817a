"""Reading any ``torch.save`` file safely: tensors, containers and plain values, never code.

``torch.load(weights_only=True)`` is torch's own allow-listing unpickler; this
wrapper adds the one inert class rosinality's training script stores
(``argparse.Namespace``) and turns every failure into a
:class:`~stylegan_unmask.errors.CheckpointError` or
:class:`~stylegan_unmask.errors.UnsafePickleError` that names the file and
says what is wrong. Every ``.pt`` reader (rosinality files, our network
files, cached VGG16 weights) goes through :func:`load_torch_file`.
"""
from __future__ import annotations

import argparse
import pickle
import re
import struct
from pathlib import Path
from typing import Any, Union

import torch

from ..errors import CheckpointError, UnsafePickleError

__all__ = ["load_torch_file"]


def load_torch_file(path: Union[str, Path], source: str = "") -> Any:
    """``torch.load(weights_only=True)`` on the CPU, with errors that name the file and say what is wrong."""
    path = Path(path)
    source = source or str(path)
    # rosinality's train.py stores its argparse options under 'args'; that class is inert.
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe_globals is not None:
            with safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        if "weights_only" in message or "Weights only load failed" in message or "Unsupported" in message:
            match = re.search(r"(?:GLOBAL|global|Unsupported class|function) ([A-Za-z_][\w.]*)", message)
            name = match.group(1) if match else "a non-tensor object"
            err = UnsafePickleError(
                f"{source}: refused to load: the file asks for '{name}', which torch's safe loader "
                f"(weights_only=True) does not allow. Nothing from the file was executed. A StyleGAN2 "
                f"weight file needs only tensors and dicts; if you do not trust its origin, delete it."
            )
            err.global_name = name  # type: ignore[attr-defined]
            err.path = source  # type: ignore[attr-defined]
            raise err from None
        raise CheckpointError(f"{source}: corrupt PyTorch file ({message})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, struct.error) as e:
        raise CheckpointError(
            f"{source}: cannot read this PyTorch file; it is truncated or corrupt ({type(e).__name__}: {e}). "
            f"If it was downloaded, delete it and download it again"
        ) from None
