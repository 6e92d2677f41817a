"""Masked W+ projection: find the StyleGAN2 latent whose image matches a face outside its mask.

The optimisation follows the schedule of NVIDIA's official StyleGAN2 projector
(Adam, learning-rate ramp up/down, decaying latent jitter, optional noise-map
optimisation with the multi-scale autocorrelation regulariser), with two
differences that the unmasking task needs:

* the variable is a W+ latent ``[N, num_ws, w_dim]`` (one w per synthesis
  layer) instead of a single w, so the face can be matched more closely;
* the loss sees only the *visible* pixels (outside the face mask; ``loss.py``).

Images in a batch are optimised together but independently: the batch loss is
the sum of the per-image losses and Adam's per-element statistics keep the
optimisations separate. The hidden part of the generated image receives no
gradient from the loss: it is filled in by the generator's prior through the
latent alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..perceptual import VGG16Features
from ..runtime.device import module_device
from .config import ProjectionConfig, latent_noise_scale
from .loss import MaskedLoss, noise_regularization, psnr_visible
from .speed import StepFunction, render
from .fork import Variables, plan_fork
from .start import initial_latents, initial_noise, w_statistics

__all__ = ["ProjectionResult", "ProjectionStep", "project", "LOSS_KEYS"]

LOSS_KEYS = ("total", "mse", "perceptual", "noise_reg")


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
    compiled: bool = False                    # the steps ran through torch.compile (see speed.resolve_compile)
    sample: int = 0                           # which of the target's starts (0: the usual one; see project)

    def render(self, G, device=None, force_fp32: Optional[bool] = None) -> torch.Tensor:
        """Re-render [1, 3, R, R] (unclamped) from ``w_plus`` and the saved noise."""
        device = torch.device(device) if device is not None else module_device(G)
        ws = self.w_plus.to(device)[None]
        noise = [n.to(device) for n in self.noise]
        if force_fp32 is None:
            # The final image is rendered without autocast; fp16 blocks only ran with precision 'fp16'.
            force_fp32 = self.config.force_fp32 if self.precision == "fp16" or device.type != "cuda" else True
        with torch.no_grad():
            return render(G, ws, noise, force_fp32)


@dataclass
class ProjectionStep:
    """What ``callback(step, info)`` receives. Return True from the callback to stop early.

    With ``samples`` K > 1, ``losses`` has a value per result (N * K) throughout, while ``images``
    and ``w_plus`` hold the latents optimised at that step: N before the fork, N * K after it.
    """

    step: int                                 # 0-based index of the step just taken
    steps: int
    lr: float
    w_noise_scale: float
    losses: Dict[str, np.ndarray]             # this step's per-result values, [N] (or [N * K]) each
    images: torch.Tensor                      # [n, 3, R, R] current latents, no jitter, unclamped, detached
    w_plus: torch.Tensor                      # [n, num_ws, w_dim] detached


def project(G, target: torch.Tensor, hidden_mask: Optional[torch.Tensor], config: Optional[ProjectionConfig] = None,
            device=None, callback: Optional[Callable[[int, ProjectionStep], Optional[bool]]] = None,
            progress: bool = True, features=None, samples: int = 1) -> List[ProjectionResult]:
    """Project a batch of targets into W+, matching only their visible pixels.

    target: [N, 3, R, R] float in [-1, 1]; hidden_mask: [N, 1, R, R] bool,
    True = hidden by the face mask (None: nothing hidden). Returns one
    :class:`ProjectionResult` per target, or with ``samples`` K > 1, K per
    target (target-major, ``result.sample`` = 0..K-1): one projection per target
    until ``config.fork_step``, then K forks optimised as one batch, sample 0
    continuing it and the others moved toward seeded random faces (``fork.py``),
    so they fill the hidden region differently.

    callback(step, info: ProjectionStep) is called after step 0, every
    ``config.preview_every`` steps and after the last step (only after the
    last when preview_every <= 0); returning True stops the run early (the
    results then hold the latents reached so far and ``stopped_early=True``).
    ``features``: a prebuilt :class:`~stylegan_unmask.perceptual.VGG16Features`
    with the configured layers, to reuse across calls.
    """
    # 1. The settings, the device and the inputs.
    config = (config if config is not None else ProjectionConfig()).for_network(G)
    device = _check_network(G, device)
    target, hidden_mask = _check_inputs(G, target, hidden_mask, samples)
    target, hidden_mask = target.detach().to(device, torch.float32), hidden_mask.to(device)
    N, steps = target.shape[0], config.steps

    # 2. The masked loss (the targets' features are computed once) and how each step runs.
    loss_fn = _masked_loss(target, hidden_mask, config, features, device)
    step_fn = StepFunction(G, config, device)

    # 3. The start, from one seeded random stream: jitter scale, noise maps, starting latents; the samples' fork.
    gen = torch.Generator().manual_seed(int(config.seed))
    _, w_std = w_statistics(G, config.w_avg_samples, device)
    noise, noise_source = initial_noise(G, config, gen, device)      # [1, 1, r, r] each
    w_init, init_names = initial_latents(G, config, loss_fn, noise, gen, device, N, force_fp32=step_fn.force_fp32,
                                         precision=step_fn.precision)
    fork = plan_fork(G, config, init_names, samples, device)
    if fork is not None:  # after the fork each target is repeated K times
        target, hidden_mask = target.repeat_interleave(samples, 0), hidden_mask.repeat_interleave(samples, 0)
        fork_loss = _masked_loss(target, hidden_mask, config, features, device,
                                 samples if config.sample_spread > 0 else 1)

    # 4. What is optimised: W+ (held near its start by the latent prior), and the noise maps when asked for.
    step_fn.hold_near(w_init, w_std)
    variables = Variables.create(w_init, noise, config)

    # 5. The steps: the fork, schedule, jittered latent, loss and gradient, Adam, the noise maps renormalised.
    history = torch.zeros([steps, len(LOSS_KEYS), N * samples], dtype=torch.float32, device=device)
    lrs, jitters = np.zeros(steps, np.float64), np.zeros(steps, np.float64)
    steps_run, stopped = 0, False
    # The first compiled step compiles (a while on a CPU): say so instead of looking stuck.
    bar = tqdm(range(steps), desc="projecting (compiling the step first)" if step_fn.compiled else "projecting",
               unit="step", disable=not progress, leave=False)
    for step in bar:
        if fork is not None and step == fork.step:
            variables, loss_fn = fork.split(variables, w_init, step_fn, w_std), fork_loss
        lr = config.learning_rate(step)
        jitter_scale = latent_noise_scale(step / steps, w_std, config.initial_noise_factor, config.noise_ramp_length)
        variables.optimizer.param_groups[0]["lr"] = lr  # one group: W+ and the noise maps together
        ws = variables.w
        if jitter_scale > 0:
            ws = ws + torch.randn([1, *ws.shape[1:]], generator=gen).to(device) * jitter_scale
        mse, perceptual, total, reg, grads = step_fn(ws, variables.noise, loss_fn, variables.params)
        for p, g in zip(variables.params, grads):
            p.grad = g
        variables.optimizer.step()
        if config.optimize_noise:
            _renormalise(variables.noise)
        history[step] = _per_result(torch.stack([total, mse, perceptual, reg]).detach(), history.shape[-1])
        lrs[step], jitters[step] = lr, jitter_scale
        steps_run = step + 1

        # 6. Progress, and the caller's preview (which may stop the run).
        _show_progress(bar, step, steps, total, progress, step_fn.compiled)
        if callback is not None and (step == steps - 1 or (config.preview_every > 0 and step % config.preview_every == 0)):
            info = ProjectionStep(step=step, steps=steps, lr=lr, w_noise_scale=jitter_scale,
                                  losses=dict(zip(LOSS_KEYS, history[step].cpu().numpy())),
                                  images=_preview(G, step_fn, variables), w_plus=variables.w.detach().clone())
            if callback(step, info) is True:
                stopped = step < steps - 1
                break
    bar.close()

    # 7. The final image of each latent, without jitter, and its loss (a run stopped before the fork forks now).
    if fork is not None and steps_run <= fork.step:
        variables, loss_fn = fork.split(variables, w_init, step_fn, w_std), fork_loss
    w_opt, final_noise = variables.w, [n.detach() for n in variables.noise]
    images, mse, perceptual, total, psnr = _final_images(G, w_opt, final_noise, step_fn, loss_fn, config, target,
                                                         hidden_mask)

    # 8. One result per target.
    history = history[:steps_run].cpu().numpy()
    schedule = {"lr": lrs[:steps_run], "w_noise_scale": jitters[:steps_run]}
    common = dict(noise_source=noise_source, seed=int(config.seed), config=config, steps_run=steps_run,
                  stopped_early=stopped, precision=step_fn.precision, compiled=step_fn.compiled)
    return [ProjectionResult(**_image_share(i, w_opt, final_noise, images, history, total, mse, perceptual, psnr),
                             schedule={k: v.copy() for k, v in schedule.items()},
                             init=(fork.labels if fork is not None else init_names)[i], sample=i % samples, **common)
            for i in range(N * samples)]


@torch.no_grad()
def _final_images(G, w_opt, noise, step_fn, loss_fn, config: ProjectionConfig, target, hidden_mask):
    """The latents' images without jitter, and their loss terms and visible-region PSNR."""
    images = render(G, w_opt.detach(), noise, step_fn.force_fp32)
    mse, perceptual = loss_fn(images)
    total = config.weighted(mse, perceptual)
    if config.optimize_noise:
        total = total + config.noise_regularize * noise_regularization(noise)
    return images, mse, perceptual, total, psnr_visible(images, target, hidden_mask)


def _image_share(i: int, w_opt, noise, images, history, total, mse, perceptual, psnr) -> dict:
    """Image ``i``'s share of the batch: its latent, noise maps, image, loss history and final figures."""
    return dict(w_plus=w_opt[i].detach().float().cpu().clone(),
                noise=[(n[i:i + 1] if n.shape[0] > 1 else n).detach().float().cpu().clone() for n in noise],
                image=images[i].detach().clamp(-1, 1).float().cpu(),
                losses={k: history[:, j, i].copy() for j, k in enumerate(LOSS_KEYS)},
                final_loss=float(total[i]), final_mse=float(mse[i]), final_perceptual=float(perceptual[i]),
                psnr=float(psnr[i]))


def _check_network(G, device) -> torch.device:
    """The device to project on: the network's, or ``device`` when it names the same one."""
    network_device = module_device(G)
    device = torch.device(device) if device is not None else network_device
    if network_device.type != device.type or (device.index is not None and network_device.index != device.index):
        raise ValueError(f"the network is on {network_device} but device={device}: "
                         f"load it with load_generator(..., device={str(device)!r})")
    if getattr(G, "c_dim", 0):
        raise ValueError("conditional networks (c_dim > 0) are not supported by the projector")
    return device


def _check_inputs(G, target: torch.Tensor, hidden_mask: Optional[torch.Tensor],
                  samples: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a whole number >= 1, got {samples}")
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


def _masked_loss(target, hidden_mask, config: ProjectionConfig, features, device, samples: int = 1) -> MaskedLoss:
    """The loss against the targets, with the perceptual features when the config weighs them."""
    if config.lambda_perceptual > 0:
        features = features if features is not None else VGG16Features(config.perceptual_layers)
        missing = set(config.perceptual_layers) - set(features.layers)
        if missing:
            raise ValueError(f"the features module lacks layer(s) {sorted(missing)} required by the config")
        features = features.to(device)
    else:
        features = None
    with torch.no_grad():
        return MaskedLoss(target, hidden_mask, features=features, layers=config.perceptual_layers,
                          perceptual_resolution=config.perceptual_resolution, samples=samples)


def _renormalise(noise: List[torch.Tensor]) -> None:
    """Optimised noise maps back to zero mean and unit variance after each step, as the official projector."""
    with torch.no_grad():
        for n in noise:
            n -= n.mean(dim=(1, 2, 3), keepdim=True)
            n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def _preview(G, step_fn: StepFunction, variables: Variables) -> torch.Tensor:
    """The current latents' images, without jitter, for the callback."""
    with torch.no_grad(), step_fn.autocast:
        return render(G, variables.w.detach(), [n.detach() for n in variables.noise], step_fn.force_fp32)


def _per_result(values: torch.Tensor, results: int) -> torch.Tensor:
    """One step's [terms, n] values spread over the ``results`` columns (before the fork each latent
    stands for all its target's samples)."""
    return values.repeat_interleave(results // values.shape[-1], dim=-1)


def _show_progress(bar, step: int, steps: int, total: torch.Tensor, progress: bool, compiled: bool) -> None:
    if step == 0 and progress and compiled:
        bar.set_description("projecting")
    if progress and (step % 10 == 0 or step == steps - 1):
        bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}")
