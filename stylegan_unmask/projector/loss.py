"""The masked loss: how far generated images are from their targets, on the visible pixels only.

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
the sum of the per-image losses, so each image gets its own gradient.

With ``samples`` K > 1 (K starts per target, consecutive in the batch) and
``sample_spread`` s > 0, each image also pays ``s * mean_j exp(-d_ij / D0)``:
its closeness to the other starts of its target, where ``d_ij`` is the mean
squared difference of the two images' hidden regions area-reduced to
``SPREAD_SIZE`` px (coarse shape and shade, not texture) and ``D0`` =
``SPREAD_SCALE``. It is bounded and fades once two samples differ, so it keeps
the samples apart under the mask without rewarding ever larger differences;
the visible pixels do not enter it.

Hidden target pixels have exactly zero influence: they are replaced by 0
(``torch.where``) before anything else sees them, so the gradient with
respect to them is exactly 0 and changing them (even to NaN) changes nothing.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["MaskedLoss", "masked_loss_terms", "hidden_closeness", "psnr_visible", "noise_regularization"]

#: The hidden regions are compared at this size (px): the samples should differ in shape, not in texture.
SPREAD_SIZE = 32
#: Mean squared difference (images in [-1, 1]) at which two samples' closeness has fallen to 1/e.
SPREAD_SCALE = 0.05


def _area_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="area")


class MaskedLoss:
    """The visible-region loss of generated images against fixed targets (see the module docstring).

    ``MaskedLoss(target, hidden_mask, ...)(images)`` returns per-image
    ``(mse, perceptual)`` tensors ``[N]``. Target features are computed once.
    ``images`` may also have a batch of B candidates for a single target
    (``loss.select(i)(candidates)``), the target then broadcasts.
    """

    def __init__(self, target: torch.Tensor, hidden_mask: torch.Tensor, *, features=None,
                 layers: Sequence[str] = ("conv2_2",), perceptual_resolution: int = 256, samples: int = 1):
        self.visible = ~hidden_mask.bool()                      # [N, 1, R, R]
        self.samples = int(samples)                              # starts per target, consecutive
        self.hidden_small = _area_resize((~self.visible).to(target.dtype), SPREAD_SIZE) \
            if target.shape[-1] > SPREAD_SIZE else (~self.visible).to(target.dtype)
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
        sub.hidden_small, sub.samples = self.hidden_small[sl], 1
        sub.target = self.target[sl]
        sub.target_features = {k: v[sl] for k, v in self.target_features.items()}
        sub.layer_weights = {k: v[sl] for k, v in self.layer_weights.items()}
        return sub

    def __call__(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return masked_loss_terms(images, self)


def masked_loss_terms(images: torch.Tensor, loss: MaskedLoss) -> Tuple[torch.Tensor, torch.Tensor]:
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


def hidden_closeness(images: torch.Tensor, loss: MaskedLoss) -> torch.Tensor:
    """Per image, ``mean_j exp(-d_ij / SPREAD_SCALE)`` over the other starts of its target (see the
    module docstring); zeros with one start per target."""
    n, k = images.shape[0], loss.samples
    if k <= 1:
        return torch.zeros(n, dtype=images.dtype, device=images.device)
    small = _area_resize(images, SPREAD_SIZE) if images.shape[-1] > SPREAD_SIZE else images
    h = (small * loss.hidden_small).reshape(n // k, k, -1)                  # [targets, K, D]
    area = loss.hidden_small.reshape(n // k, k, -1)[:, :1].sum(-1, keepdim=True).clamp_min(1.0) * images.shape[1]
    d = (h[:, :, None] - h[:, None, :]).square().sum(-1) / area               # [targets, K, K]
    others = 1.0 - torch.eye(k, dtype=d.dtype, device=d.device)
    return ((torch.exp(-d / SPREAD_SCALE) * others).sum(-1) / (k - 1)).reshape(n)


def latent_prior(ws: torch.Tensor, centre: torch.Tensor, w_std: float) -> torch.Tensor:
    """Per image, the mean over layers of ``||w - centre||^2 / w_std^2`` ([N, num_ws, w_dim] -> [N]).

    ``centre``: [w_dim] (e.g. the average w) or one per image and layer. A
    random face's w lies about 1 from the average by this measure, the scale of
    the latent-jitter statistics. Only the visible pixels pull the latent; this
    pull toward a face the generator draws (the start: the average face, or a
    sample's random face) is what keeps the unseen lower face a face.
    """
    return (ws.float() - centre.to(ws.device)).square().sum(-1).mean(1) / w_std ** 2


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
