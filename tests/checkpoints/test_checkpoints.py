"""Checkpoint reading: NVIDIA pickles (safely), rosinality .pt conversion, bad files, load_generator.

The malicious-pickle tests assemble pickles opcode by opcode so the exact
global each one names is visible in the test, and use a sentinel file that the
payload would create to show nothing ran.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_unmask.checkpoints import load_generator, read_checkpoint, sniff_format
from stylegan_unmask.checkpoints.nvidia_pickle import read_nvidia_pickle
from stylegan_unmask.checkpoints.rosinality import convert_rosinality, mapping_forward
from stylegan_unmask.checkpoints.safe_pickle import (
    PersistentRecord,
    TensorFlowPickleError,
    TensorRecord,
    safe_load,
    safe_load_file,
)
from stylegan_unmask.errors import CheckpointError, UnsafePickleError

torch.set_num_threads(2)


# --------------------------------------------------------------------------------------
# A tiny pickle assembler (protocol 3 opcodes).

def _str(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"  # MARK args TUPLE REDUCE


def _dict(**items: bytes) -> bytes:
    return b"}(" + b"".join(_str(k) + v for k, v in items.items()) + b"u"


def _pickle(body: bytes) -> bytes:
    return b"\x80\x03" + body + b"."


def _persistent(class_name: str, state: bytes) -> bytes:
    meta = _dict(type=_str("class"), version=_int(6), module_src=_str("# x"), class_name=_str(class_name), state=state)
    return _call(_global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def _legacy_storage_stream(main_pickle: bytes) -> bytes:
    """A legacy torch.save stream whose storage-descriptor pickle is `main_pickle`."""
    header = pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2)
    header += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2)
    return header + main_pickle + pickle.dumps(["k0"], 2) + struct.pack("<q", 0)


def _float_storage(values, drop: int = 0) -> bytes:
    """A `torch.storage._load_from_bytes(...)` call holding float32 `values` (legacy torch.save layout)."""
    main = b"\x80\x02(" + _str("storage") + _global("torch", "FloatStorage") + _str("k0") + _str("cpu")
    main += _int(len(values)) + b"NtQ."  # view_metadata None, TUPLE, BINPERSID, STOP
    header = pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2)
    header += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2)
    raw = struct.pack("<q", len(values)) + np.asarray(values, dtype="<f4").tobytes()
    stream = header + main + pickle.dumps(["k0"], 2) + raw
    stream = stream[:len(stream) - drop]
    return _call(_global("torch.storage", "_load_from_bytes"), _bytes(stream))


def _tensor_call(storage: bytes, offset: int, size, stride) -> bytes:
    tup = lambda xs: b"(" + b"".join(_int(x) for x in xs) + b"t"
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), storage, _int(offset), tup(size), tup(stride),
                 b"\x89", _call(_global("collections", "OrderedDict")))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _payloads(sentinel: Path):
    """(label, expected global, pickle bytes) for globals that would create `sentinel`."""
    p = str(sentinel)
    code = f"open({p!r}, 'w').write('pwned')"
    return [
        ("os.system", "os.system", _pickle(_call(_global("os", "system"), _str(f"touch '{p}'")))),
        ("posix.system", "posix.system", _pickle(_call(_global("posix", "system"), _str(f"touch '{p}'")))),
        ("builtins.eval", "builtins.eval", _pickle(_call(_global("builtins", "eval"), _str(code)))),
        ("builtins.exec", "builtins.exec", _pickle(_call(_global("builtins", "exec"), _str(code)))),
        ("subprocess.call", "subprocess.call",
         _pickle(_call(_global("subprocess", "call"), b"(" + _str("touch") + _str(p) + b"l"))),
        # Allowed-looking torch functions that are not on the list.
        ("torch.load", "torch.serialization.load", _pickle(_call(_global("torch.serialization", "load"), _str(p)))),
        ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor",
         _pickle(_call(_global("torch._utils", "_rebuild_tensor"), _str(p)))),
        ("torch_utils.persistence.import_hook", "torch_utils.persistence.import_hook",
         _pickle(_call(_global("torch_utils.persistence", "import_hook"), _str(p)))),
        # Nested inside a persistent network object's state.
        ("nested in persistent state", "builtins.exec",
         _pickle(_dict(G_ema=_persistent("Generator", _dict(_parameters=_dict(), evil=_call(_global("builtins", "exec"), _str(code))))))),
        # Inside the legacy torch.save stream of a tensor storage.
        ("inside a storage stream", "os.system",
         _pickle(_dict(G_ema=_call(_global("torch.storage", "_load_from_bytes"),
                                   _bytes(_legacy_storage_stream(b"\x80\x02" + _call(_global("os", "system"), _str(f"touch '{p}'")) + b".")))))),
    ]


# --------------------------------------------------------------------------------------
# NVIDIA pickles


@pytest.fixture(scope="module")
def ada_specs(ada_pkl):
    return {key: read_nvidia_pickle(ada_pkl, key) for key in ("G_ema", "G")}


def test_ada_pickle_state_names_and_config(ada_specs, golden64):
    spec = ada_specs["G_ema"]
    assert list(spec.state_dict) == [str(n) for n in golden64["state_names"]]
    assert spec.format == "nvidia-pickle" and spec.key == "G_ema"
    assert spec.init_kwargs["img_resolution"] == 64 and spec.init_kwargs["z_dim"] == 512
    syn = spec.init_kwargs["synthesis_kwargs"]
    assert (syn["channel_base"], syn["channel_max"], syn["num_fp16_res"], syn["conv_clamp"]) == (1024, 512, 4, 256)
    assert spec.init_kwargs["mapping_kwargs"]["num_layers"] == 8
    shapes = {k: tuple(v.shape) for k, v in spec.state_dict.items()}
    assert shapes["synthesis.b4.const"] == (256, 4, 4)
    assert shapes["synthesis.b8.conv0.weight"] == (128, 256, 3, 3)
    assert shapes["synthesis.b64.torgb.weight"] == (3, 16, 1, 1)
    assert shapes["synthesis.b4.conv1.noise_strength"] == ()
    assert shapes["mapping.w_avg"] == (512,)
    assert spec.num_params() == 4_040_072 + sum(
        int(np.prod(shapes[str(n)])) for n in golden64["buffer_names"])


def test_ada_pickle_exact_values(ada_specs, golden64):
    state = ada_specs["G_ema"].state_dict
    # golden-64 stores 200 x synthesis.b4.const exactly (README section 3).
    assert torch.equal(state["synthesis.b4.const"] * 200, torch.from_numpy(golden64["clamp_b4_const"]))
    # Stored mapping weights are randn * 100 (lr_multiplier 0.01 undoes it at run time).
    assert 95 < float(state["mapping.fc0.weight"].std()) < 105
    # The perturbed resample filters are asymmetric and sum to about 1.
    f = state["synthesis.b8.conv0.resample_filter"]
    assert abs(float(f.sum()) - 1) < 0.1 and not torch.equal(f, f.flip(0))


def test_g_and_g_ema_share_weights_only(ada_specs):
    ema, g = ada_specs["G_ema"].state_dict, ada_specs["G"].state_dict
    assert list(ema) == list(g)
    shared = [k for k in ema if torch.equal(ema[k], g[k])]
    assert shared == [k for k in ema if k.endswith(".weight")] and len(shared) == 36
    assert not torch.equal(ema["synthesis.b4.const"], g["synthesis.b4.const"])
    # The state dicts own their memory: editing one does not change the other.
    before = ema["synthesis.b4.conv1.weight"].clone()
    ema["synthesis.b4.conv1.weight"].add_(1)
    try:
        assert not torch.equal(ema["synthesis.b4.conv1.weight"], g["synthesis.b4.conv1.weight"])
    finally:
        ema["synthesis.b4.conv1.weight"].copy_(before)


def test_sg3_pickle_matches_ada_weights_and_resolves_defaults(sg3_pkl, ada_specs):
    spec = read_checkpoint(sg3_pkl, "G_ema")
    ada = ada_specs["G_ema"].state_dict
    assert list(spec.state_dict) == list(ada)
    assert all(torch.equal(spec.state_dict[k], ada[k]) for k in ada)
    # stylegan3's networks_stylegan2 omits num_fp16_res/conv_clamp (its defaults); they are made explicit.
    assert "conv_clamp" not in spec.raw_init_kwargs and "num_fp16_res" not in spec.raw_init_kwargs
    syn = spec.init_kwargs["synthesis_kwargs"]
    assert syn["conv_clamp"] == 256 and syn["num_fp16_res"] == 4
    assert syn["fused_modconv_default"] == "inference_only"
    assert spec.init_kwargs["mapping_kwargs"]["w_avg_beta"] == pytest.approx(0.998)


def test_structure_json_agrees_with_reader(fixtures_dir, ada_pkl):
    """Every tensor in G_ema of the structure dump is in the state dict with the same shape/dtype."""
    tree = json.loads((fixtures_dir / "nvidia-ada-64.structure.json").read_text())
    expected = {}

    def walk(node, prefix):
        state = node["state"]
        for table in ("_parameters", "_buffers"):
            for name, t in state[table].items():
                expected[prefix + name] = (t["dtype"], tuple(t["shape"]))
        for name, child in state["_modules"].items():
            walk(child, prefix + name + ".")

    walk(tree["G_ema"], "")
    got = read_nvidia_pickle(ada_pkl).state_dict
    assert {k: (str(v.dtype).replace("torch.", ""), tuple(v.shape)) for k, v in got.items()} == expected


def test_key_errors(ada_pkl):
    with pytest.raises(CheckpointError, match=r"no 'G_foo' network.*'G_ema'") as e:
        read_checkpoint(ada_pkl, "G_foo")
    assert str(ada_pkl) in str(e.value)
    with pytest.raises(CheckpointError, match="Discriminator, not a StyleGAN2 Generator"):
        read_checkpoint(ada_pkl, "D")
    with pytest.raises(CheckpointError, match="'augment_pipe' is NoneType, not a network"):
        read_checkpoint(ada_pkl, "augment_pipe")


def test_raw_tree_has_records(ada_pkl):
    tree = safe_load_file(ada_pkl)
    assert list(tree) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert isinstance(tree["G_ema"], PersistentRecord) and tree["G_ema"].class_name == "Generator"
    assert tree["G_ema"].module_src_chars == len("# source omitted")
    const = tree["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b4"].state["_parameters"]["const"]
    assert isinstance(const, TensorRecord) and const.is_parameter
    # G and G_ema share the weight Parameter object through the pickle memo.
    w = lambda net: net.state["_modules"]["synthesis"].state["_modules"]["b4"].state["_modules"]["conv1"].state["_parameters"]["weight"]
    assert w(tree["G_ema"]) is w(tree["G"])
    conv0 = tree["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"].state["_modules"]["conv0"].state
    assert conv0["act_gain"] == pytest.approx(2 ** 0.5) and type(conv0["act_gain"]) is float


# --------------------------------------------------------------------------------------
# Malicious pickles


def test_payloads_are_live(tmp_path):
    """Control: the exec payload really creates the sentinel under plain pickle (so the refusals below mean something)."""
    sentinel = tmp_path / "control-sentinel"
    label, _, data = _payloads(sentinel)[3]
    assert label == "builtins.exec"
    pickle.loads(data)
    assert sentinel.read_text() == "pwned"


@pytest.mark.parametrize("index", range(10))
def test_malicious_pickles_are_refused(tmp_path, index):
    sentinel = tmp_path / "sentinel"
    label, global_name, data = _payloads(sentinel)[index]
    path = _write(tmp_path, "evil.pkl", data)
    with pytest.raises(UnsafePickleError) as e:
        read_checkpoint(path)
    message = str(e.value)
    assert f"'{global_name}'" in message, (label, message)
    assert str(path) in message and "Nothing from the file was executed" in message
    assert e.value.global_name == global_name
    assert not sentinel.exists(), f"{label}: the payload ran"


def test_refusal_happens_before_later_opcodes(tmp_path):
    """A forbidden global is refused where it is named; a following exec payload never runs."""
    sentinel = tmp_path / "sentinel"
    body = b"(" + _global("os", "getcwd") + _call(_global("builtins", "exec"), _str(f"open({str(sentinel)!r},'w')")) + b"l"
    with pytest.raises(UnsafePickleError, match="os.getcwd"):
        safe_load(io.BytesIO(_pickle(body)), "mem.pkl")
    assert not sentinel.exists()


def test_build_on_reconstructed_objects_is_refused():
    # BUILD (opcode 'b') applied to a tensor record would call __setstate__ on a torch object in a naive loader.
    storage = _call(_global("torch.storage", "_load_from_bytes"), _bytes(_legacy_storage_stream(b"")))
    record = _call(_global("torch_utils.persistence", "_reconstruct_persistent_obj"),
                   _dict(type=_str("class"), version=_int(6), class_name=_str("X"), state=_dict()))
    with pytest.raises(CheckpointError, match="BUILD"):
        safe_load(io.BytesIO(_pickle(record + _dict(a=_int(1)) + b"b")), "mem.pkl")
    del storage


def test_hand_built_tensor_and_bad_geometry():
    values = [1.5, -2.0, 3.25, 4.0, 5.0, 6.0]
    record = safe_load(io.BytesIO(_pickle(_tensor_call(_float_storage(values), 1, (2, 2), (1, 2)))), "mem.pkl")
    assert isinstance(record, TensorRecord) and not record.is_parameter
    assert record.tensor.tolist() == [[-2.0, 4.0], [3.25, 5.0]]  # offset 1, column-major strides
    for size, stride in [((4, 2), (2, 1)), ((100,), (1,)), ((1000000,), (0,))]:
        with pytest.raises(CheckpointError, match=r"mem\.pkl: .*(past the end|more elements)"):
            safe_load(io.BytesIO(_pickle(_tensor_call(_float_storage(values), 0, size, stride))), "mem.pkl")
    with pytest.raises(CheckpointError, match="mem.pkl: .*storage stream is truncated"):
        safe_load(io.BytesIO(_pickle(_tensor_call(_float_storage(values, drop=3), 0, (2,), (1,)))), "mem.pkl")


def test_tensorflow_pickle_is_explained(tmp_path):
    data = _pickle(b"(" + _global("dnnlib.tflib.network", "Network") + b")\x81" + _dict(name=_str("G")) + b"bt")
    path = _write(tmp_path, "karras2019stylegan2-ffhq-1024x1024.pkl", data)
    with pytest.raises(TensorFlowPickleError) as e:
        read_checkpoint(path)
    message = str(e.value)
    assert str(path) in message and "TensorFlow" in message and "not read" in message
    assert "api.ngc.nvidia.com" in message and "ffhq-1024" in message


# --------------------------------------------------------------------------------------
# Broken files


@pytest.mark.parametrize("fraction", [0.0, 0.0003, 0.01, 0.5, 0.999])
def test_truncated_pickle(tmp_path, ada_pkl, fraction):
    data = ada_pkl.read_bytes()
    cut = max(1, int(len(data) * fraction))
    path = _write(tmp_path, f"cut-{cut}.pkl", data[:cut])
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
    assert not isinstance(e.value, UnsafePickleError)


def test_last_byte_missing(tmp_path, ada_pkl):
    path = _write(tmp_path, "no-stop.pkl", ada_pkl.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_truncated_rosinality(tmp_path, rosinality_pt):
    data = rosinality_pt.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 100):
        path = _write(tmp_path, f"cut-{cut}.pt", data[:cut])
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path)
        assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("empty.pkl", b"", "empty"),
        ("notes.pkl", b"these are my notes, not a network\n" * 10, "not a network checkpoint"),
        ("page.pkl", b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
        ("lfs.pkl", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "Git LFS"),
        ("random.pt", np.random.RandomState(7).bytes(5000), None),
        ("random80.pkl", b"\x80\x04" + np.random.RandomState(8).bytes(5000), None),
        ("list.pkl", pickle.dumps([1, 2, 3], 4), "expected a network snapshot"),
    ],
    ids=["empty", "text", "html", "lfs-pointer", "random", "random-after-proto", "list-pickle"],
)
def test_bad_files(tmp_path, name, data, match):
    path = _write(tmp_path, name, data)
    with pytest.raises(CheckpointError, match=match) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)


def test_missing_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="folder"):
        read_checkpoint(tmp_path)


def test_sniff_format(ada_pkl, rosinality_pt):
    assert sniff_format(ada_pkl) == "nvidia-pickle"
    assert sniff_format(rosinality_pt) == "torch"


# --------------------------------------------------------------------------------------
# rosinality


@pytest.fixture(scope="module")
def rosinality_ckpt(rosinality_pt):
    return torch.load(rosinality_pt, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def rosinality_golden(fixtures_dir):
    path = fixtures_dir / "rosinality-golden-64.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return dict(np.load(path))


def test_rosinality_config_and_names(rosinality_pt, rosinality_ckpt, golden64):
    spec = read_checkpoint(rosinality_pt)
    assert spec.format == "rosinality" and spec.key == "g_ema" and spec.notes == []
    assert spec.init_kwargs == {
        "z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 64, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8, "lr_multiplier": 0.01},
        "synthesis_kwargs": {"channels_dict": {4: 128, 8: 128, 16: 64, 32: 64, 64: 32},
                             "num_fp16_res": 0, "conv_clamp": None, "architecture": "skip"},
    }
    # Same names (and order) as an official 64x64 generator's state dict.
    assert list(spec.state_dict) == [str(n) for n in golden64["state_names"]]
    g, sd = rosinality_ckpt["g_ema"], spec.state_dict
    assert torch.equal(sd["synthesis.b4.const"], g["input.input"][0])
    assert torch.allclose(sd["synthesis.b8.conv0.weight"], g["convs.0.conv.weight"][0] / (128 * 9) ** 0.5)
    assert torch.equal(sd["synthesis.b16.torgb.weight"], g["to_rgbs.1.conv.weight"][0])
    assert torch.equal(sd["synthesis.b16.torgb.bias"], g["to_rgbs.1.bias"].reshape(3))
    assert torch.equal(sd["synthesis.b16.conv1.affine.bias"], g["convs.3.conv.modulation.bias"])
    assert torch.equal(sd["synthesis.b16.conv1.noise_const"], g["noises.noise_4"][0, 0])
    assert sd["synthesis.b16.conv1.noise_strength"].shape == () and float(sd["synthesis.b16.conv1.noise_strength"]) == float(g["convs.3.noise.weight"])
    assert torch.equal(sd["mapping.fc7.weight"], g["style.8.weight"])
    assert torch.equal(sd["mapping.w_avg"], rosinality_ckpt["latent_avg"])
    std = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(sd["synthesis.b32.conv0.resample_filter"], torch.outer(std, std) / 64)
    assert torch.allclose(sd["synthesis.b32.resample_filter"], torch.outer(std, std) / 64)


def test_rosinality_standard_table_uses_channel_base(rosinality_ckpt):
    """A channel table that channel_base/channel_max reproduce is expressed with them (as NVIDIA would)."""
    from stylegan_unmask.checkpoints.rosinality import _channel_config

    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}  # channel_multiplier=2
    assert _channel_config(table, 1024) == {"channel_base": 32768, "channel_max": 512}
    assert "channels_dict" in _channel_config({4: 128, 8: 128, 16: 64, 32: 64, 64: 32}, 64)


def test_rosinality_train_checkpoint_and_legacy_format(tmp_path, rosinality_ckpt, monkeypatch):
    import argparse

    from stylegan_unmask.checkpoints import rosinality

    monkeypatch.setattr(rosinality, "W_AVG_SAMPLES", 1000)  # w_avg accuracy is tested separately

    g = rosinality_ckpt["g_ema"]
    train = {"g": {k: v + 1 if k == "input.input" else v for k, v in g.items()}, "d": {"x": torch.zeros(2)},
             "g_ema": g, "g_optim": {"state": {}}, "d_optim": {"state": {}},
             "args": argparse.Namespace(size=64, latent=512), "ada_aug_p": 0.1}
    path = tmp_path / "train-000100.pt"
    torch.save(train, path, _use_new_zipfile_serialization=False)
    assert sniff_format(path) == "torch"
    with pytest.warns(UserWarning, match="no latent_avg"):
        ema = read_checkpoint(path, "G_ema")
    assert ema.key == "g_ema" and "computed mapping.w_avg" in ema.notes[0] and "1,000 z" in ema.notes[0]
    with pytest.warns(UserWarning):
        g_spec = read_checkpoint(path, "G")
    assert g_spec.key == "g"
    assert torch.equal(g_spec.state_dict["synthesis.b4.const"], ema.state_dict["synthesis.b4.const"] + 1)
    with pytest.raises(CheckpointError, match="no 'gen' entry"):
        read_checkpoint(path, "gen")


def test_rosinality_w_avg_computed_when_missing(rosinality_ckpt, rosinality_golden):
    with pytest.warns(UserWarning, match="10,000 z"):
        _, state, notes = convert_rosinality(rosinality_ckpt["g_ema"], None, "ckpt.pt")
    assert "RandomState(0)" in notes[0]
    # Different z than the file's latent_avg (seed 301), so equal up to sampling error only.
    file_avg = rosinality_ckpt["latent_avg"]
    assert float((state["mapping.w_avg"] - file_avg).abs().max()) < 0.1
    assert np.corrcoef(state["mapping.w_avg"].numpy(), file_avg.numpy())[0, 1] > 0.999
    # The mapping used for it reproduces rosinality's style network exactly.
    w = mapping_forward(state, torch.from_numpy(rosinality_golden["z"]), 8)
    assert float((w - torch.from_numpy(rosinality_golden["w_z"])).abs().max()) < 1e-4


def test_torch_file_with_code_is_refused(tmp_path):
    sentinel = tmp_path / "sentinel"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch '{sentinel}'",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(UnsafePickleError) as e:
        read_checkpoint(path)
    assert "system" in e.value.global_name and str(path) in str(e.value)
    assert not sentinel.exists()


def test_torch_file_of_other_content(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="not a rosinality StyleGAN2 checkpoint"):
        read_checkpoint(path)


# --------------------------------------------------------------------------------------
# load_generator: integration with the generator (the generator's own tests go deeper)


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a - torch.from_numpy(b)).abs().max())


@pytest.mark.parametrize("which", ["ada", "sg3"])
def test_load_generator_reproduces_nvidia_goldens(which, ada_pkl, sg3_pkl, golden64):
    path = ada_pkl if which == "ada" else sg3_pkl
    z = torch.from_numpy(golden64["z"])
    G = load_generator(path)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert str(path) in G.source and "G_ema" in G.source
    with torch.no_grad():
        img = G(z, None, truncation_psi=1, noise_mode="const", force_fp32=True)
    assert _max_diff(img, golden64["img_const_psi1"]) < 1e-4
    G_train = load_generator(str(path), key="G")
    with torch.no_grad():
        img = G_train(z, None, truncation_psi=1, noise_mode="const", force_fp32=True)
    assert _max_diff(img, golden64["img_const_psi1_from_G"]) < 1e-4


def test_load_generator_reproduces_rosinality_goldens(rosinality_pt, rosinality_golden):
    G = load_generator(rosinality_pt)
    assert "rosinality" in G.source and G.num_ws == 10
    z = torch.from_numpy(rosinality_golden["z"])
    with torch.no_grad():
        img = G(z, None, truncation_psi=1, noise_mode="const", force_fp32=True)
        img07 = G(z, None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
        img_wplus = G.synthesis(torch.from_numpy(rosinality_golden["wplus"]), noise_mode="const", force_fp32=True)
    assert _max_diff(img, rosinality_golden["img_z_psi1"]) < 1e-4
    assert _max_diff(img07, rosinality_golden["img_z_psi07"]) < 1e-4
    assert _max_diff(img_wplus, rosinality_golden["img_wplus"]) < 1e-4


def test_load_generator_unknown_name():
    with pytest.raises(CheckpointError, match="unknown network 'ffhq-9000'.*ffhq-1024"):
        load_generator("ffhq-9000")
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator("some/where/net.pkl")
