"""Masked W+ projection: find the StyleGAN2 latent whose image matches a face outside its mask.

The optimisation follows the schedule of NVIDIA's official StyleGAN2 projector
(Adam, learning-rate ramp up/down, decaying latent jitter, optional noise-map
optimisation with the multi-scale autocorrelation regulariser), with two
differences that the unmasking task needs:

* the variable is a W+ latent ``[N, num_ws, w_dim]`` (one w per synthesis
  layer) instead of a single w, so the face can be matched more closely;
* the loss sees only the *visible* pixels (outside the face mask):

      L_i = mse_weight * sum(m * (x - y)^2) / (C * sum(m))
          + lambda_perceptual * sum_l sum(m_l * (phi_l(x*m) - phi_l(y*m))^2) / (C_l * sum(m_l))
          [+ noise_regularize * R_noise(n_i)   when the noise maps are optimised]

  where ``x`` is the generated and ``y`` the target image (``[-1, 1]``), ``m``
  the visible mask (1 = visible), ``C = 3``; ``phi_l`` are VGG16 activations
  (default ``conv2_2`` after ReLU) of the images with every hidden pixel set
  to 0 and, when larger than 256 px, area-downsampled to 256 px as the
  official projector does (smaller images are used as they are); ``m_l`` is the
  visible mask area-averaged to layer ``l``'s grid (a soft weight: the
  fraction of visible pixels under each feature position); ``C_l`` the
  layer's channel count. Images in a batch are independent: the batch loss is
  the sum of the per-image losses, so each image gets its own gradient, and
  Adam's per-element statistics keep the optimisations separate.

Hidden target pixels have exactly zero influence: they are replaced by 0
(``torch.where``) before anything else sees them, so the gradient with
respect to them is exactly 0 and changing them (even to NaN) changes nothing.
The hidden part of the generated image likewise receives no gradient from the
loss: it is filled in by the generator's prior through the latent alone.

All randomness comes from a ``torch.Generator`` seeded with ``config.seed``
(drawn on the CPU, then moved), never from the global RNG, so the same seed on
the same device gives the same result; every image in a batch sees the same
random stream it would see if it were projected alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stylegan_unmask import huge_pages
from stylegan_unmask.compiled import MaybeCompiled

__all__ = [
    "ProjectionConfig",
    "ProjectionResult",
    "ProjectionStep",
    "MaskedLoss",
    "project",
    "psnr_visible",
    "noise_regularization",
    "learning_rate_ramp",
    "latent_noise_scale",
    "w_statistics",
    "PRECISIONS",
    "SCHEDULES",
    "resolve_precision",
    "cpu_has_native_bf16",
    "fast_render_options",
    "COMPILE_MODES",
    "resolve_compile",
]

INIT_MODES = ("avg", "random", "best-of-N")
NOISE_MODES = ("const", "random", "none")
LOSS_KEYS = ("total", "mse", "perceptual", "noise_reg")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("fast", "official")
COMPILE_MODES = ("auto", "on", "off")
# 'auto' compiles the fast schedule's step on a CPU from this network resolution up: below it
# the compile time (cold: ~40 s at 64 px) is not won back (docs/projector.md, "a compiled step").
COMPILE_FROM_RESOLUTION = 256
# 'auto' precision on a CPU with native bf16 uses it from this network resolution up (resolve_precision).
BF16_FROM_RESOLUTION = 256

# w statistics (the latent jitter's scale) use a fixed seed, as the official
# projector does, so they are a property of the network and not of config.seed.
W_STATS_SEED = 123


@dataclass
class ProjectionConfig:
    """Every knob of the projection. Defaults are the official projector's schedule.

    Schedule (t = step / steps):
      lr(t) = lr * ramp(t),  ramp = (0.5 - 0.5 cos(pi * min(1, (1 - t) / lr_rampdown_length)))
                                    * min(1, t / lr_rampup_length)
      latent jitter std(t) = w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2
    where w_std = sqrt(E||w - mean(w)||^2) over ``w_avg_samples`` mapped z.

    ``schedule='official'`` is exactly that procedure (with ``precision='fp32'``
    it reproduces the projector before the fast schedule bit for bit).
    ``schedule='fast'`` (the default) is the same optimisation - same steps,
    lr and jitter schedule, same loss, the full image at every step - computed
    faster (see :func:`fast_render_options`). ``phases`` (experimental, off by
    default) renders only the running skip image up to a lower resolution for
    fractions of the steps: ``(fraction of the steps, render resolution)``
    pairs; on our trained network it ended 4-40x above the official loss
    (docs/projector.md), so no preset uses it.
    ``precision``: 'fp32'; 'bf16' (autocast; on a CPU only with native bf16,
    else fp32 and one warning); 'fp16' (CUDA: the network's ``num_fp16_res``
    float16 blocks, as NVIDIA's projector; fp32 elsewhere); 'auto' = fp16 on
    CUDA, bf16 on CPUs with native bf16 (networks of 256 px and more), else fp32.
    ``compile``: run the fast schedule's step (render + loss + backward)
    through ``torch.compile`` - 'auto' (on a CPU for networks of 256 px and
    more), 'on' or 'off'; see :func:`resolve_compile`.
    """

    steps: int = 1000
    lr: float = 0.1
    adam_betas: Tuple[float, float] = (0.9, 0.999)
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    w_avg_samples: int = 10000
    mse_weight: float = 1.0
    lambda_perceptual: float = 0.8
    perceptual_layers: Tuple[str, ...] = ("conv2_2",)
    perceptual_resolution: int = 256
    init: str = "avg"
    optimize_noise: bool = False
    noise_mode: str = "const"
    noise_regularize: float = 1e5
    seed: int = 0
    preview_every: int = 50
    force_fp32: bool = False
    candidate_batch: int = 8
    schedule: str = "fast"
    precision: str = "auto"
    compile: str = "auto"
    phases: Optional[Tuple[Tuple[float, int], ...]] = None

    def __post_init__(self):
        if isinstance(self.perceptual_layers, str):
            self.perceptual_layers = (self.perceptual_layers,)
        self.perceptual_layers = tuple(self.perceptual_layers)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"steps must be a whole number >= 0, got {self.steps}")
        self.steps = int(self.steps)
        for name in ("lr", "lr_rampdown_length", "lr_rampup_length", "noise_ramp_length", "w_avg_samples"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("initial_noise_factor", "mse_weight", "lambda_perceptual", "noise_regularize"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mse_weight == 0 and self.lambda_perceptual == 0:
            raise ValueError("mse_weight and lambda_perceptual are both 0: nothing to optimise")
        if self.lambda_perceptual > 0 and not self.perceptual_layers:
            raise ValueError("lambda_perceptual > 0 needs at least one perceptual layer")
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if self.perceptual_resolution < 16:
            raise ValueError(f"perceptual_resolution must be >= 16, got {self.perceptual_resolution}")
        if self.candidate_batch < 1:
            raise ValueError(f"candidate_batch must be >= 1, got {self.candidate_batch}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.phases is not None:
            phases = tuple((float(f), int(r)) for f, r in self.phases)
            if not phases or any(not f > 0 for f, _ in phases) or abs(sum(f for f, _ in phases) - 1) > 1e-6:
                raise ValueError(f"phases must be (fraction > 0, resolution) pairs whose fractions sum to 1, "
                                 f"got {self.phases!r}")
            if any(r < 4 or r & (r - 1) for _, r in phases) or [r for _, r in phases] != sorted(r for _, r in phases):
                raise ValueError(f"phase resolutions must be powers of two >= 4 in increasing order, "
                                 f"got {self.phases!r}")
            self.phases = phases
        self.best_of  # validates `init`

    @property
    def best_of(self) -> Optional[int]:
        """N of a 'best-of-N' init, else None."""
        if self.init in ("avg", "random"):
            return None
        match = re.fullmatch(r"best-of-(\d+)", str(self.init))
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"init must be 'avg', 'random' or 'best-of-N' (e.g. 'best-of-16'), got {self.init!r}")
        return int(match.group(1))

    def learning_rate(self, step: int) -> float:
        return self.lr * learning_rate_ramp(step / max(self.steps, 1), self.lr_rampdown_length, self.lr_rampup_length)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def learning_rate_ramp(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official projector's lr multiplier at progress t in [0, 1): cosine ramp-down, linear ramp-up."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


def latent_noise_scale(t: float, w_std: float, initial_noise_factor: float = 0.05,
                       noise_ramp_length: float = 0.75) -> float:
    """Std of the jitter added to the latent at progress t (decays quadratically to 0 at noise_ramp_length)."""
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


@dataclass
class ProjectionResult:
    """One projected image.

    ``noise`` is always the list of noise maps the image was rendered with
    (``[1, 1, r, r]`` each, in ``G.synthesis.noise_shapes()`` order): the
    optimised maps, the network's const buffers, the seeded random maps or
    zeros (``noise_source`` says which), so ``render`` reproduces ``image``.
    ``psnr`` is on the visible region, images clamped to [-1, 1] and mapped to
    [0, 1] (peak 1, i.e. the same as 0..255 with peak 255, without rounding).
    """

    w_plus: torch.Tensor                      # [num_ws, w_dim] float32, cpu
    noise: List[torch.Tensor]                 # [1, 1, r, r] float32, cpu, noise_shapes() order
    noise_source: str                         # 'optimized' | 'const' | 'random' | 'none'
    image: torch.Tensor                       # [3, R, R] float32 in [-1, 1], cpu
    losses: Dict[str, np.ndarray]             # per step: total, mse, perceptual, noise_reg
    schedule: Dict[str, np.ndarray]           # per step: lr, w_noise_scale
    final_loss: float                         # total loss of `image` (no jitter)
    final_mse: float
    final_perceptual: float
    psnr: float                               # dB, visible region
    seed: int
    config: ProjectionConfig
    init: str                                 # e.g. 'avg', 'random', 'best-of-16: candidate 3 (seed 0)'
    steps_run: int
    stopped_early: bool = False
    precision: str = "fp32"                   # the precision used: 'fp32' | 'bf16' | 'fp16' (final image: see render)
    compiled: bool = False                    # the steps ran through torch.compile (see resolve_compile)

    def render(self, G, device=None, force_fp32: Optional[bool] = None) -> torch.Tensor:
        """Re-render [1, 3, R, R] (unclamped) from ``w_plus`` and the saved noise."""
        device = torch.device(device) if device is not None else _module_device(G)
        ws = self.w_plus.to(device)[None]
        noise = [n.to(device) for n in self.noise]
        if force_fp32 is None:
            # The final image is rendered without autocast; fp16 blocks only ran with precision 'fp16'.
            force_fp32 = self.config.force_fp32 if self.precision == "fp16" or device.type != "cuda" else True
        fp32 = force_fp32
        with torch.no_grad():
            return G.synthesis(ws, noise_mode="const", force_fp32=fp32, noise=noise)


@dataclass
class ProjectionStep:
    """What ``callback(step, info)`` receives. Return True from the callback to stop early."""

    step: int                                 # 0-based index of the step just taken
    steps: int
    lr: float
    w_noise_scale: float
    losses: Dict[str, np.ndarray]             # this step's per-image values, [N] each
    images: torch.Tensor                      # [N, 3, R, R] current latent, no jitter, unclamped, detached
    w_plus: torch.Tensor                      # [N, num_ws, w_dim] detached


# --------------------------------------------------------------------------------------
# The masked loss.


def _area_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="area")


class MaskedLoss:
    """The visible-region loss of generated images against fixed targets (see module docstring).

    ``MaskedLoss(target, hidden_mask, ...)(images)`` returns per-image
    ``(mse, perceptual)`` tensors ``[N]``. Target features are computed once.
    ``images`` may also have a batch of B candidates for a single target
    (``loss.select(i)(candidates)``), the target then broadcasts.
    """

    def __init__(self, target: torch.Tensor, hidden_mask: torch.Tensor, *, features=None,
                 layers: Sequence[str] = ("conv2_2",), perceptual_resolution: int = 256):
        self.visible = ~hidden_mask.bool()                      # [N, 1, R, R]
        self.weight = self.visible.to(target.dtype)              # m
        self.visible_count = self.weight.sum(dim=(1, 2, 3))      # sum(m)
        # Hidden target pixels become exactly 0 here; nothing downstream sees them.
        self.target = torch.where(self.visible, target, torch.zeros((), dtype=target.dtype, device=target.device))
        self.features = features
        self.layers = tuple(layers)
        self.resolution = int(perceptual_resolution)
        self.layer_weights: Dict[str, torch.Tensor] = {}
        self.target_features: Dict[str, torch.Tensor] = {}
        if features is not None:
            feats = features(self._perceptual_input(self.target))
            small_mask = self._perceptual_input(self.weight)
            for name in self.layers:
                self.target_features[name] = feats[name]
                self.layer_weights[name] = F.interpolate(small_mask, size=feats[name].shape[-2:], mode="area")

    def _perceptual_input(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample to `resolution` when larger (area), as the official projector does before VGG."""
        return _area_resize(x, self.resolution) if x.shape[-1] > self.resolution else x

    def select(self, index: int) -> "MaskedLoss":
        """The loss of target `index` alone (a view; nothing is recomputed)."""
        sub = object.__new__(MaskedLoss)
        sub.__dict__.update(self.__dict__)
        sl = slice(index, index + 1)
        sub.visible, sub.weight, sub.visible_count = self.visible[sl], self.weight[sl], self.visible_count[sl]
        sub.target = self.target[sl]
        sub.target_features = {k: v[sl] for k, v in self.target_features.items()}
        sub.layer_weights = {k: v[sl] for k, v in self.layer_weights.items()}
        return sub

    def __call__(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return _masked_loss_terms(images, self)


def _masked_loss_terms(images: torch.Tensor, loss: MaskedLoss) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mse, perceptual) per image: the body of ``MaskedLoss.__call__``, a plain function so that
    ``torch.compile`` reads the loss's tensors as inputs (a new loss of the same shapes reuses the
    compiled code)."""
    zero = torch.zeros((), dtype=images.dtype, device=images.device)
    x = torch.where(loss.visible, images, zero)
    channels = images.shape[1]
    mse = (loss.weight * (x - loss.target).square()).sum(dim=(1, 2, 3)) / (channels * loss.visible_count)
    if loss.features is None:
        return mse, torch.zeros_like(mse)
    feats = loss.features(loss._perceptual_input(x))
    perceptual = torch.zeros_like(mse)
    for name in loss.layers:
        m_l = loss.layer_weights[name]
        diff = (feats[name] - loss.target_features[name]).square()
        perceptual = perceptual + (m_l * diff).sum(dim=(1, 2, 3)) / (diff.shape[1] * m_l.sum(dim=(1, 2, 3)))
    return mse, perceptual


def psnr_visible(images: torch.Tensor, target: torch.Tensor, hidden_mask: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image over the visible pixels; images clamped to [-1, 1], compared on [0, 1]."""
    visible = ~hidden_mask.bool()
    a = (images.clamp(-1, 1) + 1) / 2
    b = (target.clamp(-1, 1) + 1) / 2
    se = torch.where(visible, (a - b).square(), torch.zeros((), dtype=a.dtype, device=a.device))
    mse = se.sum(dim=(1, 2, 3)) / (images.shape[1] * visible.sum(dim=(1, 2, 3)))
    return 10 * torch.log10(1 / mse)


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image multi-scale autocorrelation penalty of noise maps ([N, 1, r, r] each) -> [N].

    For each map and each 2x-downsampled version of it down to 8x8: the squared
    mean of its product with itself shifted by one pixel, horizontally and
    vertically (the official projector's regulariser, per image).
    """
    total = None
    for n in noise:
        v = n
        while True:
            term = (v * torch.roll(v, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square() \
                + (v * torch.roll(v, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            total = term if total is None else total + term
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total


# --------------------------------------------------------------------------------------
# Network helpers.


def _module_device(module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


_w_stats_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _map(G, z: torch.Tensor) -> torch.Tensor:
    """z -> ws [N, num_ws, w_dim], never touching the network's w_avg EMA."""
    try:
        return G.mapping(z, None, truncation_psi=1, truncation_cutoff=None, update_emas=False)
    except TypeError:  # a mapping without the update_emas argument
        return G.mapping(z, None, truncation_psi=1, truncation_cutoff=None)


@torch.no_grad()
def w_statistics(G, samples: int = 10000, device=None) -> Tuple[torch.Tensor, float]:
    """(mean w [w_dim], w_std) over `samples` mapped z drawn with a fixed seed.

    w_std = sqrt(sum ||w_k - mean||^2 / samples), the official projector's
    latent-jitter scale. Cached per network, sample count and device.
    """
    device = torch.device(device) if device is not None else _module_device(G)
    key = (int(samples), str(device))
    cache = _w_stats_cache.setdefault(G, {})
    if key in cache:
        return cache[key]
    gen = torch.Generator().manual_seed(W_STATS_SEED)
    z = torch.randn([samples, G.z_dim], generator=gen)
    ws = torch.cat([_map(G, chunk.to(device))[:, 0].double() for chunk in z.split(2048)])
    mean = ws.mean(dim=0)
    std = float(((ws - mean).square().sum() / samples).sqrt())
    cache[key] = (mean.float(), std)
    return cache[key]


def _const_noise(G, device) -> List[torch.Tensor]:
    """The network's stored noise maps, [1, 1, r, r] each, in noise_shapes() order."""
    synthesis = G.synthesis
    if hasattr(synthesis, "noise_const_buffers"):
        buffers = list(synthesis.noise_const_buffers())
    else:
        buffers = [synthesis.get_submodule(name).noise_const for name, _ in synthesis.noise_shapes()]
    return [b.detach().to(device, torch.float32).reshape(1, 1, *b.shape[-2:]).clone() for b in buffers]


# --------------------------------------------------------------------------------------
# Precision and the fast schedule.

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _cpu_flags() -> Optional[set]:
    """The CPU feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") or line.startswith("Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_has_native_bf16() -> bool:
    """True when torch's CPU kernels run at AVX-512 level on a CPU with bf16 instructions.

    ``torch.backends.cpu.get_cpu_capability()`` says which vector ISA torch's
    kernels use ('AVX512' here, also on CPUs without bf16 arithmetic); the
    bf16 instructions themselves (``avx512_bf16`` / ``amx_bf16``) are read
    from the CPU flags. Without them bf16 is emulated and slower than fp32.
    """
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if not capability.startswith(("AVX512", "AMX")):
        return False
    flags = _cpu_flags()
    return bool(flags) and any(flag in flags for flag in _BF16_CPU_FLAGS)


def resolve_precision(precision: str, device, resolution: Optional[int] = None) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' on `device` -> the precision actually used ('fp32', 'bf16' or 'fp16').

    'auto' on a CPU is bf16 only for networks of at least ``BF16_FROM_RESOLUTION``
    px (``resolution``; None counts as large): below it bf16 bought 1.2x on a
    64 px network and cost fit precision (docs/projector.md), so fp32 runs.
    A request the device cannot honour falls back to 'fp32' with one warning
    per process and kind.
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


def _autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision ('fp16' uses the network's own fp16 blocks instead)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_compile(config: "ProjectionConfig", device, G) -> bool:
    """Whether the fast schedule's step (render + loss + backward) runs through ``torch.compile``.

    'off': never; 'on': always with the fast schedule; 'auto': on a CPU for
    networks of at least ``COMPILE_FROM_RESOLUTION`` px. The official schedule
    is never compiled (it is the exact reference). A failed compile falls back
    to the plain step with one warning (``stylegan_unmask.compiled``).
    """
    if config.schedule == "official" or config.compile == "off" or config.steps == 0:
        return False
    if config.compile == "on":
        return True
    return torch.device(device).type == "cpu" and G.img_resolution >= COMPILE_FROM_RESOLUTION


def compiled_render_options(device) -> dict:
    """Synthesis options of a compiled step: non-fused modulation written as plain ops, which the
    compiler fuses itself (the hand-fused ``lean`` tail is an opaque autograd node to it)."""
    return dict(fused_modconv=False)


def _render_and_loss(G, ws: torch.Tensor, noise, loss: "MaskedLoss", force_fp32: bool, resolution: Optional[int],
                     precision: str, options: Tuple[Tuple[str, object], ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """One step's forward pass: render (under the precision's autocast) and the masked loss terms."""
    with _autocast(precision, ws.device):
        images = _render(G, ws, noise, force_fp32, resolution, **dict(options))
        return _masked_loss_terms(images, loss)


def _supports_partial_render(G) -> bool:
    """Can synthesis stop at an intermediate block? Needs our blocks with the 'skip' architecture."""
    synthesis = G.synthesis
    if not (hasattr(synthesis, "blocks") and hasattr(synthesis, "_split_noise")):
        return False
    return all(getattr(block, "architecture", None) == "skip" for block in synthesis.blocks())


def fast_render_options(device) -> dict:
    """Synthesis options of the fast schedule on `device`: the same function as the official render.

    Non-fused modulation everywhere (its backward needs no per-sample kernel
    gradient). On a CPU also the layers' one-node tail (``lean``:
    demodulation, noise, bias, activation and clamp with one saved tensor, see
    ``torch_utils.ops.demod_bias_act``). Measured on one 1024 px step (2 CPU
    cores, fp32, huge pages on): official 9.5 s, non-fused 9.4 s, lean 6.6 s;
    channels-last activations from 256 px up (``channels_last_from``, kept as
    an option) made it slower (7.6 s) once huge pages removed the page faults
    it had been hiding (without them: 9.6 s lean, 9.3 s lean + channels-last).
    """
    if torch.device(device).type == "cpu":
        return dict(fused_modconv=False, lean=True)
    return dict(fused_modconv=False)


def _phase_plan(config: "ProjectionConfig", G) -> List[Tuple[int, int]]:
    """[(first step, render resolution)] of each phase; one full-resolution phase when not applicable."""
    R = G.img_resolution
    if config.schedule == "official" or config.steps == 0 or not _supports_partial_render(G):
        return [(0, R)]
    if config.phases is None:
        return [(0, R)]
    phases = config.phases
    plan: List[Tuple[int, int]] = []
    done = 0.0
    for fraction, res in phases:
        start = int(round(done * config.steps))
        done += fraction
        res = min(int(res), R)
        if start >= config.steps:
            break
        if plan and plan[-1][0] == start:          # an empty phase
            plan[-1] = (start, res)
        elif not plan or plan[-1][1] != res:
            plan.append((start, res))
    if plan[0][0] != 0:
        plan[0] = (0, plan[0][1])
    return plan


def _ws_used(G, resolution: int) -> int:
    """How many W+ rows a render that stops after block `resolution` reads."""
    used = 0
    for block in G.synthesis.blocks():
        if block.resolution == resolution:
            return used + block.num_conv + block.num_torgb
        used += block.num_conv
    raise ValueError(f"the network has no {resolution} px block")


def _render(G, ws: torch.Tensor, noise, force_fp32: bool, resolution: Optional[int] = None,
            **options) -> torch.Tensor:
    """Synthesis, stopped after the block at `resolution` (None or the network's: the full image).

    In the 'skip' architecture the image after block r is the running sum of
    the upsampled ToRGB outputs so far: the full image without the detail the
    higher blocks add. Only the first ``_ws_used(G, r)`` rows of ws are read.
    ``options``: synthesis options (``fast_render_options``); none = the official render.
    """
    synthesis = G.synthesis
    if resolution is None or resolution >= G.img_resolution:
        return synthesis(ws, noise_mode="const", force_fp32=force_fp32, noise=noise, **options)
    channels_last_from = options.pop("channels_last_from", None)
    block_noise = synthesis._split_noise(noise, ws.shape[0])
    ws = ws.to(torch.float32)
    w_idx = 0
    x = img = None
    for block in synthesis.blocks():
        block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
        w_idx += block.num_conv
        channels_last = None if channels_last_from is None else block.resolution >= channels_last_from
        x, img = block(x, img, block_ws, force_fp32=force_fp32, noise_mode="const", channels_last=channels_last,
                       noise=block_noise[block.resolution] if block_noise is not None else None, **options)
        if block.resolution == resolution:
            break
    return img


def _reduced_loss(loss: "MaskedLoss", target: torch.Tensor, hidden_mask: torch.Tensor, resolution: int,
                  features, config: "ProjectionConfig") -> "MaskedLoss":
    """The masked loss at a lower `resolution`.

    The visible target is area-averaged to the grid; a coarse pixel counts as
    visible only when every pixel under it is, so hidden target pixels still
    have no influence at all (they are set to 0 before the averaging).
    """
    if resolution >= target.shape[-1]:
        return loss
    visible = ~hidden_mask
    small_target = _area_resize(torch.where(visible, target, torch.zeros((), dtype=target.dtype,
                                                                         device=target.device)), resolution)
    small_hidden = _area_resize(visible.to(target.dtype), resolution) < 1 - 1e-6
    if bool(small_hidden.flatten(1).all(dim=1).any()):
        return None                                  # some image would have no visible coarse pixel
    return MaskedLoss(small_target, small_hidden, features=features, layers=config.perceptual_layers,
                      perceptual_resolution=config.perceptual_resolution)


# --------------------------------------------------------------------------------------
# Projection.


def _check_inputs(G, target: torch.Tensor, hidden_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor [N, 3, R, R] in [-1, 1], got {type(target).__name__}")
    if target.ndim == 3:
        target = target[None]
    R = G.img_resolution
    channels = getattr(G, "img_channels", 3)
    if target.ndim != 4 or target.shape[1] != channels or target.shape[2:] != (R, R) or target.shape[0] < 1:
        raise ValueError(f"target must be [N, {channels}, {R}, {R}] for this {R}x{R} network, got {list(target.shape)}")
    if not target.dtype.is_floating_point:
        raise ValueError(f"target must be a float tensor in [-1, 1], got {target.dtype}")
    N = target.shape[0]
    if hidden_mask is None:
        hidden_mask = torch.zeros([N, 1, R, R], dtype=torch.bool)
    if not isinstance(hidden_mask, torch.Tensor):
        raise TypeError(f"hidden_mask must be a bool torch.Tensor [N, 1, {R}, {R}], got {type(hidden_mask).__name__}")
    if hidden_mask.ndim == 2:
        hidden_mask = hidden_mask[None, None]
    elif hidden_mask.ndim == 3:
        hidden_mask = hidden_mask[:, None]
    if hidden_mask.ndim != 4 or hidden_mask.shape[1] != 1 or hidden_mask.shape[2:] != (R, R) \
            or hidden_mask.shape[0] not in (1, N):
        raise ValueError(f"hidden_mask must be [N, 1, {R}, {R}] (True = hidden), got {list(hidden_mask.shape)}")
    hidden_mask = hidden_mask.bool().expand(N, 1, R, R)
    fully_hidden = [i for i in range(N) if bool(hidden_mask[i].all())]
    if fully_hidden:
        raise ValueError(f"hidden_mask hides every pixel of image(s) {fully_hidden}: nothing visible to project")
    return target, hidden_mask


def _initial_noise(G, config: ProjectionConfig, gen: torch.Generator, device) -> Tuple[List[torch.Tensor], str]:
    shapes = [shape for _, shape in G.synthesis.noise_shapes()]
    if config.optimize_noise or config.noise_mode == "random":
        noise = [torch.randn(list(s), generator=gen).to(device) for s in shapes]
        return noise, ("optimized" if config.optimize_noise else "random")
    if config.noise_mode == "const":
        return _const_noise(G, device), "const"
    return [torch.zeros(list(s), device=device) for s in shapes], "none"


@torch.no_grad()
def _initial_latents(G, config: ProjectionConfig, loss: MaskedLoss, noise: List[torch.Tensor],
                     gen: torch.Generator, device, N: int, force_fp32: Optional[bool] = None,
                     resolution: Optional[int] = None, precision: str = "fp32") -> Tuple[torch.Tensor, List[str]]:
    """[N, num_ws, w_dim] starting latents and a description per image.

    best-of-N candidates are rendered at `resolution` (None: full) and scored with `loss`
    (the loss at that resolution) in `precision`.
    """
    force_fp32 = config.force_fp32 if force_fp32 is None else force_fp32
    w_avg = G.mapping.w_avg.detach().to(device, torch.float32)
    avg = w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    if config.init == "avg":
        return avg.repeat(N, 1, 1), ["avg"] * N
    if config.init == "random":
        z = torch.randn([1, G.z_dim], generator=gen).to(device)
        return _map(G, z).float().repeat(N, 1, 1), [f"random (seed {config.seed})"] * N

    # best-of-N: the average face plus N seeded random faces, each scored per target
    # with the same masked loss; the lowest loss wins.
    count = config.best_of
    z = torch.randn([count, G.z_dim], generator=gen).to(device)
    candidates = torch.cat([avg, _map(G, z).float()])
    scores = torch.empty([N, candidates.shape[0]], device=device)
    for start in range(0, candidates.shape[0], config.candidate_batch):
        ws = candidates[start:start + config.candidate_batch]
        with _autocast(precision, torch.device(device)):
            images = _render(G, ws, noise, force_fp32, resolution)
            for i in range(N):
                mse, perceptual = loss.select(i)(images)
                scores[i, start:start + ws.shape[0]] = config.mse_weight * mse + config.lambda_perceptual * perceptual
    best = scores.argmin(dim=1)
    names = ["average face" if int(k) == 0 else f"candidate {int(k) - 1}" for k in best]
    return candidates[best].clone(), [f"{config.init}: {name} (seed {config.seed})" for name in names]


def _tie_unused_rows(w_opt: torch.Tensor, rows: int) -> None:
    """W+ rows a coarse render does not read follow the last row it reads (they start from it when used)."""
    if rows < w_opt.shape[1]:
        with torch.no_grad():
            w_opt[:, rows:] = w_opt[:, rows - 1:rows]


def project(G, target: torch.Tensor, hidden_mask: Optional[torch.Tensor], config: Optional[ProjectionConfig] = None,
            device=None, callback: Optional[Callable[[int, ProjectionStep], Optional[bool]]] = None,
            progress: bool = True, features=None) -> List[ProjectionResult]:
    """Project a batch of targets into W+, matching only their visible pixels.

    target: [N, 3, R, R] float in [-1, 1]; hidden_mask: [N, 1, R, R] bool,
    True = hidden by the face mask (None: nothing hidden). Returns one
    :class:`ProjectionResult` per target.

    callback(step, info: ProjectionStep) is called after step 0, every
    ``config.preview_every`` steps and after the last step (only after the
    last when preview_every <= 0); returning True stops the run early (the
    results then hold the latents reached so far and ``stopped_early=True``).
    ``features``: a prebuilt :class:`~stylegan_unmask.perceptual.VGG16Features`
    with the configured layers, to reuse across calls.
    """
    config = config if config is not None else ProjectionConfig()
    network_device = _module_device(G)
    device = torch.device(device) if device is not None else network_device
    if network_device.type != device.type or (device.index is not None and network_device.index != device.index):
        raise ValueError(f"the network is on {_module_device(G)} but device={device}: "
                         f"load it with load_generator(..., device={str(device)!r})")
    if getattr(G, "c_dim", 0):
        raise ValueError("conditional networks (c_dim > 0) are not supported by the projector")
    target, hidden_mask = _check_inputs(G, target, hidden_mask)
    target = target.detach().to(device, torch.float32)
    hidden_mask = hidden_mask.to(device)
    N = target.shape[0]

    if config.lambda_perceptual > 0:
        if features is None:
            from .perceptual import VGG16Features
            features = VGG16Features(config.perceptual_layers)
        missing = set(config.perceptual_layers) - set(features.layers)
        if missing:
            raise ValueError(f"the features module lacks layer(s) {sorted(missing)} required by the config")
        features = features.to(device)
    else:
        features = None
    with torch.no_grad():
        loss_fn = MaskedLoss(target, hidden_mask, features=features, layers=config.perceptual_layers,
                             perceptual_resolution=config.perceptual_resolution)

    precision = resolve_precision(config.precision, device, G.img_resolution)
    if device.type == "cpu":
        huge_pages.warn_if_unused()
    # On a CPU the network's fp16 blocks never run (force_fp32 changes nothing there); on CUDA only 'fp16' uses them.
    force_fp32 = config.force_fp32 if (precision == "fp16" or device.type != "cuda") else True
    autocast = _autocast(precision, device)
    # The plain step's synthesis options; a compiled step uses its own (same function) unless it fell back.
    plain_options = tuple(sorted(({} if config.schedule == "official" else fast_render_options(device)).items()))
    compiled_options = tuple(sorted(compiled_render_options(device).items()))
    step_function = MaybeCompiled(_render_and_loss, "the projection step",
                                  enabled=resolve_compile(config, device, G))
    R = G.img_resolution
    # Phases [(first step, render resolution, loss, W+ rows read)]; the official schedule has one, at R.
    phases = []
    with torch.no_grad():
        for start, res in _phase_plan(config, G):
            phase_loss = loss_fn if res >= R else _reduced_loss(loss_fn, target, hidden_mask, res, features, config)
            if phase_loss is None:
                res, phase_loss = R, loss_fn
            rows = G.num_ws if res >= R else _ws_used(G, res)
            if phases and phases[-1][1] == res:
                continue
            phases.append((start, res, phase_loss, rows))

    gen = torch.Generator().manual_seed(int(config.seed))
    _, w_std = w_statistics(G, config.w_avg_samples, device)
    noise, noise_source = _initial_noise(G, config, gen, device)      # [1, 1, r, r] each
    w_init, init_names = _initial_latents(G, config, phases[0][2], noise, gen, device, N, force_fp32=force_fp32,
                                          resolution=phases[0][1], precision=precision)

    w_opt = w_init.clone().requires_grad_(True)
    params = [w_opt]
    if config.optimize_noise:
        noise = [n.repeat(N, 1, 1, 1).requires_grad_(True) for n in noise]
        params += noise
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.adam_betas)

    steps = config.steps
    history = torch.zeros([steps, len(LOSS_KEYS), N], dtype=torch.float32, device=device)
    lrs, jitters = np.zeros(steps, np.float64), np.zeros(steps, np.float64)
    steps_run, stopped = 0, False
    # The first compiled step compiles (up to a minute or two on a CPU): say so instead of looking stuck.
    bar = tqdm(range(steps), desc="projecting (compiling the step first)" if step_function.compiled else "projecting",
               unit="step", disable=not progress, leave=False)
    phase_index = -1
    for step in bar:
        if phase_index + 1 < len(phases) and step >= phases[phase_index + 1][0]:
            phase_index += 1
            _, render_res, step_loss, rows = phases[phase_index]
            _tie_unused_rows(w_opt, rows)
        t = step / steps
        lr = config.learning_rate(step)
        jitter_scale = latent_noise_scale(t, w_std, config.initial_noise_factor, config.noise_ramp_length)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ws = w_opt
        if jitter_scale > 0:
            ws = w_opt + torch.randn([1, *w_opt.shape[1:]], generator=gen).to(device) * jitter_scale

        def evaluate(render_and_loss):
            options = plain_options if render_and_loss is _render_and_loss else compiled_options
            mse, perceptual = render_and_loss(G, ws, noise, step_loss, force_fp32, render_res, precision, options)
            total = config.mse_weight * mse + config.lambda_perceptual * perceptual
            if config.optimize_noise:
                reg = noise_regularization(noise)
                total = total + config.noise_regularize * reg
            else:
                reg = torch.zeros_like(total)
            return mse, perceptual, total, reg, torch.autograd.grad(total.sum(), params)

        mse, perceptual, total, reg, grads = step_function.run_checked(evaluate)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        _tie_unused_rows(w_opt, rows)
        if config.optimize_noise:
            with torch.no_grad():
                for n in noise:
                    n -= n.mean(dim=(1, 2, 3), keepdim=True)
                    n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()

        history[step] = torch.stack([total, mse, perceptual, reg]).detach()
        lrs[step], jitters[step] = lr, jitter_scale
        steps_run = step + 1
        if step == 0 and progress and step_function.compiled:
            bar.set_description("projecting")
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}")
        if callback is not None and (step == steps - 1 or (config.preview_every > 0 and step % config.preview_every == 0)):
            with torch.no_grad(), autocast:
                preview = G.synthesis(w_opt.detach(), noise_mode="const", force_fp32=force_fp32,
                                      noise=[n.detach() for n in noise])
            values = history[step].cpu().numpy()
            info = ProjectionStep(step=step, steps=steps, lr=lr, w_noise_scale=jitter_scale,
                                  losses={k: values[j] for j, k in enumerate(LOSS_KEYS)},
                                  images=preview, w_plus=w_opt.detach().clone())
            if callback(step, info) is True:
                stopped = step < steps - 1
                break
    bar.close()

    # Final evaluation without jitter: the image the result describes.
    with torch.no_grad():
        final_noise = [n.detach() for n in noise]
        images = G.synthesis(w_opt.detach(), noise_mode="const", force_fp32=force_fp32, noise=final_noise)
        mse, perceptual = loss_fn(images)
        total = config.mse_weight * mse + config.lambda_perceptual * perceptual
        if config.optimize_noise:
            total = total + config.noise_regularize * noise_regularization(final_noise)
        psnr = psnr_visible(images, target, hidden_mask)

    history = history[:steps_run].cpu().numpy()
    results = []
    for i in range(N):
        image_noise = [(n[i:i + 1] if n.shape[0] > 1 else n).detach().float().cpu().clone() for n in final_noise]
        results.append(ProjectionResult(
            w_plus=w_opt[i].detach().float().cpu().clone(),
            noise=image_noise,
            noise_source=noise_source,
            image=images[i].detach().clamp(-1, 1).float().cpu(),
            losses={k: history[:, j, i].copy() for j, k in enumerate(LOSS_KEYS)},
            schedule={"lr": lrs[:steps_run].copy(), "w_noise_scale": jitters[:steps_run].copy()},
            final_loss=float(total[i]),
            final_mse=float(mse[i]),
            final_perceptual=float(perceptual[i]),
            psnr=float(psnr[i]),
            seed=int(config.seed),
            config=config,
            init=init_names[i],
            steps_run=steps_run,
            stopped_early=stopped,
            precision=precision,
            compiled=step_function.compiled,
        ))
    return results
