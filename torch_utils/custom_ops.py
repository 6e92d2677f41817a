"""Compile, cache and load the fused CUDA plugins (``custom_ops/*.cpp|cu``).

Why this module exists: the plugins are optional speed-ups. A user without a GPU,
without the CUDA toolkit or with a broken compiler must still get correct results
(from the reference PyTorch ops), be told once why things are slow, and never pay
for a failed build on every call. Users with a working toolchain compile each
plugin once per (sources, torch, CUDA, GPU architecture, Python) combination and
reuse it from the cache afterwards.

Build layout under ``<cache>/torch_extensions/`` (``<cache>`` = ``$STYLEGAN_UNMASK_CACHE``
or ``~/.cache/stylegan-unmask``)::

    su_<name>_<key16>/            finished build: the extension module + build.json
    su_<name>_<key16>.lock        inter-process lock (flock: released if the holder dies)
    .tmp-su_<name>_<key16>-<pid>-<random>-{build,stage}/   build in progress

A build happens in a private temporary folder; only after it succeeded is a copy
of the module, with its ``build.json`` marker, renamed into place in one step, so
a killed build never leaves a half-written folder under the final name (and a
folder there without a matching marker is discarded and rebuilt); temporary folders of dead builders are
removed by the next builder (which holds the lock, so no live builder owns them).

Environment: ``STYLEGAN_UNMASK_OPS=ref`` forces the reference ops (no build, no
warning); ``STYLEGAN_UNMASK_VERBOSE_BUILD=1`` shows compiler output.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import secrets
import shutil
import sys
import sysconfig
import threading
import time
import traceback
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch

__all__ = [
    "PluginFallbackWarning",
    "PluginSpec",
    "build_arguments",
    "build_key",
    "cache_root",
    "environment_fingerprint",
    "extensions_dir",
    "forced_reference",
    "get_plugin",
    "require_plugin",
    "load_or_build",
    "module_name",
    "plugin_state",
    "reset_plugin_state",
    "source_dir",
]

OPS_ENV = "STYLEGAN_UNMASK_OPS"
CACHE_ENV = "STYLEGAN_UNMASK_CACHE"
VERBOSE_ENV = "STYLEGAN_UNMASK_VERBOSE_BUILD"
MARKER_NAME = "build.json"
# Bump when the build procedure (flags, layout) changes so old caches are not reused.
BUILD_FORMAT = 1

STATE_OK = "ok"
STATE_DISABLED = "disabled"
STATE_NOT_LOADED = "not loaded"


class PluginFallbackWarning(UserWarning):
    """A fused CUDA plugin could not be used; the reference implementation runs instead."""


# --------------------------------------------------------------------------- paths

def source_dir() -> Path:
    """Folder holding the plugin sources (the ``custom_ops`` package beside ``torch_utils``)."""
    here = Path(__file__).resolve().parent.parent / "custom_ops"
    if here.is_dir():
        return here
    spec = importlib.util.find_spec("custom_ops")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).resolve().parent
    raise FileNotFoundError(f"the plugin sources (custom_ops/) were not found next to {Path(__file__).parent}")


def cache_root() -> Path:
    """``$STYLEGAN_UNMASK_CACHE`` or ``~/.cache/stylegan-unmask`` (shared with the checkpoint cache)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stylegan-unmask"


def extensions_dir() -> Path:
    return cache_root() / "torch_extensions"


def forced_reference() -> bool:
    """True when ``STYLEGAN_UNMASK_OPS=ref`` asks for the reference ops everywhere."""
    value = os.environ.get(OPS_ENV, "").strip().lower()
    if value in ("", "auto", "cuda", "plugin"):
        return False
    if value in ("ref", "reference"):
        return True
    raise ValueError(f"{OPS_ENV}={os.environ[OPS_ENV]!r} is not understood; use 'ref' (reference PyTorch ops) "
                     "or leave it unset (fused CUDA plugins when available)")


# --------------------------------------------------------------------------- cache key

@dataclass(frozen=True)
class PluginSpec:
    """One plugin: a short name and its source/header files (relative to ``source_dir()``)."""

    name: str
    sources: tuple[str, ...]
    headers: tuple[str, ...] = ()
    extra_cflags: tuple[str, ...] = ()
    extra_cuda_cflags: tuple[str, ...] = ()

    def files(self, root: Optional[Path] = None) -> list[Path]:
        root = source_dir() if root is None else root
        return [root / p for p in (*self.sources, *self.headers)]


def _cuda_arch_fingerprint() -> str:
    """The GPU architectures the build targets: cpp_extension honours TORCH_CUDA_ARCH_LIST,
    otherwise it compiles for the visible GPUs."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return "list:" + env.strip()
    try:
        if torch.cuda.is_available():
            caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
            return "gpus:" + ",".join(f"{a}.{b}" for a, b in caps)
    except Exception as exc:  # a broken driver must not break key computation
        return f"gpus:error:{type(exc).__name__}"
    return "gpus:none"


def environment_fingerprint() -> dict:
    """Everything besides the sources that makes a compiled module (in)compatible."""
    from torch.utils import cpp_extension

    return {
        "format": BUILD_FORMAT,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_home": str(cpp_extension.CUDA_HOME),
        "arch": _cuda_arch_fingerprint(),
        "python": sysconfig.get_config_var("EXT_SUFFIX") or sys.version,
        "platform": sys.platform,
        "cxx": os.environ.get("CXX", ""),
        "cc": os.environ.get("CC", ""),
    }


def build_key(spec: PluginSpec, root: Optional[Path] = None, fingerprint: Optional[dict] = None) -> str:
    """sha256 over the plugin's source bytes, its flags and the environment fingerprint."""
    h = hashlib.sha256()
    h.update(spec.name.encode())
    for path in spec.files(root):
        h.update(b"\0file\0" + path.name.encode() + b"\0")
        h.update(path.read_bytes())
    h.update(json.dumps([spec.extra_cflags, spec.extra_cuda_cflags]).encode())
    fp = environment_fingerprint() if fingerprint is None else fingerprint
    h.update(json.dumps(fp, sort_keys=True).encode())
    return h.hexdigest()


def module_name(spec: PluginSpec, key: str) -> str:
    return f"su_{spec.name}_{key[:16]}"


# --------------------------------------------------------------------------- locking

@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Blocking inter-process lock on ``path``. Uses flock/msvcrt so that a lock
    held by a killed process is released by the OS (unlike a lock *file*)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    fh.seek(0)
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting for the other build
                    time.sleep(1.0)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- build / load

def _module_file(folder: Path, modname: str) -> Optional[Path]:
    for suffix in (".so", ".pyd", *importlib.machinery.EXTENSION_SUFFIXES):
        candidate = folder / f"{modname}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _import_module(modname: str, path: Path) -> types.ModuleType:
    """Import a compiled extension module from ``path`` under the name ``modname``."""
    if modname in sys.modules:
        return sys.modules[modname]
    loader = importlib.machinery.ExtensionFileLoader(modname, str(path))
    spec = importlib.util.spec_from_file_location(modname, str(path), loader=loader)
    if spec is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[modname] = module
    return module


def build_arguments(modname: str, sources: Sequence[Path], build_dir: Path, spec: PluginSpec,
                    verbose: bool = False) -> dict:
    """The ``torch.utils.cpp_extension.load`` arguments of a plugin build (also used by the GPU-free
    build check in ``torch_utils/nvcc_check.py``, so both compile with the same flags)."""
    win = sys.platform.startswith("win")
    return dict(
        name=modname,
        sources=[str(s) for s in sources],
        build_directory=str(build_dir),
        extra_cflags=[("/O2" if win else "-O3"), *spec.extra_cflags],
        extra_cuda_cflags=["-O3", *spec.extra_cuda_cflags],
        extra_include_paths=[str(Path(sources[0]).parent)],
        with_cuda=True,
        is_python_module=True,
        verbose=verbose,
    )


def _compile(modname: str, sources: Sequence[Path], build_dir: Path, spec: PluginSpec,
             verbose: bool) -> Optional[types.ModuleType]:
    """Compile ``sources`` into ``build_dir/<modname>.so`` with ninja (torch's
    cpp_extension) and return the imported module."""
    from torch.utils import cpp_extension

    print(f"stylegan-unmask: compiling the CUDA op '{spec.name}' (first use only; takes a minute or two)...",
          file=sys.stderr, flush=True)
    return cpp_extension.load(**build_arguments(modname, sources, build_dir, spec, verbose))


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _read_marker(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_or_build(spec: PluginSpec, *, root: Optional[Path] = None, cache: Optional[Path] = None,
                  key: Optional[str] = None, verbose: bool = False,
                  compile_fn: Optional[Callable[..., Optional[types.ModuleType]]] = None,
                  import_fn: Optional[Callable[[str, Path], types.ModuleType]] = None) -> types.ModuleType:
    """Return the compiled module for ``spec``, building it if no complete cached build exists.

    Raises on failure (the caller turns that into a fallback). ``compile_fn`` and
    ``import_fn`` default to the real ones; tests replace them.
    """
    compile_fn = _compile if compile_fn is None else compile_fn
    import_fn = _import_module if import_fn is None else import_fn
    root = source_dir() if root is None else root
    cache = extensions_dir() if cache is None else cache
    key = build_key(spec, root) if key is None else key
    modname = module_name(spec, key)
    final_dir = cache / modname

    # Fast path without the lock: a finished build is immutable once renamed into place.
    marker = _read_marker(final_dir)
    if marker is not None and marker.get("key") == key:
        module_path = _module_file(final_dir, modname)
        if module_path is not None:
            with contextlib.suppress(ImportError, OSError):
                return import_fn(modname, module_path)

    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache / f"{modname}.lock"):
        # Leftovers of builders that died (any live builder would hold the lock).
        for stale in cache.glob(f".tmp-{modname}-*"):
            _remove_tree(stale)

        # Another process may have finished the build while we waited.
        marker = _read_marker(final_dir)
        if final_dir.exists():
            module_path = _module_file(final_dir, modname)
            if marker is not None and marker.get("key") == key and module_path is not None:
                try:
                    return import_fn(modname, module_path)
                except (ImportError, OSError):
                    pass  # corrupt build: rebuild below
            _remove_tree(final_dir)  # half-written, foreign or corrupt: never trust it

        tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        build_dir = cache / f".tmp-{modname}-{tag}-build"
        stage_dir = cache / f".tmp-{modname}-{tag}-stage"
        build_dir.mkdir(parents=True)
        try:
            module = compile_fn(modname, [root / s for s in spec.sources], build_dir, spec, verbose)
            built = _module_file(build_dir, modname)
            if built is None:
                raise RuntimeError(f"the build finished but produced no {modname} module in {build_dir}")
            # Publish a copy (the built file may be loaded, which blocks renaming on Windows)
            # together with the marker, in one atomic rename.
            stage_dir.mkdir()
            shutil.copy2(built, stage_dir / built.name)
            info = {"key": key, "module": built.name, "plugin": spec.name,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **environment_fingerprint()}
            (stage_dir / MARKER_NAME).write_text(json.dumps(info, indent=1), encoding="utf-8")
            os.replace(stage_dir, final_dir)
        finally:
            _remove_tree(stage_dir)
            _remove_tree(build_dir)  # a loaded module stays usable (Linux) or is cleaned up later (Windows)
        if module is None:
            module = import_fn(modname, final_dir / built.name)
        sys.modules.setdefault(modname, module)
        return module


# --------------------------------------------------------------------------- per-process state

@dataclass
class _Record:
    state: str = STATE_NOT_LOADED
    module: Optional[types.ModuleType] = None
    reason: str = ""
    hint: str = ""
    warned: bool = False
    attempts: int = 0


_records: dict[str, _Record] = {}
_lock = threading.RLock()


def _toolchain_problem() -> Optional[tuple[str, str]]:
    """(reason, how to fix) when a build cannot even be attempted, else None."""
    from torch.utils import cpp_extension

    if torch.version.hip is not None:
        return ("this is a ROCm build of PyTorch; the plugins are CUDA-only",
                "nothing to fix: the reference ops are used")
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return (f"PyTorch {torch.__version__} is a CPU-only build",
                    "install a CUDA build of PyTorch (see https://pytorch.org/get-started/locally/)")
        return ("PyTorch sees no usable CUDA GPU/driver", "check the NVIDIA driver and CUDA_VISIBLE_DEVICES")
    if cpp_extension.CUDA_HOME is None:
        return ("the CUDA toolkit (nvcc) was not found",
                "install the CUDA toolkit matching torch.version.cuda="
                f"{torch.version.cuda} and set CUDA_HOME to its folder")
    if not cpp_extension.is_ninja_available():
        return ("the ninja build tool is not installed", "pip install ninja")
    compiler = os.environ.get("CXX") or ("cl" if sys.platform.startswith("win") else "c++")
    if shutil.which(compiler) is None:
        return (f"no C++ compiler ('{compiler}') was found on PATH",
                "install a C++ compiler supported by your CUDA toolkit (e.g. g++), or set CXX")
    return None


def _summarise(exc: BaseException, limit: int = 600) -> str:
    """The informative lines of a (possibly very long) compiler failure."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keywords = ("error", "fatal", "undefined", "not found", "unsupported", "no such file")
    picked = [ln for ln in lines if any(k in ln.lower() for k in keywords)]
    if lines and lines[-1] not in picked:
        picked.append(lines[-1])
    short = " | ".join(picked[-4:])
    return short if len(short) <= limit else "..." + short[-limit:]


def _attempt_load(spec: PluginSpec, record: _Record) -> None:
    record.attempts += 1
    problem = _toolchain_problem()
    if problem is not None:
        record.state, record.reason, record.hint = "unavailable", problem[0], problem[1]
        return
    verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    try:
        record.module = load_or_build(spec, verbose=verbose)
        record.state = STATE_OK
    except Exception as exc:  # any build/import failure -> reference path
        log = extensions_dir() / f"su_{spec.name}.failed.log"
        with contextlib.suppress(OSError):
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), encoding="utf-8")
        record.state = "unavailable"
        record.reason = f"building it failed: {_summarise(exc)}"
        record.hint = (f"see {log} (or set {VERBOSE_ENV}=1 for the compiler output); check that nvcc "
                       f"matches torch.version.cuda={torch.version.cuda} and that your compiler is supported")


def get_plugin(spec: PluginSpec, *, warn: bool = True) -> Optional[types.ModuleType]:
    """The compiled module for ``spec``, or None when the reference ops must be used.

    The first failure is remembered for the life of the process (no rebuild on every
    call) and, when ``warn`` is set, reported with exactly one
    :class:`PluginFallbackWarning` per plugin. ``STYLEGAN_UNMASK_OPS=ref`` returns None
    silently without trying to build.
    """
    if forced_reference():
        return None
    with _lock:
        record = _records.setdefault(spec.name, _Record())
        if record.state == STATE_NOT_LOADED:
            _attempt_load(spec, record)
        if record.state == STATE_OK:
            return record.module
        if warn and not record.warned:
            record.warned = True
            warnings.warn(
                f"stylegan-unmask: the fused CUDA op '{spec.name}' is unavailable because {record.reason}; "
                f"using the slower reference PyTorch implementation. To fix: {record.hint}. "
                f"Set {OPS_ENV}=ref to use the reference ops without this warning.",
                PluginFallbackWarning,
                stacklevel=3,
            )
        return None


def plugin_state(spec: PluginSpec, *, load: bool = True) -> str:
    """'ok', 'disabled' (``STYLEGAN_UNMASK_OPS=ref``), 'unavailable: <reason>', or
    'not loaded' (only with ``load=False`` before first use). Never warns."""
    if forced_reference():
        return STATE_DISABLED
    if load:
        get_plugin(spec, warn=False)
    with _lock:
        record = _records.get(spec.name)
        if record is None or record.state == STATE_NOT_LOADED:
            return STATE_NOT_LOADED
        if record.state == STATE_OK:
            return STATE_OK
        return f"unavailable: {record.reason}"


def reset_plugin_state(name: Optional[str] = None) -> None:
    """Forget load results (all plugins, or one) so the next use tries again, e.g.
    after installing the toolkit in a running notebook. Also used by tests."""
    with _lock:
        if name is None:
            _records.clear()
        else:
            _records.pop(name, None)


def require_plugin(spec: PluginSpec) -> types.ModuleType:
    """The loaded plugin, for autograd backward passes that only run after a plugin forward."""
    module = get_plugin(spec)
    if module is None:  # only possible if the state was reset between forward and backward
        raise RuntimeError(f"{spec.name}: the CUDA plugin disappeared between forward and backward")
    return module
