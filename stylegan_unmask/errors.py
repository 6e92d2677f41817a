"""Exceptions that carry a message a user can act on.

Every error raised for bad user input names the file (or option) and the
problem; the CLI prints ``str(error)`` without a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class UnmaskError(Exception):
    """Base class for errors the CLI reports without a traceback."""


class InputImageError(UnmaskError):
    """An input image could not be used (missing, corrupt, empty, unsupported)."""

    def __init__(self, path: Optional[Union[str, Path]], problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = "<array>" if path is None else str(path)
        super().__init__(f"{where}: {problem}")


class NoFaceError(InputImageError):
    """No face (or not the requested face) was found in an image."""


class CheckpointError(UnmaskError):
    """A network checkpoint is missing, corrupt, unsafe or of an unknown format."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list; nothing was executed."""


class DownloadError(UnmaskError):
    """A file could not be downloaded (offline, HTTP error, checksum mismatch)."""


class WeightsMissingError(UnmaskError):
    """Auxiliary weights (VGG16, landmark models) are not installed."""
