"""Every setting of a projection, checked when it is made, and the official schedule's formulas."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ..errors import UnmaskError

__all__ = ["ProjectionConfig", "projection_config", "learning_rate_ramp", "latent_noise_scale",
           "INIT_MODES", "NOISE_MODES", "PRECISIONS", "SCHEDULES", "COMPILE_MODES"]

INIT_MODES = ("avg", "random", "best-of-N")
NOISE_MODES = ("const", "random", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("fast", "official")
COMPILE_MODES = ("auto", "on", "off")


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
    faster (see :func:`~stylegan_unmask.projector.speed.fast_render_options`).
    ``precision``: 'fp32'; 'bf16' (autocast; on a CPU only with native bf16,
    else fp32 and one warning); 'fp16' (CUDA: the network's ``num_fp16_res``
    float16 blocks, as NVIDIA's projector; fp32 elsewhere); 'auto' = fp16 on
    CUDA, bf16 on CPUs with native bf16 (networks of 256 px and more), else fp32.
    ``compile``: run the fast schedule's step (render + loss + backward)
    through ``torch.compile`` - 'auto' (on a CPU for networks of 256 px and
    more), 'on' or 'off'; see :func:`~stylegan_unmask.projector.speed.resolve_compile`.
    ``w_prior``: weight of :func:`~stylegan_unmask.projector.loss.latent_prior`, which keeps every
    layer's w near its start (the average face, or a sample's own face). 0 is the plain W+
    projection; a weak generator needs it, or W+ leaves the face manifold where no pixel is seen
    and paints colour blobs under the mask. None
    (the default): what the network file recommends (``G.projection_defaults``), else 0.
    ``sample_fork``: with several samples per target, the share of the steps run as one
    projection before it forks into them (``fork.py``); 0 gives K independent starts.
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
    sample_spread: float = 0.0
    sample_fork: float = 0.5
    w_prior: Optional[float] = None

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
        for name in ("initial_noise_factor", "mse_weight", "lambda_perceptual", "noise_regularize", "sample_spread"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.sample_fork < 1:
            raise ValueError(f"sample_fork must be in [0, 1) (the share of the steps before the samples part), "
                             f"got {self.sample_fork}")
        if self.w_prior is not None and not float(self.w_prior) >= 0:
            raise ValueError(f"w_prior must be >= 0 (or None: the network's recommendation), got {self.w_prior}")
        if self.mse_weight == 0 and self.lambda_perceptual == 0:
            raise ValueError("mse_weight and lambda_perceptual are both 0: nothing to optimise")
        if self.lambda_perceptual > 0 and not self.perceptual_layers:
            raise ValueError("lambda_perceptual > 0 needs at least one perceptual layer")
        self._check_choice("noise_mode", NOISE_MODES)
        if self.perceptual_resolution < 16:
            raise ValueError(f"perceptual_resolution must be >= 16, got {self.perceptual_resolution}")
        if self.candidate_batch < 1:
            raise ValueError(f"candidate_batch must be >= 1, got {self.candidate_batch}")
        for name, allowed in (("schedule", SCHEDULES), ("precision", PRECISIONS), ("compile", COMPILE_MODES)):
            self._check_choice(name, allowed)
        self.best_of  # validates `init`

    def _check_choice(self, name: str, allowed: Tuple[str, ...]) -> None:
        if getattr(self, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def best_of(self) -> Optional[int]:
        """N of a 'best-of-N' init, else None."""
        if self.init in ("avg", "random"):
            return None
        match = re.fullmatch(r"best-of-(\d+)", str(self.init))
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"init must be 'avg', 'random' or 'best-of-N' (e.g. 'best-of-16'), got {self.init!r}")
        return int(match.group(1))

    @property
    def fork_step(self) -> int:
        """The step at which a projection with several samples forks into them (see ``fork.py``)."""
        return int(round(self.sample_fork * self.steps))

    def learning_rate(self, step: int) -> float:
        return self.lr * learning_rate_ramp(step / max(self.steps, 1), self.lr_rampdown_length, self.lr_rampup_length)

    def weighted(self, mse: torch.Tensor, perceptual: torch.Tensor) -> torch.Tensor:
        """The loss the optimisation minimises, before any noise regulariser."""
        return self.mse_weight * mse + self.lambda_perceptual * perceptual

    @property
    def prior_weight(self) -> float:
        """``w_prior`` as a number (None, not yet resolved for a network, counts as 0)."""
        return float(self.w_prior or 0.0)

    def for_network(self, G) -> "ProjectionConfig":
        """This config with ``w_prior`` = None replaced by the network's recommendation (else 0)."""
        if self.w_prior is not None:
            return self
        recommended = (getattr(G, "projection_defaults", None) or {}).get("w_prior", 0.0)
        return dataclasses.replace(self, w_prior=float(recommended))

    def for_device(self, device) -> "ProjectionConfig":
        """This config as run on ``device``: off CUDA the generator runs in float32 (``force_fp32``,
        recorded in ``projected_w.npz``), as CPUs have no fast float16 convolutions; on CUDA the
        checkpoint's mixed precision is kept, as in NVIDIA's projector."""
        if self.force_fp32 or torch.device(device).type == "cuda":
            return self
        return dataclasses.replace(self, force_fp32=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def projection_config(**options) -> ProjectionConfig:
    """A :class:`ProjectionConfig` from user-facing options; an invalid value is an :class:`UnmaskError`."""
    try:
        return ProjectionConfig(**options)
    except ValueError as exc:
        raise UnmaskError(f"invalid projection settings: {exc}") from None


def learning_rate_ramp(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official projector's lr multiplier at progress t in [0, 1): cosine ramp-down, linear ramp-up."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


def latent_noise_scale(t: float, w_std: float, initial_noise_factor: float = 0.05,
                       noise_ramp_length: float = 0.75) -> float:
    """Std of the jitter added to the latent at progress t (decays quadratically to 0 at noise_ramp_length)."""
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
