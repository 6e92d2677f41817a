"""The Projected GAN pieces: EfficientNet-lite0, random projections, heads, losses, blur, and metrics D cannot see."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan_unmask.training import discriminator as disc
from stylegan_unmask.training.augment import gaussian_blur
from stylegan_unmask.perceptual.efficientnet_lite import EfficientNetLite0
from stylegan_unmask.training.loss import hinge_discriminator_loss, hinge_generator_loss
from stylegan_unmask.training.metrics import precision_recall

from conftest import SHARED, _require


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetLite0()


def test_lite0_weights_expect_inputs_in_minus_one_to_one(lite0):
    """On real photos the stem's output variance matches its batch-norm statistics under the [-1, 1]
    scaling (the TF lite recipe), not under ImageNet mean/std (which inflates it ~4x)."""
    from PIL import Image

    photos = sorted(_require(SHARED / "data" / "dev" / "masked_real").glob("*.jpg"))[:24]
    x01 = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((224, 224)))).permute(2, 0, 1)
                       for p in photos]).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    bn = lite0.stem[1]
    errors = {}
    for name, x in (("tf", x01 * 2 - 1), ("imagenet", (x01 - mean) / std)):
        with torch.no_grad():
            var = lite0.stem[0](x).var(dim=(0, 2, 3))
        errors[name] = float((var / bn.running_var).log().abs().median())
    assert errors["tf"] < errors["imagenet"]


def test_lite0_stage_shapes_and_frozen(lite0):
    with torch.no_grad():
        outs = lite0(torch.zeros(1, 3, 128, 128))
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 64, 64), (24, 32, 32), (40, 16, 16), (80, 8, 8),
                                                   (112, 8, 8), (192, 4, 4), (320, 4, 4)]
    assert not any(p.requires_grad for p in lite0.parameters()) and not lite0.training


@pytest.mark.parametrize("backbone", ["lite0", "vgg16"])
def test_projected_d_shapes_and_what_trains(backbone):
    D = disc.ProjectedDiscriminator(backbone, 128, separable=True).train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = D.features(x)
    assert [f.shape[1] for f in feats] == [64, 64, 128, 256]
    # each map is twice the size of the next (CSM upsampling), shallow first
    assert [f.shape[-1] for f in feats] == [feats[-1].shape[-1] * 2 ** (3 - i) for i in range(4)]
    logits = D(x)
    assert logits.shape[0] == 2 and logits.ndim == 2
    trainable = {n for n, p in D.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)
    assert not D.projection.training  # frozen, even after D.train()


def test_gradients_reach_the_image_but_not_the_frozen_part():
    D = disc.ProjectedDiscriminator("lite0", 128, channels_last=True)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    hinge_generator_loss(D(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.projection.parameters())


def test_channels_last_changes_nothing_but_speed():
    torch.manual_seed(0)
    a = disc.ProjectedDiscriminator("lite0", 128)
    b = disc.ProjectedDiscriminator("lite0", 128, channels_last=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        for fa, fb in zip(a.features(x), b.features(x)):
            torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-4)


def test_small_input_is_refused():
    with pytest.raises(ValueError, match="below 128"):
        disc.ProjectedDiscriminator("lite0", 96)


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert float(hinge_generator_loss(fake)) == pytest.approx(1.0)


def test_blur_keeps_mean_and_smooths():
    x = torch.zeros(1, 3, 32, 32)
    x[..., 16, 16] = 1.0
    y = gaussian_blur(x, 2.0)
    assert float(y.sum()) == pytest.approx(3.0, rel=1e-4) and float(y.max()) < 0.1
    assert torch.equal(gaussian_blur(x, 0.2), x)


def test_precision_recall_separate_quality_from_coverage():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    collapsed = rng.normal(scale=0.05, size=(300, 8))   # all samples near one point of the real manifold
    off = rng.normal(loc=6.0, size=(300, 8))            # nowhere near the real faces
    p, r = precision_recall(real, same)
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.2
    p, r = precision_recall(real, off)
    assert p < 0.05 and r < 0.05
