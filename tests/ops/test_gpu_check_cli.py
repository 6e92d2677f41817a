"""benchmarks/gpu_check.py: documented, and a clear refusal where there is no CUDA device."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_help_lists_every_section():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for section in ("plugins", "pytest", "accuracy", "ops", "project", "train", "batch", "--out", "--shared"):
        assert section in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_gpu_it_stops_at_once_with_exit_code_2(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert run.returncode == 2 and "no CUDA device" in run.stderr
    assert not list(tmp_path.iterdir())
