"""NVIDIA network pickles (stylegan2-ada-pytorch and stylegan3) -> :class:`NetworkSpec`.

The pickle is read by :mod:`.safe_pickle` (nothing in it runs). From the
resulting tree this module takes the requested generator (``G_ema`` or ``G``),
flattens its module tree into a state dict in exactly the order
``torch.nn.Module.state_dict()`` would produce (per module: parameters, then
persistent buffers, then child modules), and recovers the constructor
arguments that the persistence module recorded (``_init_args``/``_init_kwargs``).

The two official code bases record different argument sets for the same
network (stylegan3's ``networks_stylegan2`` omits ``num_fp16_res``/``conv_clamp``
when they equal *its* defaults, which differ from stylegan2-ada's). The values
actually used are also stored in the module state, so they are read from there
and written into the arguments explicitly.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import torch

from ..errors import CheckpointError
from .safe_pickle import EasyDict, PersistentRecord, TensorRecord, safe_load_file
from .spec import FORMAT_NVIDIA_PICKLE, NetworkSpec

__all__ = ["read_nvidia_pickle", "generator_from_tree", "module_state_dict", "plain"]

# Positional order of Generator.__init__ in both official code bases.
_GENERATOR_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_KEY_ALIASES = {"g_ema": "G_ema", "gema": "G_ema", "ema": "G_ema", "g": "G"}


def plain(value: Any) -> Any:
    """EasyDicts/OrderedDicts/tuples from a pickle -> plain dicts/lists/tuples (for kwargs and JSON)."""
    if isinstance(value, (EasyDict, collections.OrderedDict, dict)):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def module_state_dict(record: PersistentRecord, source: str = "") -> "collections.OrderedDict[str, torch.Tensor]":
    """Flatten a persistent module tree into ``{dotted name: tensor}`` in ``state_dict()`` order."""
    out: "collections.OrderedDict[str, torch.Tensor]" = collections.OrderedDict()
    active = set()

    def visit(node: PersistentRecord, prefix: str) -> None:
        if id(node) in active:
            raise CheckpointError(f"{source}: module {prefix.rstrip('.')!r} contains itself; not a network pickle")
        active.add(id(node))
        state = node.state
        params = state.get("_parameters") or {}
        buffers = state.get("_buffers") or {}
        modules = state.get("_modules") or {}
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        if not all(isinstance(d, dict) for d in (params, buffers, modules)):
            raise CheckpointError(f"{source}: module {prefix or node.class_name!r} has a malformed parameter table")
        for table in (params, buffers):
            for name, value in table.items():
                if value is None or (table is buffers and name in non_persistent):
                    continue
                if not isinstance(value, TensorRecord):
                    raise CheckpointError(f"{source}: {prefix}{name} is not a tensor")
                out[prefix + name] = value.tensor.detach().clone()
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(
                    f"{source}: submodule {prefix}{name} is not a persistent network object "
                    f"(found {type(child).__name__}); this is not an official StyleGAN2 network pickle"
                )
            visit(child, f"{prefix}{name}.")
        active.discard(id(node))

    visit(record, "")
    return out


def _child(record: PersistentRecord, *path: str):
    node = record
    for name in path:
        modules = node.state.get("_modules") or {}
        node = modules.get(name)
        if not isinstance(node, PersistentRecord):
            return None
    return node


def _resolved_init_kwargs(record: PersistentRecord, source: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(explicit kwargs for our Generator, kwargs exactly as recorded in the file).

    The explicit form is always nested (``mapping_kwargs=..., synthesis_kwargs=...``)
    with every value that depends on which code base wrote the file filled in.
    """
    state = record.state
    args = plain(state.get("_init_args", ()))
    kwargs = plain(state.get("_init_kwargs", {}))
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the generator's recorded constructor arguments are malformed")
    if len(args) > len(_GENERATOR_POSITIONAL):
        raise CheckpointError(f"{source}: the generator was built with {len(args)} positional arguments; expected at most 7")
    raw = dict(zip(_GENERATOR_POSITIONAL, args))
    raw.update(kwargs)

    resolved: Dict[str, Any] = {}
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        value = raw.get(name, state.get(name))
        if not isinstance(value, int):
            raise CheckpointError(f"{source}: the generator does not record {name}; cannot rebuild it")
        resolved[name] = value
    resolved["mapping_kwargs"] = dict(raw.get("mapping_kwargs") or {})
    synthesis = dict(raw.get("synthesis_kwargs") or {})  # stylegan2-ada nests them ...
    for k, v in raw.items():  # ... stylegan3 passes them flat
        if k not in _GENERATOR_POSITIONAL:
            synthesis[k] = v

    # Make the values that the two code bases default differently explicit, from the module state.
    synthesis_net = _child(record, "synthesis")
    first_layer = _child(record, "synthesis", "b4", "conv1")
    if synthesis_net is not None:
        if "num_fp16_res" not in synthesis:
            if isinstance(synthesis_net.state.get("num_fp16_res"), int):
                synthesis["num_fp16_res"] = synthesis_net.state["num_fp16_res"]
            else:
                synthesis["num_fp16_res"] = _num_fp16_res_from_blocks(synthesis_net, resolved["img_resolution"])
        block = _child(record, "synthesis", "b4")
        if "architecture" not in synthesis and block is not None and isinstance(block.state.get("architecture"), str):
            synthesis["architecture"] = block.state["architecture"]
    if first_layer is not None and "conv_clamp" not in synthesis and "conv_clamp" in first_layer.state:
        synthesis["conv_clamp"] = first_layer.state["conv_clamp"]
    synthesis.setdefault("channel_base", 32768)  # same default in both code bases
    synthesis.setdefault("channel_max", 512)
    mapping_net = _child(record, "mapping")
    if mapping_net is not None and isinstance(mapping_net.state.get("w_avg_beta"), float):
        resolved["mapping_kwargs"].setdefault("w_avg_beta", mapping_net.state["w_avg_beta"])
    resolved["synthesis_kwargs"] = synthesis
    return resolved, raw


def _num_fp16_res_from_blocks(synthesis_net: PersistentRecord, img_resolution: int) -> int:
    blocks = [b for b in (synthesis_net.state.get("_modules") or {}).values() if isinstance(b, PersistentRecord)]
    fp16 = [b.state.get("resolution") for b in blocks if b.state.get("use_fp16") is True]
    fp16 = [r for r in fp16 if isinstance(r, int) and r > 0]
    if not fp16:
        return 0
    return img_resolution.bit_length() - min(fp16).bit_length() + 1


def _canonical_key(key: str) -> str:
    return _KEY_ALIASES.get(key.lower().replace("-", "_"), key) if isinstance(key, str) else key


def generator_from_tree(tree: Any, key: str, source: str) -> Tuple[PersistentRecord, str]:
    """Pick the generator record (``G_ema`` or ``G``) from an unpickled snapshot."""
    if isinstance(tree, PersistentRecord):  # a bare pickled network, not a training snapshot
        record, used = tree, "(whole file)"
    else:
        if not isinstance(tree, dict):
            raise CheckpointError(
                f"{source}: expected a network snapshot (a dict with 'G_ema', 'G', 'D'), found {type(tree).__name__}"
            )
        wanted = _canonical_key(key)
        if wanted not in tree:
            have = ", ".join(repr(k) for k in tree) or "none"
            raise CheckpointError(
                f"{source}: the pickle has no {wanted!r} network (keys present: {have}); "
                f"choose one of them with key=/--network-key"
            )
        record, used = tree[wanted], wanted
        if not isinstance(record, PersistentRecord):
            raise CheckpointError(f"{source}: {wanted!r} is {type(record).__name__}, not a network")
    if record.class_name != "Generator":
        raise CheckpointError(
            f"{source}: {used} is a {record.class_name}, not a StyleGAN2 Generator"
            + (" (the pickle's generator is under 'G_ema' or 'G')" if record.class_name == "Discriminator" else "")
        )
    return record, used


def _looks_like_stylegan3(state: Dict[str, torch.Tensor]) -> bool:
    return any(".affine." in k and k.startswith("synthesis.L") for k in state) or "synthesis.input.freqs" in state


def read_nvidia_pickle(path: Union[str, Path], key: str = "G_ema", source: str = "") -> NetworkSpec:
    """Read the generator ``key`` of an NVIDIA network pickle without executing it."""
    path = Path(path)
    source = source or str(path)
    tree = safe_load_file(path, source)
    record, used = generator_from_tree(tree, key, source)
    try:
        state = module_state_dict(record, source)
        if _looks_like_stylegan3(state):
            raise CheckpointError(
                f"{source}: this is a StyleGAN3 (alias-free) generator; stylegan-unmask projects into StyleGAN2 "
                f"generators only (use e.g. --network ffhq-1024)"
            )
        kwargs, raw = _resolved_init_kwargs(record, source)
    except CheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError, RuntimeError, MemoryError) as e:
        raise CheckpointError(
            f"{source}: not a valid StyleGAN2 network pickle ({type(e).__name__}: {e})"
        ) from None
    notes: List[str] = []
    if "mapping.w_avg" not in state:
        raise CheckpointError(f"{source}: the generator has no mapping.w_avg buffer; not a StyleGAN2 generator")
    return NetworkSpec(
        init_kwargs=kwargs,
        state_dict=dict(state),
        format=FORMAT_NVIDIA_PICKLE,
        source=source,
        key=used,
        class_name=record.class_name,
        raw_init_kwargs=raw,
        notes=notes,
    )
