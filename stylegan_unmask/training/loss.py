"""GAN losses: hinge (Projected GAN's), non-saturating logistic (Goodfellow et al., 2014) and lazy R1 (Mescheder et al., 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z))): G pushes its images' logits up."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(D, real: torch.Tensor) -> torch.Tensor:
    """E ||∇_x D(x)||² on real images (computed in fp32: second-order terms are fragile in bf16)."""
    real = real.detach().float().requires_grad_(True)
    logits = D(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """max(0, 1 − D(x)) + max(0, 1 + D(G(z))), averaged over every logit (Projected GAN's loss)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """−D(G(z)): G raises its logits."""
    return (-fake_logits).mean()
