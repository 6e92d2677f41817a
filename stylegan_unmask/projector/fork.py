"""Several samples per target: project once, then fork into K latents that part under the mask.

The visible half of a masked face is fitted the same way by every sample, so
that part of the work is done once: for the first ``config.sample_fork`` share
of the steps the batch holds one latent per target; at the fork each latent is
repeated K times, samples 1..K-1 are moved by a random face's offset
(``start.sample_offsets``) and the latent prior is re-centred on the moved
start, so each sample is held near a different face while the visible loss
pulls it back onto the photo. Adam's moments carry over, so sample 0 simply
continues the single projection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from .config import ProjectionConfig
from .start import sample_offsets

__all__ = ["Variables", "SampleFork", "plan_fork"]


@dataclass
class Variables:
    """What Adam optimises: W+ ``[N, num_ws, w_dim]`` and, when asked for, the noise maps ``[N, 1, r, r]``."""

    w: torch.Tensor
    noise: List[torch.Tensor]          # the maps rendered with; shared [1, 1, r, r] unless optimised
    optimize_noise: bool
    optimizer: Optional[torch.optim.Adam] = None

    @classmethod
    def create(cls, w_init: torch.Tensor, noise: List[torch.Tensor], config: ProjectionConfig) -> "Variables":
        if config.optimize_noise:
            noise = [n.repeat(w_init.shape[0], 1, 1, 1).requires_grad_(True) for n in noise]
        made = cls(w_init.clone().requires_grad_(True), noise, config.optimize_noise)
        made.optimizer = torch.optim.Adam(made.params, lr=config.lr, betas=config.adam_betas)
        return made

    @property
    def params(self) -> List[torch.Tensor]:
        return [self.w] + (self.noise if self.optimize_noise else [])

    def fork(self, samples: int, offsets: torch.Tensor) -> "Variables":
        """Each target's variables repeated ``samples`` times (target-major), W+ moved by ``offsets``,
        with Adam's moments and step count carried over."""
        def repeat(t: torch.Tensor) -> torch.Tensor:
            return t.detach().repeat_interleave(samples, 0)

        noise = [repeat(n).requires_grad_(True) for n in self.noise] if self.optimize_noise else self.noise
        forked = Variables((repeat(self.w) + offsets).requires_grad_(True), noise, self.optimize_noise)
        forked.optimizer = torch.optim.Adam(forked.params, **self.optimizer.defaults)
        for old, new in zip(self.params, forked.params):
            state = self.optimizer.state.get(old, {})
            forked.optimizer.state[new] = {key: repeat(value) if value.shape == old.shape else value.clone()
                                           for key, value in state.items()}
        return forked


@dataclass
class SampleFork:
    """When (``step``) and where (``offsets``, [N * K, num_ws, w_dim]) one latent per target becomes K."""

    step: int
    samples: int
    offsets: torch.Tensor
    labels: List[str]

    def split(self, variables: Variables, w_init: torch.Tensor, step_fn, w_std: float) -> Variables:
        """Fork the variables and re-centre the latent prior on each sample's own start."""
        step_fn.hold_near(w_init.repeat_interleave(self.samples, 0) + self.offsets, w_std)
        return variables.fork(self.samples, self.offsets)


def plan_fork(G, config: ProjectionConfig, names: List[str], samples: int, device) -> Optional[SampleFork]:
    """The fork of a ``samples``-sample projection (None for one sample)."""
    if samples <= 1:
        return None
    step = config.fork_step
    labels = []
    for name in names:
        labels.append(name)
        labels += [f"{name}, forked at step {step} toward random face {k} (seed {config.seed})"
                   for k in range(1, samples)]
    return SampleFork(step, samples, sample_offsets(G, config, len(names), samples, device), labels)
