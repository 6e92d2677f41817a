"""Compile the fused CUDA plugins with NVIDIA's compiler on a machine without a GPU (``pytest -m nvcc``).

The plugins are otherwise compiled only on a user's GPU machine, at first use,
so a typo, a missing include or a template that does not instantiate would
reach that user untested. NVIDIA ships nvcc, the CUDA headers and the runtime
as wheels (``pip install -e ".[cuda-build]"``), and the CPU torch wheel carries
the c10/ATen CUDA headers, so every translation unit can be compiled here,
for the architectures users have, with the runtime loader's own flags
(:func:`torch_utils.custom_ops.build_arguments`) plus warnings as errors.

Two things a CPU torch wheel lacks are handled explicitly: the generated
header ``c10/cuda/impl/cuda_cmake_macros.h`` (written into a private include
folder, as torch's CUDA builds generate it) and ``libtorch_cuda``/``libc10_cuda``,
so the extension cannot be linked as a GPU build links it. :func:`link_check`
links it against the libraries that are present and requires every symbol
left unresolved to belong to the CUDA parts of torch.
"""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import custom_ops

#: GPU generations in use (Volta, Turing, Ampere, Ada, Hopper), as compute capabilities; PTX for the newest.
TARGET_ARCHS = ("7.0", "7.5", "8.0", "8.6", "8.9", "9.0")
#: Warnings are errors in our code; torch's and CUDA's headers are system includes, so theirs are not ours.
WERROR_CFLAGS = ("-Wall", "-Wextra", "-Werror")
WERROR_CUDA_CFLAGS = ("-Xcompiler=-Wall,-Wextra,-Werror", "--Werror=all-warnings")
#: The dtypes the Python wrappers send to the kernels (and the index widths the launchers pick).
KERNEL_DTYPES = ("float", "double", "c10::Half", "c10::BFloat16")
INDEX_TYPES = ("int", "long")
#: Symbols only torch's CUDA libraries define (they are absent from the CPU wheel).
TORCH_CUDA_SYMBOL = re.compile(r"c10::cuda::|at::cuda::|c10_cuda|cudaGetErrorString|cuda[A-Z]\w*|__cuda")
INSTALL_HINT = 'pip install -e ".[cuda-build]"'
_COUNTER = itertools.count()


@dataclass(frozen=True)
class Toolchain:
    """A CUDA toolkit able to compile device code: its root, nvcc, version and the architectures it supports."""

    home: Path
    nvcc: Path
    version: str
    archs: Tuple[str, ...]

    def split_archs(self, wanted: Sequence[str] = TARGET_ARCHS) -> Tuple[List[str], List[str]]:
        """(supported, unsupported) among ``wanted``."""
        return [a for a in wanted if a in self.archs], [a for a in wanted if a not in self.archs]


def _candidate_homes() -> Iterator[Path]:
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(Path(base).glob("cu1[0-9]"), reverse=True)  # the wheels' nvidia/cu13 layout
    if os.environ.get("CUDA_HOME"):
        yield Path(os.environ["CUDA_HOME"])
    nvcc = shutil.which("nvcc")
    if nvcc:
        yield Path(nvcc).resolve().parent.parent


def find_toolchain() -> Tuple[Optional[Toolchain], str]:
    """The first complete toolkit (pip wheels first, then $CUDA_HOME, then PATH), or None and why not."""
    problems = []
    for home in _candidate_homes():
        nvcc = home / "bin" / "nvcc"
        if not nvcc.is_file():
            problems.append(f"{home}: no bin/nvcc")
            continue
        if not (home / "nvvm" / "bin" / "cicc").is_file():
            problems.append(f"{home}: nvcc without its device compiler nvvm/bin/cicc (pip install nvidia-nvvm)")
            continue
        if not (home / "include" / "cuda_runtime.h").is_file():
            problems.append(f"{home}: no include/cuda_runtime.h (pip install nvidia-cuda-runtime)")
            continue
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
        version = (re.search(r"release (\d+\.\d+)", out) or re.search(r"(\d+\.\d+)", out or "0.0")).group(1)
        listed = subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True).stdout
        archs = tuple(f"{m[:-1]}.{m[-1]}" for m in re.findall(r"compute_(\d+)", listed))
        return Toolchain(home, nvcc, version, archs), ""
    reason = "; ".join(problems) or "no CUDA compiler found"
    return None, f"{reason}. Install NVIDIA's compiler packages with: {INSTALL_HINT}"


def header_shim(folder: Path) -> Path:
    """An include folder providing the generated c10 CUDA header a CPU torch wheel lacks."""
    from torch.utils import cpp_extension

    header = Path("c10/cuda/impl/cuda_cmake_macros.h")
    present = any((Path(p) / header).is_file() for p in cpp_extension.include_paths())
    target = folder / header
    if not present and not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#pragma once\n// Written by torch_utils/nvcc_check.py: torch's CUDA builds generate this.\n"
                          "#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return folder


@contextlib.contextmanager
def _cuda_build_environment(toolchain: Toolchain, arch_list: str) -> Iterator[None]:
    """cpp_extension with this toolkit and arch list, whatever torch build is installed."""
    from torch.utils import cpp_extension

    old_home, old_arch = cpp_extension.CUDA_HOME, os.environ.get("TORCH_CUDA_ARCH_LIST")
    cpp_extension.CUDA_HOME = str(toolchain.home)
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    try:
        yield
    finally:
        cpp_extension.CUDA_HOME = old_home
        if old_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old_arch


@dataclass
class PluginBuild:
    """What compiling one plugin produced."""

    name: str
    build_dir: Path
    archs: List[str]
    skipped_archs: List[str]
    objects: List[Path] = field(default_factory=list)
    compiled: bool = False
    log: str = ""
    nvcc_command: str = ""

    def kernel_instantiations(self) -> Dict[str, List[str]]:
        """Kernel template → the ``<dtype, index>`` pairs instantiated in the CUDA object (host stubs)."""
        found: Dict[str, List[str]] = {}
        for obj in self.objects:
            if not obj.name.endswith(".cuda.o"):
                continue
            out = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True).stdout
            for kernel, args in re.findall(r"void \(anonymous namespace\)::(\w+_kernel)<([^>]*)>", out):
                found.setdefault(kernel, [])
                if args not in found[kernel]:
                    found[kernel].append(args)
        return found


def arch_list(archs: Sequence[str]) -> str:
    """TORCH_CUDA_ARCH_LIST: every arch as SASS, the newest also as PTX (for GPUs newer than the list)."""
    ordered = sorted(archs, key=lambda a: tuple(int(x) for x in a.split(".")))
    return ";".join(ordered[:-1] + [ordered[-1] + "+PTX"])


def build_plugin(spec: custom_ops.PluginSpec, toolchain: Toolchain, build_root: Path,
                 archs: Sequence[str] = TARGET_ARCHS, source_root: Optional[Path] = None) -> PluginBuild:
    """Compile every translation unit of ``spec`` to object code (ninja, in parallel), warnings as errors."""
    from torch.utils import cpp_extension

    root = Path(source_root) if source_root is not None else custom_ops.source_dir()
    supported, skipped = toolchain.split_archs(archs)
    if not supported:
        raise ValueError(f"nvcc {toolchain.version} supports none of {list(archs)}")
    modname = f"su_{spec.name}_nvcc_check_{os.getpid()}_{next(_COUNTER)}"
    build_dir = Path(build_root) / modname
    build_dir.mkdir(parents=True, exist_ok=True)
    args = custom_ops.build_arguments(modname, [root / s for s in spec.sources], build_dir, spec)
    args["extra_cflags"] = [*args["extra_cflags"], *WERROR_CFLAGS]
    args["extra_cuda_cflags"] = [*args["extra_cuda_cflags"], *WERROR_CUDA_CFLAGS]
    args["extra_include_paths"] = [*args["extra_include_paths"], str(header_shim(Path(build_root) / "shim"))]
    result = PluginBuild(spec.name, build_dir, supported, skipped)
    with _cuda_build_environment(toolchain, arch_list(supported)):
        try:
            cpp_extension.load(**args)
        except Exception as e:  # noqa: BLE001 - the link is expected to fail on a CPU torch; see below
            result.log = str(e)
    result.objects = [build_dir / _object_name(s) for s in spec.sources]
    # The link needs libtorch_cuda, absent from a CPU torch: ask ninja for the objects alone to learn
    # whether every translation unit compiled (an up-to-date object costs nothing here).
    ninja = subprocess.run(["ninja", "-C", str(build_dir), *[o.name for o in result.objects]],
                           capture_output=True, text=True)
    result.compiled = ninja.returncode == 0 and all(o.is_file() for o in result.objects)
    if not result.compiled:
        result.log = ninja.stdout + ninja.stderr
    ninja_file = (build_dir / "build.ninja").read_text() if (build_dir / "build.ninja").is_file() else ""
    result.nvcc_command = next((ln for ln in ninja_file.splitlines() if ln.startswith("cuda_cflags")), "")
    return result


def _object_name(source: str) -> str:
    stem, suffix = os.path.splitext(os.path.basename(source))
    return f"{stem}.cuda.o" if suffix == ".cu" else f"{stem}.o"


def link_check(build: PluginBuild, toolchain: Toolchain) -> Tuple[bool, List[str]]:
    """Link the objects into a shared library against torch's CPU libraries and the CUDA runtime.

    Returns (ok, unexpected): ``unexpected`` lists unresolved symbols that a CUDA build of torch would
    not provide either (a misspelt function, a missing definition); ok when there are none.
    """
    import torch

    lib = build.build_dir / f"{build.name}_link_check.so"
    torch_lib = Path(torch.__file__).parent / "lib"
    cudart = sorted((toolchain.home / "lib").glob("libcudart.so*")) + sorted((toolchain.home / "lib64").glob("libcudart.so*"))
    cmd = ["c++", "-shared", "-o", str(lib), *map(str, build.objects), f"-L{torch_lib}", "-lc10", "-ltorch_cpu",
           "-ltorch", "-ltorch_python", *([str(cudart[0])] if cudart else [])]
    link = subprocess.run(cmd, capture_output=True, text=True)
    if link.returncode != 0:
        return False, [link.stderr.strip()[-2000:]]
    libs = [torch_lib / f"lib{n}.so" for n in ("c10", "torch_cpu", "torch", "torch_python")] + cudart[:1]
    defined = set()
    for path in libs:
        if path.is_file():
            out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True).stdout
            defined.update(line.split()[-1] for line in out.splitlines() if line.strip())
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
    # "U name" lines; weak references ("w") may stay unresolved. A versioned name (name@LIB) was found
    # by the linker in that library.
    missing = [line.split()[-1] for line in undefined.splitlines() if line.split()[:1] == ["U"]]
    missing = [m for m in missing if m not in defined and not _system_symbol(m)]
    demangled = subprocess.run(["c++filt"], input="\n".join(missing), capture_output=True, text=True).stdout.split("\n")
    unexpected = [d for d in demangled if d and not TORCH_CUDA_SYMBOL.search(d)]
    return not unexpected, unexpected


def _system_symbol(name: str) -> bool:
    """libc/libstdc++/libgcc/Python C-API symbols, resolved at load time by the process."""
    return bool(re.match(r"(Py|_Py|__cxa|__gxx|_Unwind|__gcc|__stack_chk|_ITM_|__libc|__tls)", name)) or "@" in name


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m torch_utils.nvcc_check``: compile both plugins and print what happened."""
    import tempfile

    from .ops import bias_act, upfirdn2d

    toolchain, why = find_toolchain()
    if toolchain is None:
        print(f"no CUDA compiler: {why}", file=sys.stderr)
        return 2
    print(f"nvcc {toolchain.version} at {toolchain.home}; supports {', '.join(toolchain.archs)}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for spec in (bias_act.PLUGIN, upfirdn2d.PLUGIN):
            build = build_plugin(spec, toolchain, Path(tmp))
            linked, unexpected = link_check(build, toolchain) if build.compiled else (False, [])
            ok &= build.compiled and linked
            print(f"{spec.name}: compiled={build.compiled} for {', '.join(build.archs)} "
                  f"(skipped: {', '.join(build.skipped_archs) or 'none'}); link check={'ok' if linked else unexpected}")
            if not build.compiled:
                print(build.log[-4000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
