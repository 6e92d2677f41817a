"""Atomic file writes: a killed run leaves the old file or the new one, never half of one.

Every output the tool writes (images, masks, latents, reports, caches) goes
through :func:`atomic_file`; the batch runner's resume logic relies on it.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

_UMASK = os.umask(0)  # read once (setting it is the only way to read it)
os.umask(_UMASK)


def file_mode(path: PathLike) -> int:
    """Permissions for a file about to be (re)written: the old file's, else the umask default.

    ``mkstemp`` creates 0600 files; results should be as readable as any other file the user writes.
    """
    p = Path(path)
    if p.exists():
        return p.stat().st_mode & 0o7777
    return 0o666 & ~_UMASK


@contextmanager
def atomic_file(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    ``suffix`` matters to writers that pick a format from the extension (video).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
