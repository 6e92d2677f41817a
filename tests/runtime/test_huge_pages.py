"""Huge pages for torch's CPU tensors: requested on import, checked by the kernel's own account.

Each case runs in a fresh interpreter, since torch reads the setting once, at
its first CPU allocation. What the kernel does depends on its THP mode, so the
cases that need a particular mode skip with that reason elsewhere.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT as REPO

from stylegan_unmask.runtime import huge_pages

LINUX = sys.platform.startswith("linux")


def _kernel_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else "unknown"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != huge_pages.ENV_VAR}
    environment.update(env)
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env=environment, timeout=300, cwd=REPO)


def test_request_respects_the_users_choice(monkeypatch):
    monkeypatch.delenv(huge_pages.ENV_VAR, raising=False)
    huge_pages.request_huge_pages()
    assert os.environ.get(huge_pages.ENV_VAR) == ("1" if LINUX else None)
    monkeypatch.setenv(huge_pages.ENV_VAR, "0")
    huge_pages.request_huge_pages()
    assert os.environ[huge_pages.ENV_VAR] == "0"


@pytest.mark.skipif(not LINUX, reason="huge pages for torch tensors are a Linux feature")
def test_importing_the_package_first_puts_big_tensors_on_huge_pages():
    if _kernel_mode() not in ("madvise", "always"):
        pytest.skip(f"the kernel's transparent huge pages are {_kernel_mode()!r}")
    code = ("import stylegan_unmask, os; from stylegan_unmask.runtime import huge_pages as h; "
            "print(os.environ[h.ENV_VAR], h.huge_pages_in_use())")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True"]
    # After many tensors were made and freed (heap reuse keeps their memory), the probe still sees
    # fresh memory: no false "not on huge pages" warning in the middle of a run.
    later = _python("import stylegan_unmask, torch; from stylegan_unmask.runtime import huge_pages as h; "
                    "x = [torch.ones(1 << 20, dtype=torch.uint8) for _ in range(200)]; del x; "
                    "print(h.huge_pages_in_use()); h.warn_if_unused()")
    assert later.returncode == 0, later.stderr
    assert later.stdout.split() == ["True"] and "huge pages" not in later.stderr, later.stderr


@pytest.mark.skipif(not LINUX, reason="huge pages for torch tensors are a Linux feature")
def test_warns_once_when_torch_allocated_first_and_not_when_opted_out():
    if _kernel_mode() != "madvise":
        pytest.skip(f"needs the kernel's THP mode 'madvise' (huge pages only where asked), not {_kernel_mode()!r}")
    late = ("import torch; t = torch.ones(16 << 20); import stylegan_unmask; "
            "from stylegan_unmask.runtime import huge_pages as h; print(h.huge_pages_in_use()); "
            "h.warn_if_unused(); h.warn_if_unused()")
    result = _python(late)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
    assert result.stderr.count("not on huge pages") == 1
    assert "THP_MEM_ALLOC_ENABLE=1" in result.stderr
    opted_out = _python("import stylegan_unmask; from stylegan_unmask.runtime import huge_pages as h; h.warn_if_unused()",
                        THP_MEM_ALLOC_ENABLE="0")
    assert opted_out.returncode == 0 and "huge pages" not in opted_out.stderr, opted_out.stderr
    early = _python("import stylegan_unmask, torch; t = torch.ones(16 << 20); "
                    "from stylegan_unmask.runtime import huge_pages as h; h.warn_if_unused()")
    assert early.returncode == 0 and "huge pages" not in early.stderr, early.stderr
