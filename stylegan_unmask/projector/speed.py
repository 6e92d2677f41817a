"""How fast a projection step runs, never what it computes: precision, synthesis options, compiling.

The fast schedule renders the same function as the official one (non-fused
modulation, on a CPU the layers' one-node tail), in the precision the device
does well, and on a CPU from 256 px up through ``torch.compile``; the memory
settings (huge pages, heap reuse) are the runtime's. :class:`StepFunction`
bundles these choices for one projection. Measurements: docs/projector.md.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import List, Optional, Sequence, Tuple

import torch

from ..runtime import huge_pages
from ..runtime.compile import MaybeCompiled
from ..runtime.cpu import cpu_has_native_bf16
from .config import PRECISIONS, ProjectionConfig
from .loss import MaskedLoss, hidden_closeness, latent_prior, masked_loss_terms, noise_regularization

__all__ = ["resolve_precision", "resolve_compile", "fast_render_options", "compiled_render_options", "autocast",
           "render", "StepFunction", "COMPILE_FROM_RESOLUTION", "BF16_FROM_RESOLUTION"]

# 'auto' compiles the fast schedule's step on a CPU from this network resolution up: below it the
# compile time is not won back (docs/projector.md, "a compiled step").
COMPILE_FROM_RESOLUTION = 256
# 'auto' precision on a CPU with native bf16 uses it from this network resolution up (resolve_precision).
BF16_FROM_RESOLUTION = 256

_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_precision(precision: str, device, resolution: Optional[int] = None) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' on `device` -> the precision actually used ('fp32', 'bf16' or 'fp16').

    'auto' on a CPU is bf16 only for networks of at least ``BF16_FROM_RESOLUTION``
    px (``resolution``; None counts as large): below it bf16 bought little and
    cost fit precision (docs/projector.md), so fp32 runs. A request the device
    cannot honour falls back to 'fp32' with one warning per process and kind.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        if precision in ("auto", "fp16"):
            return "fp16"
        if torch.cuda.is_bf16_supported():
            return "bf16"
        _warn_once("bf16-cuda", "precision='bf16': this GPU has no bf16 support; projecting in fp32")
        return "fp32"
    if device.type == "cpu":
        if precision == "fp16":
            _warn_once("fp16-cpu", "precision='fp16' needs CUDA (CPUs have no fast float16 convolutions); "
                                   "projecting in fp32")
            return "fp32"
        if precision == "auto" and resolution is not None and resolution < BF16_FROM_RESOLUTION:
            return "fp32"
        if cpu_has_native_bf16():
            return "bf16"
        _warn_once("bf16-cpu", f"this CPU has no native bf16 (torch CPU capability "
                               f"{torch.backends.cpu.get_cpu_capability()}, no avx512_bf16/amx_bf16 flag): "
                               f"projecting in fp32")
        return "fp32"
    if precision != "auto":
        _warn_once(f"{precision}-{device.type}", f"precision={precision!r} is not supported on {device.type}; "
                                                 f"projecting in fp32")
    return "fp32"


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision ('fp16' uses the network's own fp16 blocks instead)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_compile(config: ProjectionConfig, device, G) -> bool:
    """Whether the fast schedule's step (render + loss + backward) runs through ``torch.compile``.

    'off': never; 'on': always with the fast schedule; 'auto': on a CPU for
    networks of at least ``COMPILE_FROM_RESOLUTION`` px. The official schedule
    is never compiled (it is the exact reference). A failed compile falls back
    to the plain step with one warning (``stylegan_unmask.runtime.compile``).
    """
    if config.schedule == "official" or config.compile == "off" or config.steps == 0:
        return False
    if config.compile == "on":
        return True
    return torch.device(device).type == "cpu" and G.img_resolution >= COMPILE_FROM_RESOLUTION


def fast_render_options(device) -> dict:
    """Synthesis options of the fast schedule on `device`: the same function as the official render.

    Non-fused modulation everywhere (its backward needs no per-sample kernel
    gradient). On a CPU also the layers' one-node tail (``lean``:
    demodulation, noise, bias, activation and clamp with one saved tensor, see
    ``torch_utils.ops.demod_bias_act``). Channels-last activations
    (``channels_last_from``) stay an option of the synthesis network; they
    made the CPU step slower once huge pages were on (docs/projector.md).
    """
    if torch.device(device).type == "cpu":
        return dict(fused_modconv=False, lean=True)
    return dict(fused_modconv=False)


def compiled_render_options(device) -> dict:
    """Synthesis options of a compiled step: non-fused modulation written as plain ops, which the
    compiler fuses itself (the hand-fused ``lean`` tail is an opaque autograd node to it)."""
    return dict(fused_modconv=False)


def render(G, ws: torch.Tensor, noise, force_fp32: bool, **options) -> torch.Tensor:
    """The full image of ``ws`` with the given noise maps; ``options``: synthesis options (none = official)."""
    return G.synthesis(ws, noise_mode="const", force_fp32=force_fp32, noise=noise, **options)


def render_and_loss(G, ws: torch.Tensor, noise, loss: MaskedLoss, force_fp32: bool, precision: str,
                    options: Tuple[Tuple[str, object], ...]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's forward pass: render (under the precision's autocast), the masked loss terms and the
    samples' closeness under the mask (zeros with one start per target)."""
    with autocast(precision, ws.device):
        images = render(G, ws, noise, force_fp32, **dict(options))
        mse, perceptual = masked_loss_terms(images, loss)
        return mse, perceptual, hidden_closeness(images.float(), loss)


class StepFunction:
    """One projection's step: forward, loss and gradients, in the precision and form chosen for the device."""

    def __init__(self, G, config: ProjectionConfig, device: torch.device):
        self.G, self.config = G, config
        self.prior: Optional[Tuple[torch.Tensor, float]] = None
        self.precision = resolve_precision(config.precision, device, G.img_resolution)
        if device.type == "cpu":
            huge_pages.warn_if_unused()
        # On a CPU the network's fp16 blocks never run (force_fp32 changes nothing there); on CUDA only 'fp16' uses them.
        self.force_fp32 = config.force_fp32 if (self.precision == "fp16" or device.type != "cuda") else True
        self.autocast = autocast(self.precision, device)
        # The plain step's synthesis options; a compiled step uses its own (same function) unless it fell back.
        self._plain_options = tuple(sorted(({} if config.schedule == "official"
                                            else fast_render_options(device)).items()))
        self._compiled_options = tuple(sorted(compiled_render_options(device).items()))
        self._function = MaybeCompiled(render_and_loss, "the projection step",
                                       enabled=resolve_compile(config, device, G))

    def hold_near(self, start: torch.Tensor, w_std: float) -> None:
        """Centre the latent prior on each latent's start ([N, num_ws, w_dim]; see ``loss.latent_prior``)."""
        self.prior = (start.detach().clone(), float(w_std))

    @property
    def compiled(self) -> bool:
        """True while the step runs through ``torch.compile``."""
        return self._function.compiled

    def __call__(self, ws: torch.Tensor, noise: Sequence[torch.Tensor], loss: MaskedLoss,
                 params: List[torch.Tensor]):
        """(mse, perceptual, total, noise_reg, gradients of params) of one step."""
        config = self.config

        def evaluate(function):
            options = self._plain_options if function is render_and_loss else self._compiled_options
            mse, perceptual, closeness = function(self.G, ws, noise, loss, self.force_fp32, self.precision, options)
            total = config.weighted(mse, perceptual)
            if loss.samples > 1 and config.sample_spread > 0:
                total = total + config.sample_spread * closeness
            if config.prior_weight > 0:
                if self.prior is None:
                    raise ValueError("w_prior > 0 needs the prior's centre: call hold_near(start, w_std) first")
                total = total + config.prior_weight * latent_prior(ws, *self.prior)
            if config.optimize_noise:
                reg = noise_regularization(noise)
                total = total + config.noise_regularize * reg
            else:
                reg = torch.zeros_like(total)
            return mse, perceptual, total, reg, torch.autograd.grad(total.sum(), params)

        return self._function.run_checked(evaluate)
