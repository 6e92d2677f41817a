"""rosinality/stylegan2-pytorch checkpoints (``.pt``) -> :class:`NetworkSpec` in NVIDIA names.

Many public StyleGAN2 weights (and most converted FFHQ models used by research
code) are in rosinality's layout. The file is a ``torch.save`` archive; it is
read by :mod:`.torch_file` (``torch.load(weights_only=True)``, torch's own
allow-listing loader), so nothing in it runs.

rosinality's network computes the same function as NVIDIA's; only names and a
few storage conventions differ. The conversion below was derived from the two
formulations and is checked against the rosinality golden outputs in the tests:

* mapping ``style.{i+1}`` -> ``mapping.fc{i}``: both store ``weight / lr_mul``
  and scale at run time (lr_mul 0.01), so values copy unchanged.
* modulated convs: rosinality keeps ``weight [1, out, in, k, k]`` and multiplies
  it by ``1/sqrt(in*k*k)`` *before* modulation/demodulation; NVIDIA's
  SynthesisLayer applies no such gain. Folding the gain into the stored weight
  reproduces rosinality's numbers exactly (including the demodulation epsilon).
* ToRGB: both apply ``1/sqrt(in)`` (rosinality to the weight, NVIDIA to the
  styles); the weight copies unchanged; the bias ``[1, 3, 1, 1]`` becomes ``[3]``.
* modulation (``conv.modulation``) -> ``affine``; ``activate.bias`` -> ``bias``;
  ``noise.weight [1]`` -> ``noise_strength []``; ``noises.noise_i [1,1,r,r]`` ->
  ``noise_const [r, r]`` (layer i in rosinality's order: conv1, then the up/plain
  conv pairs); ``input.input [1, C, 4, 4]`` -> ``b4.const [C, 4, 4]``.
* up-sampling convs: both run ``conv_transpose2d`` (stride 2, no padding) with
  the weight as stored (NVIDIA's upsampling layer passes ``flip_weight=False``,
  which its transposed-conv path turns into "do not flip"; both projects flip
  TensorFlow's weights once when converting), then a 4x4 FIR with one pixel of
  padding per side, as a true convolution. rosinality's kernel is the
  normalised filter times ``factor**2``; NVIDIA keeps the normalised filter and
  applies ``gain=up**2``, so the kernels are divided by ``factor**2 = 4`` and
  the weights copy without flipping.
* ``latent_avg`` -> ``mapping.w_avg``. If a file has none (generate.py-style
  checkpoints), ``w_avg`` is computed as the mean mapping output over 10,000
  z drawn from ``numpy.random.RandomState(0)`` and a note says so.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import CheckpointError
from .spec import FORMAT_ROSINALITY, NetworkSpec
from .torch_file import load_torch_file

__all__ = ["convert_rosinality", "read_rosinality", "is_rosinality_state", "mapping_forward", "W_AVG_SAMPLES",
           "W_AVG_SEED"]

W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
_UP_FACTOR = 2
_LR_MULTIPLIER = 0.01  # rosinality Generator(lr_mlp=0.01), NVIDIA MappingNetwork(lr_multiplier=0.01)
_KEY_ALIASES = {"g_ema": "g_ema", "gema": "g_ema", "ema": "g_ema", "g": "g"}


def is_rosinality_state(state: Dict[str, Any]) -> bool:
    return isinstance(state, dict) and "style.1.weight" in state and "input.input" in state


def _strip_prefix(state: Dict[str, Any]) -> Dict[str, Any]:
    """Drop a DataParallel ``module.`` prefix if every key has it."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _select_state(obj: Any, key: str, source: str) -> Tuple[Dict[str, torch.Tensor], str, Optional[torch.Tensor]]:
    """Find the generator state dict (and latent_avg) inside a loaded rosinality checkpoint."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict checkpoint, found {type(obj).__name__}")
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{source}: 'latent_avg' is not a tensor")
    if is_rosinality_state(_strip_prefix(obj)):
        return _strip_prefix(obj), "(state dict)", latent_avg
    wanted = _KEY_ALIASES.get(str(key).lower().replace("-", "_"), key)
    if wanted not in obj:
        gens = [k for k in obj if isinstance(obj.get(k), dict) and is_rosinality_state(_strip_prefix(obj[k]))]
        have = ", ".join(repr(k) for k in obj)
        hint = f"; generator weights are under {', '.join(map(repr, gens))}" if gens else ""
        raise CheckpointError(f"{source}: the checkpoint has no {wanted!r} entry (keys present: {have}){hint}")
    state = obj[wanted]
    if not isinstance(state, dict) or not is_rosinality_state(_strip_prefix(state)):
        raise CheckpointError(
            f"{source}: {wanted!r} is not a rosinality StyleGAN2 generator state dict "
            f"(expected keys like 'style.1.weight', 'input.input', 'convs.0.conv.weight')"
        )
    if wanted == "g" and latent_avg is not None:
        latent_avg = None  # latent_avg belongs to g_ema
    return _strip_prefix(state), wanted, latent_avg


def _tensor(state: Dict[str, Any], name: str, source: str, shape_len: Optional[int] = None) -> torch.Tensor:
    value = state.get(name)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{source}: missing tensor {name!r}; not a complete rosinality generator")
    if shape_len is not None and value.ndim != shape_len:
        raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(value.shape)}; expected {shape_len} dims")
    return value.detach().to(torch.float32).clone()


def _channel_config(channels: Dict[int, int], resolution: int) -> Dict[str, Any]:
    """channel_base/channel_max when they reproduce the table exactly, else an explicit table."""
    top = max(channels)
    base = channels[top] * top
    cmax = max(channels.values())
    if all(min(base // res, cmax) == ch for res, ch in channels.items()):
        return {"channel_base": base, "channel_max": cmax}
    return {"channels_dict": {int(res): int(ch) for res, ch in sorted(channels.items())}}


def mapping_forward(state: Dict[str, torch.Tensor], z: torch.Tensor, num_layers: int,
                    lr_multiplier: float = 0.01) -> torch.Tensor:
    """The mapping network on NVIDIA-named weights (normalise z, then lrelu FC layers).

    Used only to compute ``w_avg`` for files without ``latent_avg`` (the file's
    generator is not built yet at that point); the tests check it against the
    rosinality goldens.
    """
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(num_layers):
        w = state[f"mapping.fc{i}.weight"]
        b = state[f"mapping.fc{i}.bias"]
        x = torch.addmm(b * lr_multiplier, x, (w * (lr_multiplier / math.sqrt(w.shape[1]))).t())
        x = torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    return x


def _compute_w_avg(state: Dict[str, torch.Tensor], num_layers: int, z_dim: int, lr_multiplier: float) -> torch.Tensor:
    """Mean of the mapping network's output over a fixed set of z (for files without latent_avg)."""
    z_all = np.random.RandomState(W_AVG_SEED).randn(W_AVG_SAMPLES, z_dim).astype(np.float32)
    total = torch.zeros(state["mapping.fc0.weight"].shape[0] if num_layers else z_dim, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, W_AVG_SAMPLES, 1000):
            w = mapping_forward(state, torch.from_numpy(z_all[start:start + 1000]), num_layers, lr_multiplier)
            total += w.double().sum(dim=0)
    return (total / W_AVG_SAMPLES).float()


def convert_rosinality(
    state: Dict[str, Any], latent_avg: Optional[torch.Tensor], source: str = "<rosinality state>"
) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], List[str]]:
    """Rename/rescale a rosinality generator state dict to NVIDIA's names.

    Returns ``(init_kwargs, state_dict, notes)``; the state dict is in NVIDIA's
    order (synthesis blocks, then the mapping's ``w_avg`` and fc layers).
    """
    arch = _architecture(state, source)
    renamer = _Renamer(state, source)
    renamer.synthesis(arch["n_convs"])
    out = renamer.out
    fcs: Dict[str, torch.Tensor] = {}
    for i in range(arch["n_mlp"]):
        fcs[f"mapping.fc{i}.weight"] = _tensor(state, f"style.{i + 1}.weight", source, 2)
        fcs[f"mapping.fc{i}.bias"] = _tensor(state, f"style.{i + 1}.bias", source, 1)
    out["mapping.w_avg"] = _w_avg(latent_avg, fcs, arch, source, renamer.notes)
    out.update(fcs)
    init_kwargs = {
        "z_dim": arch["z_dim"],
        "c_dim": 0,
        "w_dim": arch["w_dim"],
        "img_resolution": arch["resolution"],
        "img_channels": arch["img_channels"],
        "mapping_kwargs": {"num_layers": arch["n_mlp"], "lr_multiplier": _LR_MULTIPLIER},
        "synthesis_kwargs": {
            **_channel_config(arch["channels"], arch["resolution"]),
            "num_fp16_res": 0,
            "conv_clamp": None,
            "architecture": "skip",
        },
    }
    return init_kwargs, out, renamer.notes


def _architecture(state: Dict[str, Any], source: str) -> Dict[str, Any]:
    """Layer counts, resolution, latent sizes and channels, read from the tensor shapes."""
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in state:
        n_mlp += 1
    n_convs = 0
    while f"convs.{n_convs}.conv.weight" in state:
        n_convs += 1
    if n_mlp == 0 or n_convs % 2 != 0:
        raise CheckpointError(f"{source}: unexpected rosinality layout ({n_mlp} mapping layers, {n_convs} convs)")
    resolution = 2 ** (n_convs // 2 + 2)
    style = _tensor(state, "style.1.weight", source, 2)
    conv1 = _tensor(state, "conv1.conv.weight", source, 5)
    channels = {4: int(conv1.shape[1])}
    for i in range(n_convs // 2):
        channels[2 ** (i + 3)] = int(_tensor(state, f"convs.{2 * i}.conv.weight", source, 5).shape[1])
    img_channels = int(_tensor(state, "to_rgb1.conv.weight", source, 5).shape[1])
    if "noises.noise_0" in state:
        noise_res = int(state[f"noises.noise_{n_convs}"].shape[-1]) if f"noises.noise_{n_convs}" in state else None
        if noise_res is not None and noise_res != resolution:
            raise CheckpointError(f"{source}: noise buffers end at {noise_res}px but the convs imply {resolution}px")
    return {"n_mlp": n_mlp, "n_convs": n_convs, "resolution": resolution, "w_dim": int(style.shape[0]),
            "z_dim": int(style.shape[1]), "channels": channels, "img_channels": img_channels}


class _Renamer:
    """The synthesis network's tensors under NVIDIA's names, in NVIDIA's state_dict order."""

    def __init__(self, state: Dict[str, Any], source: str):
        self.state, self.source = state, source
        self.out: Dict[str, torch.Tensor] = {}
        self.notes: List[str] = []

    def synthesis(self, n_convs: int) -> None:
        """Each block: its params, its buffers, then its layers."""
        state, source, out = self.state, self.source, self.out
        out["synthesis.b4.const"] = _tensor(state, "input.input", source, 4)[0]
        out["synthesis.b4.resample_filter"] = _default_filter()
        self.modconv("conv1", "synthesis.b4.conv1")
        self.layer_buffers("conv1", "synthesis.b4.conv1", 0, 4)
        self.torgb("to_rgb1", "synthesis.b4.torgb")
        for i in range(n_convs // 2):
            res = 2 ** (i + 3)
            block = f"synthesis.b{res}"
            out[f"{block}.resample_filter"] = self.filter(f"to_rgbs.{i}.upsample.kernel")
            self.modconv(f"convs.{2 * i}", f"{block}.conv0")
            self.layer_buffers(f"convs.{2 * i}", f"{block}.conv0", 2 * i + 1, res)
            self.modconv(f"convs.{2 * i + 1}", f"{block}.conv1")
            self.layer_buffers(f"convs.{2 * i + 1}", f"{block}.conv1", 2 * i + 2, res)
            self.torgb(f"to_rgbs.{i}", f"{block}.torgb")

    def filter(self, name: str) -> torch.Tensor:
        """rosinality's kernel is NVIDIA's filter times factor**2 (see the module docstring)."""
        if self.state.get(name) is None:
            return _default_filter()
        return _tensor(self.state, name, self.source, 2) / _UP_FACTOR ** 2

    def modconv(self, src: str, dst: str) -> None:
        weight = _tensor(self.state, f"{src}.conv.weight", self.source, 5)[0]  # [out, in, k, k]
        gain = 1 / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        self.out[f"{dst}.weight"] = weight * gain
        self.out[f"{dst}.noise_strength"] = _tensor(self.state, f"{src}.noise.weight", self.source).reshape([])
        self.out[f"{dst}.bias"] = _tensor(self.state, f"{src}.activate.bias", self.source, 1)

    def layer_buffers(self, src: str, dst: str, noise_index: int, res: int) -> None:
        self.out[f"{dst}.resample_filter"] = self.filter(f"{src}.conv.blur.kernel")
        noise_name = f"noises.noise_{noise_index}"
        if noise_name in self.state:
            self.out[f"{dst}.noise_const"] = _tensor(self.state, noise_name, self.source, 4)[0, 0]
        else:
            gen = torch.Generator().manual_seed(1000 + noise_index)
            self.out[f"{dst}.noise_const"] = torch.randn([res, res], generator=gen)
            if not any("noise buffers" in n for n in self.notes):
                self.notes.append(
                    f"{self.source}: the file has no noise buffers (noises.noise_*); noise_mode='const' uses fixed "
                    f"seeded noise instead (seed 1000 + layer index)"
                )
        self.affine(src, dst)

    def torgb(self, src: str, dst: str) -> None:
        self.out[f"{dst}.weight"] = _tensor(self.state, f"{src}.conv.weight", self.source, 5)[0]
        self.out[f"{dst}.bias"] = _tensor(self.state, f"{src}.bias", self.source).reshape([-1])
        self.affine(src, dst)

    def affine(self, src: str, dst: str) -> None:
        self.out[f"{dst}.affine.weight"] = _tensor(self.state, f"{src}.conv.modulation.weight", self.source, 2)
        self.out[f"{dst}.affine.bias"] = _tensor(self.state, f"{src}.conv.modulation.bias", self.source, 1)


def _w_avg(latent_avg: Optional[torch.Tensor], fcs: Dict[str, torch.Tensor], arch: Dict[str, Any], source: str,
           notes: List[str]) -> torch.Tensor:
    """The file's ``latent_avg``, or the mean mapping output computed here (noted and warned)."""
    if latent_avg is not None:
        w_avg = latent_avg.detach().to(torch.float32).reshape(-1).clone()
        if w_avg.numel() != arch["w_dim"]:
            raise CheckpointError(f"{source}: latent_avg has {w_avg.numel()} values; expected {arch['w_dim']}")
        return w_avg
    w_avg = _compute_w_avg(fcs, arch["n_mlp"], arch["z_dim"], _LR_MULTIPLIER)
    message = (
        f"{source}: no latent_avg in the file; computed mapping.w_avg as the mean mapping output over "
        f"{W_AVG_SAMPLES:,} z from numpy RandomState({W_AVG_SEED}) (affects truncation only)"
    )
    notes.append(message)
    warnings.warn(message, stacklevel=4)
    return w_avg


def _default_filter() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def read_rosinality(path: Union[str, Path], key: str = "G_ema", source: str = "", obj: Any = None) -> NetworkSpec:
    """Read a rosinality checkpoint (``g_ema`` by default, ``g`` for key='G')."""
    path = Path(path)
    source = source or str(path)
    if obj is None:
        obj = load_torch_file(path, source)
    state, used, latent_avg = _select_state(obj, key, source)
    init_kwargs, nv_state, notes = convert_rosinality(state, latent_avg, source)
    return NetworkSpec(
        init_kwargs=init_kwargs,
        state_dict=nv_state,
        format=FORMAT_ROSINALITY,
        source=source,
        key=used,
        class_name="Generator",
        raw_init_kwargs={},
        notes=notes,
    )
