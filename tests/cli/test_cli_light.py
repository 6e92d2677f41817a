"""The command line starts fast: its modules import click and our light modules only; the work is lazy."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT

from stylegan_unmask.cli import COMMANDS
from stylegan_unmask.cli.face_commands import LANDMARK_BACKENDS
from stylegan_unmask.face.landmarks import LANDMARK_BACKENDS as FACE_LANDMARK_BACKENDS

HEAVY = ("torch", "cv2", "numpy", "PIL", "dlib", "scipy")


def test_help_imports_no_heavy_module():
    modules = sorted({target.split(":")[0] for target in COMMANDS.values()})
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_cli_mirrors_the_landmark_backends():
    assert LANDMARK_BACKENDS == FACE_LANDMARK_BACKENDS
