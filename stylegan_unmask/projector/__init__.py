"""Masked W+ projection: the latent whose image matches a face outside its mask.

=================  ============================================================
``config``         :class:`ProjectionConfig`, every setting, checked; the
                   official schedule's formulas
``loss``           the masked loss (visible pixels only), PSNR, the noise
                   regulariser
``speed``          precision, synthesis options and ``torch.compile`` of a step:
                   how fast it runs, never what it computes
``start``          w statistics, noise maps, starting latents (seeded)
``projection``     :func:`project`, the optimisation, top to bottom
=================  ============================================================

The formula of the loss and every measurement: docs/projector.md.
"""
from .config import (COMPILE_MODES, PRECISIONS, SCHEDULES, ProjectionConfig, latent_noise_scale, learning_rate_ramp,
                     projection_config)
from .loss import MaskedLoss, noise_regularization, psnr_visible
from .projection import ProjectionResult, ProjectionStep, project
from .speed import fast_render_options, resolve_compile, resolve_precision
from .start import w_statistics

__all__ = [
    "ProjectionConfig", "ProjectionResult", "ProjectionStep", "MaskedLoss", "project", "projection_config",
    "psnr_visible", "noise_regularization", "learning_rate_ramp", "latent_noise_scale", "w_statistics",
    "PRECISIONS", "SCHEDULES", "COMPILE_MODES", "resolve_precision", "fast_render_options", "resolve_compile",
]
