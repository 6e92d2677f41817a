"""`stylegan-unmask generate` and stylegan_unmask.networks.generate on the fixture networks.

Per-seed outputs are checked against the generator called directly (z from
RandomState(seed)); the golden batch (RandomState(0).randn(4, 512) in one
draw) only shares its first row with seed 0, so it is checked separately.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegan_unmask.cli import cli
from stylegan_unmask.networks.generate import (LatentFileError, load_ws, parse_seeds, proj_filename, seed_filename,
                                      to_uint8, z_from_seed)


@pytest.fixture(scope="module")
def G(ada_pkl):
    from stylegan_unmask.checkpoints import load_generator

    torch.set_num_threads(2)
    return load_generator(str(ada_pkl), device="cpu")


def run_cli(*args):
    result = CliRunner().invoke(cli, ["generate", *map(str, args)])
    return result


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def assert_nearly_equal_uint8(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float rounding that can tip a pixel across an integer boundary."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("text, seeds", [
    ("0-3", [0, 1, 2, 3]), ("1,5,7", [1, 5, 7]), ("0-3,10", [0, 1, 2, 3, 10]), ("7", [7]),
    (" 2 - 4 , 2 ", [2, 3, 4]), ("5,1", [5, 1]),
])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2", "1.5", str(2 ** 32)])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError):
        parse_seeds(text)


def test_z_from_seed_is_the_official_draw(golden64):
    z = z_from_seed(0, 512)
    assert z.shape == (1, 512) and z.dtype == np.float64
    assert np.array_equal(z.astype(np.float32), golden64["z"][:1])  # first row of RandomState(0).randn(4, 512)
    assert not np.array_equal(z_from_seed(1, 512).astype(np.float32), golden64["z"][1:2])


def test_to_uint8():
    img = torch.tensor([-2.0, -1.0, -0.004, 0.0, 0.5, 0.999, 1.0]).reshape(1, 1, 1, 7).repeat(1, 3, 2, 1)
    out = to_uint8(img)
    assert out.shape == (1, 2, 7, 3) and out.dtype == np.uint8
    # x * 127.5 + 128, clamped, truncated: 0.5 -> 191.75 -> 191
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 128, 191, 255, 255]


def test_golden_batch_path(G, golden64):
    """The official batch (truncation 0.7, const noise) converts to the same pixels."""
    img = G(torch.tensor(golden64["z"]), None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
    assert_nearly_equal_uint8(to_uint8(img), to_uint8(torch.tensor(golden64["img_const_psi07"])))


# ---------------------------------------------------------------- CLI


def test_generate_seeds(G, ada_pkl, golden64, tmp_path):
    outdir = tmp_path / "new" / "out"
    result = run_cli("--network", ada_pkl, "--seeds", "0-3", "--trunc", "0.7", "--noise-mode", "const",
                     "--outdir", outdir, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in outdir.iterdir()) == [seed_filename(s) for s in range(4)] == \
        ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png"]
    for seed in range(4):
        pixels = read_png(outdir / seed_filename(seed))
        assert pixels.shape == (64, 64, 3)
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, 512)).float()
        expected = to_uint8(G(z, None, truncation_psi=0.7, noise_mode="const"))[0]
        assert np.array_equal(pixels, expected), seed
    # seed 0 is also the first row of the official golden batch
    assert_nearly_equal_uint8(read_png(outdir / "seed0000.png"),
                              to_uint8(torch.tensor(golden64["img_const_psi07"][:1]))[0])


def test_generate_options_change_the_output(G, ada_pkl, tmp_path):
    result = run_cli("--network", ada_pkl, "--seeds", "5", "--trunc", "0.7", "--trunc-cutoff", "4",
                     "--noise-mode", "none", "--outdir", tmp_path / "a", "--device", "cpu")
    assert result.exit_code == 0, result.output
    z = torch.from_numpy(z_from_seed(5, 512)).float()
    expected = to_uint8(G(z, None, truncation_psi=0.7, truncation_cutoff=4, noise_mode="none"))[0]
    assert np.array_equal(read_png(tmp_path / "a" / "seed0005.png"), expected)
    # random noise is seeded per seed: the same command twice gives the same file
    for name in ("r1", "r2"):
        assert run_cli("--network", ada_pkl, "--seeds", "5", "--noise-mode", "random",
                       "--outdir", tmp_path / name).exit_code == 0
    r1, r2 = read_png(tmp_path / "r1" / "seed0005.png"), read_png(tmp_path / "r2" / "seed0005.png")
    assert np.array_equal(r1, r2)
    assert not np.array_equal(r1, to_uint8(G(z, None, noise_mode="const"))[0])


def test_generate_from_ws(G, ada_pkl, golden64, tmp_path):
    ws_file = tmp_path / "projected_w.npz"  # as the official projector writes it
    np.savez(ws_file, w=golden64["wplus"][:2])
    result = run_cli("--network", ada_pkl, "--ws", ws_file, "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [proj_filename(0), proj_filename(1)] == \
        ["proj00.png", "proj01.png"]
    golden = to_uint8(torch.tensor(golden64["img_wplus_const"][:2]))
    for i in range(2):
        assert_nearly_equal_uint8(read_png(tmp_path / "out" / proj_filename(i)), golden[i])


@pytest.mark.parametrize("key", ["w_plus", "ws"])
def test_load_ws_other_keys(golden64, tmp_path, key):
    ws_file = tmp_path / "latents.npz"
    np.savez(ws_file, **{key: golden64["wplus"][:3].astype(np.float64)})
    ws = load_ws(ws_file, num_ws=10, w_dim=512)
    assert ws.dtype == torch.float32 and torch.equal(ws, torch.tensor(golden64["wplus"][:3]))


def test_ws_shape_mismatch_names_the_file(ada_pkl, golden64, tmp_path):
    ws_file = tmp_path / "wrong.npz"
    np.savez(ws_file, w=golden64["wplus"][:1, :9])
    result = run_cli("--network", ada_pkl, "--ws", ws_file, "--outdir", tmp_path / "out")
    assert result.exit_code != 0
    assert isinstance(result.exception, LatentFileError)
    assert "wrong.npz" in str(result.exception) and "[1, 9, 512]" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_load_ws_errors(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(LatentFileError, match="nope.npz: file not found"):
        load_ws(missing)
    other = tmp_path / "other.npz"
    np.savez(other, latents=np.zeros([1, 10, 512], np.float32))
    with pytest.raises(LatentFileError, match="other.npz: no W\\+ array"):
        load_ws(other)
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LatentFileError, match="obj.npy"):
        load_ws(pickled)
    single = tmp_path / "single.npy"
    np.save(single, np.ones([10, 512], np.float32))
    assert load_ws(single, num_ws=10, w_dim=512).shape == (1, 10, 512)
    with pytest.raises(LatentFileError, match="does not fit"):
        load_ws(single, num_ws=18, w_dim=512)


def test_usage_errors(ada_pkl, tmp_path, golden64):
    assert run_cli("--network", ada_pkl, "--outdir", tmp_path).exit_code == 2  # neither --seeds nor --ws
    ws_file = tmp_path / "w.npz"
    np.savez(ws_file, w=golden64["wplus"][:1])
    assert run_cli("--network", ada_pkl, "--seeds", "0", "--ws", ws_file, "--outdir", tmp_path).exit_code == 2
    result = run_cli("--network", ada_pkl, "--seeds", "0-x", "--outdir", tmp_path)
    assert result.exit_code == 2 and "0-x" in result.output
    result = run_cli("--network", ada_pkl, "--seeds", "0", "--class", "1", "--outdir", tmp_path / "c")
    assert result.exit_code != 0 and "unconditional" in str(result.exception)
    assert not (tmp_path / "c").exists()
