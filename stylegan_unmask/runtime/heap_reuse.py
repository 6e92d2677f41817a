"""Keep freed large CPU tensors in the process, so that the next step reuses their memory.

glibc serves every allocation above its mmap threshold (32 MiB at most) with
a fresh ``mmap`` and returns it with ``munmap`` when freed. A projection step
at 1024 px allocates and frees dozens of 32-128 MiB tensors, so at every step
the kernel maps, faults in and zeroes that memory again; even on huge pages
(``huge_pages.py``) this took several times longer than the arithmetic on
those tensors. With mmap off (``mallopt(M_MMAP_MAX, 0)``) and trimming off
(``M_TRIM_THRESHOLD`` at its maximum) freed blocks stay on glibc's heap and
are handed out again as they are - what PyTorch's CPU tuning guide gets from
preloading jemalloc or tcmalloc, without preloading anything. The
measurements are in docs/projector.md.

The price: the process keeps its peak memory until it exits, which suits a
projection (the same sizes, step after step). ``import stylegan_unmask`` turns
it on with glibc on Linux; ``STYLEGAN_UNMASK_HEAP_REUSE=0`` opts out. It
changes where memory comes from, never a result. Must not import torch.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Optional

__all__ = ["ENV_VAR", "keep_freed_memory", "heap_reuse_enabled", "fresh_mappings"]

ENV_VAR = "STYLEGAN_UNMASK_HEAP_REUSE"
_M_TRIM_THRESHOLD = -1       # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_TRIM_NEVER = 0x7FFFFFFF      # the largest value mallopt accepts: never give the heap's top back
_enabled: Optional[bool] = None


def _glibc():
    """glibc's handle, or None on other C libraries (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them (no ldconfig at import)
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt
        libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Turn heap reuse on (once per process) unless the user opted out; True when it is on."""
    global _enabled
    if _enabled is not None:
        return _enabled
    _enabled = False
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on failure.
    _enabled = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER))
    return _enabled


_GLIBC_DEFAULT_MMAP_MAX = 65536


@contextlib.contextmanager
def fresh_mappings():
    """Within the block, a large allocation gets memory the kernel has not backed yet.

    For probes that must see newly faulted memory (``huge_pages.huge_pages_in_use``):
    the heap's free blocks are given back first (``malloc_trim``; glibc returns
    their pages even in the middle of the heap), and mmap is allowed again, so a
    block freed inside is unmapped, not kept.
    """
    libc = _glibc() if _enabled else None
    if libc is not None:
        libc.malloc_trim(0)
        libc.mallopt(_M_MMAP_MAX, _GLIBC_DEFAULT_MMAP_MAX)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, 0)


def heap_reuse_enabled() -> bool:
    """Whether this process turned heap reuse on (False before :func:`keep_freed_memory` ran)."""
    return bool(_enabled)
