"""Where a projection starts: the latent jitter's scale, the noise maps and the starting latents.

All randomness comes from the ``torch.Generator`` the caller seeds with
``config.seed`` (drawn on the CPU, then moved), never from the global RNG, so
the same seed on the same device gives the same start; every image in a batch
sees the same random stream it would see if it were projected alone. The w
statistics use a fixed seed of their own, as the official projector does, so
they are a property of the network and not of ``config.seed``.
"""
from __future__ import annotations

import weakref
from typing import List, Optional, Tuple

import torch

from ..runtime.device import module_device
from .config import ProjectionConfig
from .loss import MaskedLoss
from .speed import autocast, render

__all__ = ["w_statistics", "initial_noise", "initial_latents", "sample_offsets", "W_STATS_SEED", "SAMPLE_PSI"]

W_STATS_SEED = 123

_w_stats_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def map_z(G, z: torch.Tensor) -> torch.Tensor:
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
    device = torch.device(device) if device is not None else module_device(G)
    key = (int(samples), str(device))
    cache = _w_stats_cache.setdefault(G, {})
    if key in cache:
        return cache[key]
    gen = torch.Generator().manual_seed(W_STATS_SEED)
    z = torch.randn([samples, G.z_dim], generator=gen)
    ws = torch.cat([map_z(G, chunk.to(device))[:, 0].double() for chunk in z.split(2048)])
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


def initial_noise(G, config: ProjectionConfig, gen: torch.Generator, device) -> Tuple[List[torch.Tensor], str]:
    """The noise maps ([1, 1, r, r] each) the projection renders with, and where they come from."""
    shapes = [shape for _, shape in G.synthesis.noise_shapes()]
    if config.optimize_noise or config.noise_mode == "random":
        noise = [torch.randn(list(s), generator=gen).to(device) for s in shapes]
        return noise, ("optimized" if config.optimize_noise else "random")
    if config.noise_mode == "const":
        return _const_noise(G, device), "const"
    return [torch.zeros(list(s), device=device) for s in shapes], "none"


@torch.no_grad()
def initial_latents(G, config: ProjectionConfig, loss: MaskedLoss, noise: List[torch.Tensor],
                    gen: torch.Generator, device, N: int, force_fp32: Optional[bool] = None,
                    precision: str = "fp32") -> Tuple[torch.Tensor, List[str]]:
    """[N, num_ws, w_dim] starting latents and a description per image.

    best-of-N: the average face plus N seeded random faces, each rendered (in
    ``precision``) and scored per target with the same masked ``loss``; the
    lowest loss wins.
    """
    force_fp32 = config.force_fp32 if force_fp32 is None else force_fp32
    w_avg = G.mapping.w_avg.detach().to(device, torch.float32)
    avg = w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    if config.init == "avg":
        return avg.repeat(N, 1, 1), ["avg"] * N
    if config.init == "random":
        z = torch.randn([1, G.z_dim], generator=gen).to(device)
        return map_z(G, z).float().repeat(N, 1, 1), [f"random (seed {config.seed})"] * N

    count = config.best_of
    z = torch.randn([count, G.z_dim], generator=gen).to(device)
    candidates = torch.cat([avg, map_z(G, z).float()])
    scores = torch.empty([N, candidates.shape[0]], device=device)
    for start in range(0, candidates.shape[0], config.candidate_batch):
        ws = candidates[start:start + config.candidate_batch]
        with autocast(precision, torch.device(device)):
            images = render(G, ws, noise, force_fp32)
            for i in range(N):
                mse, perceptual = loss.select(i)(images)
                scores[i, start:start + ws.shape[0]] = config.weighted(mse, perceptual)
    best = scores.argmin(dim=1)
    names = ["average face" if int(k) == 0 else f"candidate {int(k) - 1}" for k in best]
    return candidates[best].clone(), [f"{config.init}: {name} (seed {config.seed})" for name in names]


#: The other samples' offsets are random faces' offsets from the average face at this truncation
#: (1: untruncated): what the fork adds to the projection, and the face each sample is held near.
SAMPLE_PSI = 1.0
#: Their z come from a stream of their own, so the first sample keeps the single projection's stream.
SAMPLE_SEED_OFFSET = 7919


@torch.no_grad()
def sample_offsets(G, config: ProjectionConfig, targets: int, samples: int, device) -> torch.Tensor:
    """Where each of ``samples`` forks per target goes in W+, target-major: [N * K, num_ws, w_dim].

    Sample 0 stays where it is (offset 0); sample k moves by a seeded random
    face's offset from the average face. Under the mask the photo does not
    decide the face: latents moved apart, and held apart by the latent prior,
    fill it differently while the visible loss pulls them all back onto the photo.
    """
    gen = torch.Generator().manual_seed(int(config.seed) + SAMPLE_SEED_OFFSET)
    z = torch.randn([targets * (samples - 1), G.z_dim], generator=gen).to(device)
    w_avg = G.mapping.w_avg.detach().to(device, torch.float32).reshape(1, 1, -1)
    others = (SAMPLE_PSI * (map_z(G, z).float() - w_avg)).reshape(targets, samples - 1, G.num_ws, -1)
    return torch.cat([torch.zeros_like(others[:, :1]), others], dim=1).reshape(targets * samples, G.num_ws, -1)
