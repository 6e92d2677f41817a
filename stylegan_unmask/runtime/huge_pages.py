"""Transparent huge pages for torch's large CPU tensors.

A projection step at 1024 px allocates dozens of fresh 64-128 MiB tensors, and
with 4 KiB pages the kernel faults and zeroes each of them page by page, which
took longer than the arithmetic on them (measurements: docs/projector.md).
torch can ask for 2 MiB pages instead (``THP_MEM_ALLOC_ENABLE=1``), which it
reads once, at its first CPU allocation. ``import stylegan_unmask`` sets that
variable unless the user has (``THP_MEM_ALLOC_ENABLE=0`` opts out). Where
torch had already allocated before that import (a notebook that imported torch
and made tensors first), :func:`warn_if_unused` says so once.
This module must not import torch at import time.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

from .heap_reuse import fresh_mappings

__all__ = ["ENV_VAR", "request_huge_pages", "huge_pages_in_use", "warn_if_unused"]

ENV_VAR = "THP_MEM_ALLOC_ENABLE"
_KERNEL_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
_PROBE_BYTES = 64 << 20
_warned = False


def request_huge_pages() -> None:
    """Ask torch for huge pages on large CPU allocations, unless the user chose already."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault(ENV_VAR, "1")


def _kernel_allows_huge_pages() -> bool:
    """False where the kernel never gives huge pages ('[never]'), or the setting cannot be read."""
    try:
        with open(_KERNEL_SETTING) as fh:
            return "[never]" not in fh.read()
    except OSError:
        return False


def huge_pages_in_use() -> Optional[bool]:
    """Whether a fresh large torch CPU tensor is backed by huge pages (None: cannot be told here).

    Read from the kernel's own account of this process (``/proc/self/smaps``,
    field ``AnonHugePages`` of the mapping that holds the tensor). The probe is
    64 MiB, above glibc's largest mmap threshold (32 MiB), and made with mmap
    allowed (``heap_reuse.fresh_mappings``), so it always gets fresh pages
    rather than reused heap memory that would read as 4 KiB pages.
    """
    if not sys.platform.startswith("linux"):
        return None
    import torch  # not at module level: torch must not allocate before request_huge_pages

    with fresh_mappings():  # heap reuse would hand back old heap memory, which says nothing
        probe = torch.ones(_PROBE_BYTES, dtype=torch.uint8)
    address = probe.data_ptr()
    try:
        with open("/proc/self/smaps") as fh:
            inside = False
            for line in fh:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    low, high = (int(v, 16) for v in head.split("-"))
                    inside = low <= address < high
                elif inside and head == "AnonHugePages:":
                    return int(line.split()[1]) > 0
    except (OSError, ValueError):
        return None
    return None


def warn_if_unused() -> None:
    """One warning per process when huge pages would help but torch is not using them."""
    global _warned
    if _warned:
        return
    _warned = True
    if os.environ.get(ENV_VAR, "1") in ("0", "false", "False") or not _kernel_allows_huge_pages():
        return
    if huge_pages_in_use() is False:
        warnings.warn(
            f"torch's CPU tensors are not on huge pages (torch reads {ENV_VAR} at its first allocation, "
            f"which happened before stylegan_unmask was imported): CPU projection runs about 1.4x slower. "
            f"Set {ENV_VAR}=1 in the environment, or import stylegan_unmask before creating tensors.",
            RuntimeWarning, stacklevel=3)
