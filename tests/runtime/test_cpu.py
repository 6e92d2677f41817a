"""CPU capability probes (runtime/cpu.py): what decides bf16 in projection and training."""
from __future__ import annotations

import torch

from stylegan_unmask.runtime import cpu


def test_native_bf16_needs_the_isa_and_the_cpu_flag(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert cpu.cpu_has_native_bf16()
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: {"avx512f", "avx512_vnni"})
    assert not cpu.cpu_has_native_bf16()                       # AVX-512 without bf16 instructions
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: None)
    assert not cpu.cpu_has_native_bf16()                       # flags unreadable: be safe
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not cpu.cpu_has_native_bf16()                       # torch's kernels not at AVX-512 level
