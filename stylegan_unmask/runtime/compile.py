"""A function run through ``torch.compile`` where that works, and as it is where it does not.

Why: on a CPU most of a projection step at 256-1024 px is not the
convolutions but the elementwise work between them (modulation,
demodulation, noise, bias, leaky ReLU, clamp, bf16 casts, and the same again
in the backward pass), each a full pass over a tensor of up to 64-128 MiB.
TorchInductor fuses those passes into a few vectorised loops and leaves the
convolutions to oneDNN; the numbers are in docs/projector.md. Compiling
needs a working C++ compiler and takes a while the first time (cached on
disk by torch afterwards), so the caller decides where it pays.
If compiling or the first compiled call fails, the plain function is used
from then on, with one warning per process: the result is the same function,
only slower.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch

__all__ = ["MaybeCompiled", "CompileFallbackWarning", "compile_available"]


class CompileFallbackWarning(RuntimeWarning):
    """torch.compile could not be used; the plain PyTorch function runs instead."""


def compile_available() -> bool:
    """Does this torch have torch.compile (2.x)? Whether it works is only known by trying."""
    return hasattr(torch, "compile")


# Each network, batch size, precision and render resolution is a graph of its own (dynamic=False).
# torch's default of 8 per function would, once reached, run later shapes uncompiled without saying so.
RECOMPILE_LIMIT = 64


def _allow_recompiles() -> None:
    try:
        import torch._dynamo.config as dynamo_config
    except ImportError:  # pragma: no cover - torch without dynamo
        return
    for name in ("recompile_limit", "cache_size_limit"):
        if getattr(dynamo_config, name, RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
            setattr(dynamo_config, name, RECOMPILE_LIMIT)


class MaybeCompiled:
    """``fn`` through ``torch.compile(fn, dynamic=False)`` (when ``enabled``), else ``fn`` itself.

    A failure of the first compiled call (compiler missing, unsupported op,
    backend error) switches this wrapper, and every later one for the same
    ``name``, to the plain function with one :class:`CompileFallbackWarning`.
    Errors after a compiled call has succeeded are real errors and propagate.
    ``run_checked(call)`` runs ``call(fn)`` - a forward and its backward -
    under that rule, so failures of the lazily compiled backward pass are
    caught too.
    """

    _broken: set = set()

    def __init__(self, fn: Callable, name: str, enabled: bool = True):
        self.fn = fn
        self.name = name
        self._compiled: Optional[Callable] = None
        self._proven = False
        if enabled and compile_available() and name not in self._broken:
            _allow_recompiles()
            self._compiled = torch.compile(fn, dynamic=False)

    @property
    def compiled(self) -> bool:
        """True while the compiled function is in use."""
        return self._compiled is not None

    def run_checked(self, call: Callable[[Callable], object]):
        """``call(f)`` with the compiled ``f`` (falling back once, see the class) or the plain one."""
        if self._compiled is None:
            return call(self.fn)
        if self._proven:
            return call(self._compiled)
        try:
            out = call(self._compiled)
        except Exception as error:  # noqa: BLE001 - any compile failure means: run the plain function
            self._fall_back(error)
            return call(self.fn)
        self._proven = True
        return out

    def _fall_back(self, error: BaseException) -> None:
        self._compiled = None
        first = self.name not in self._broken
        self._broken.add(self.name)
        if first:
            summary = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            warnings.warn(f"torch.compile could not be used for {self.name} ({type(error).__name__}: {summary}); "
                          f"running it without compiling (same results, slower)",
                          CompileFallbackWarning, stacklevel=4)
