"""What this CPU can do natively, for the choices that depend on it (bf16 in projection and training)."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["cpu_has_native_bf16"]

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> Optional[set]:
    """The CPU feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") or line.startswith("Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_has_native_bf16() -> bool:
    """True when torch's CPU kernels run at AVX-512 level on a CPU with bf16 instructions.

    ``torch.backends.cpu.get_cpu_capability()`` says which vector ISA torch's
    kernels use ('AVX512' here, also on CPUs without bf16 arithmetic); the
    bf16 instructions themselves (``avx512_bf16`` / ``amx_bf16``) are read
    from the CPU flags. Without them bf16 is emulated and slower than fp32.
    """
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if not capability.startswith(("AVX512", "AMX")):
        return False
    flags = _cpu_flags()
    return bool(flags) and any(flag in flags for flag in _BF16_CPU_FLAGS)
