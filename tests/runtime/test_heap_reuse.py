"""Freed large CPU tensors stay in the process and are reused without page faults (runtime/heap_reuse.py).

Each case runs in a fresh interpreter: the setting belongs to the process.
Page faults are read from the kernel's own count (``ru_minflt``) around a
48 MiB tensor made after a 64 MiB one was freed; huge pages are turned
off there so that a fresh tensor costs thousands of faults, not dozens.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT as REPO

from stylegan_unmask.runtime import heap_reuse


PROBE = r"""
import json, resource
import stylegan_unmask, torch
from stylegan_unmask.runtime.heap_reuse import heap_reuse_enabled

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

first = torch.ones(64 << 20, dtype=torch.uint8)   # 64 MiB: above glibc's largest mmap threshold
del first
before = faults()
second = torch.ones(48 << 20, dtype=torch.uint8)  # fits in the freed block
print(json.dumps({"enabled": heap_reuse_enabled(), "faults": faults() - before, "sum": int(second[::4096].sum())}))
"""


def _probe(**env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != heap_reuse.ENV_VAR}
    environment.update(env, THP_MEM_ALLOC_ENABLE="0")
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(heap_reuse._glibc() is None, reason="heap reuse needs glibc (Linux); elsewhere it is off")
def test_freed_tensors_are_reused_without_page_faults():
    reused = _probe()
    fresh = _probe(**{heap_reuse.ENV_VAR: "0"})
    assert reused["enabled"] and not fresh["enabled"]
    assert reused["sum"] == fresh["sum"] == (48 << 20) // 4096          # the values are what was asked for
    # A fresh 48 MiB tensor is faulted in page by page (12288 x 4 KiB, or 24 huge pages where the kernel
    # gives them anyway); the reused block is already there.
    assert fresh["faults"] >= 24
    assert reused["faults"] < min(24, fresh["faults"] // 4), (reused, fresh)


def test_opt_out_and_other_c_libraries(monkeypatch):
    monkeypatch.setattr(heap_reuse, "_enabled", None)
    monkeypatch.setenv(heap_reuse.ENV_VAR, "0")
    assert heap_reuse.keep_freed_memory() is False and not heap_reuse.heap_reuse_enabled()
    monkeypatch.setattr(heap_reuse, "_enabled", None)
    monkeypatch.delenv(heap_reuse.ENV_VAR)
    monkeypatch.setattr(heap_reuse, "_glibc", lambda: None)             # musl, macOS, Windows
    assert heap_reuse.keep_freed_memory() is False
