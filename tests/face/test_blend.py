"""Poisson blending in aligned space and the feathered paste-back into the photo."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stylegan_unmask.face.align import AlignTransform, align_face
from stylegan_unmask.face.blend import default_feather_px, feathered_alpha, paste_back, poisson_blend

H = W = 128


def _texture(seed=0, h=H, w=W) -> np.ndarray:
    """Strong, smooth-ish texture: any 1-px shift of cloned content shows up as a large error."""
    rng = np.random.RandomState(seed)
    noise = rng.randint(0, 256, (h // 4, w // 4, 3)).astype(np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def _masks():
    yy, xx = np.mgrid[:H, :W]
    return {
        "interior": (np.abs(xx - 60) < 20) & (np.abs(yy - 70) < 15),
        "odd_box": (np.abs(xx - 61) < 20) & (np.abs(yy - 71) < 14) & ~((xx > 70) & (yy > 75)),
        "bottom_edge": (yy > 90) & (np.abs(xx - 64) < 30),
        "corner": (yy > 100) & (xx > 100),
        "left_and_top": (xx < 10) | (yy < 6),
    }


@pytest.mark.parametrize("kind", list(_masks()))
def test_only_mask_pixels_change(kind):
    photo, gen = _texture(0), _texture(1)
    m = _masks()[kind]
    out = poisson_blend(photo, gen, m)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[~m], photo[~m])
    assert not np.array_equal(out[m], photo[m])


@pytest.mark.parametrize("kind", list(_masks()))
def test_no_shift(kind):
    """Cloning an image into itself must give the image back: OpenCV's centre/ROI handling is exact."""
    photo = _texture(2)
    m = _masks()[kind]
    out = poisson_blend(photo, photo.copy(), m)
    assert np.abs(out.astype(int) - photo).max() <= 2


def test_colour_follows_the_photo_at_the_boundary():
    """Same texture, brighter: Poisson cloning keeps the gradients and matches the surrounding level."""
    photo = _texture(3)
    m = _masks()["interior"]
    gen = np.clip(photo.astype(int) + 40, 0, 255).astype(np.uint8)
    unclipped = photo.astype(int).max(-1) < 215
    out = poisson_blend(photo, gen, m)
    d = np.abs(out.astype(int) - photo)[m & unclipped]
    assert d.mean() < 2.0
    mixed = poisson_blend(photo, gen, m, method=cv2.MIXED_CLONE)
    assert np.array_equal(mixed[~m], photo[~m])


def test_generated_content_is_kept_inside():
    yy, xx = np.mgrid[:H, :W]
    photo = np.full((H, W, 3), 100, np.uint8)
    gen = photo.copy()
    gen[55:75, 50:70] = (200, 30, 30)  # a feature well inside the mask
    m = (np.abs(xx - 60) < 30) & (np.abs(yy - 65) < 25)
    out = poisson_blend(photo, gen, m)
    inside = out[58:72, 53:67].astype(int).mean((0, 1))
    ring = out[m & ~((np.abs(xx - 60) < 15) & (np.abs(yy - 65) < 15))].astype(int).mean(0)
    assert inside[0] - inside[1] > 100  # still a strong red square
    assert np.abs(ring - 100).max() < 25  # the rest stays near the photo's level


def test_empty_and_full_masks():
    photo, gen = _texture(4), _texture(5)
    out = poisson_blend(photo, gen, np.zeros((H, W), bool))
    assert np.array_equal(out, photo) and out is not photo
    full = poisson_blend(photo, gen, np.ones((H, W), bool))
    # No photo pixel is left to match: the generated image comes back (up to the solver's rounding).
    assert np.abs(full.astype(int) - gen).mean() < 1.5


def test_blend_validates_inputs():
    photo = _texture(0)
    with pytest.raises(ValueError, match="shape"):
        poisson_blend(photo, photo[:64], np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="mask"):
        poisson_blend(photo, photo, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="uint8"):
        poisson_blend(photo.astype(np.float32), photo, np.zeros((H, W), bool))


# ----------------------------------------------------------------------------- feathering


def test_feathered_alpha_profile():
    m = np.zeros((60, 60), bool)
    m[20:40, 20:40] = True
    a = feathered_alpha(m, feather_px=8)
    assert a.dtype == np.float32
    assert (a[m] == 1).all()
    assert a[30, 43] > 0 and a[30, 43] < 1  # 4 px outside: part way
    assert (a[30, 48:] == 0).all()  # from 8 px outside: exactly zero
    assert np.all(np.diff(a[30, 39:50]) <= 0)  # monotone fall-off
    grown = feathered_alpha(m, feather_px=0, dilate_px=3)
    assert grown[30, 42] == 1 and grown[30, 43] == 0
    assert not feathered_alpha(np.zeros((5, 5), bool), 4).any()


# ----------------------------------------------------------------------------- paste back


@pytest.fixture(scope="module")
def synthetic_face():
    """A textured 'photo' with a rotated, scaled face geometry (landmarks from an FFHQ golden if present)."""
    rng = np.random.RandomState(7)
    h, w = 300, 380
    photo = cv2.resize(rng.randint(0, 256, (h // 6, w // 6, 3)).astype(np.uint8), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    # Plausible 68-point geometry: eyes, mouth corners and a loose jaw.
    lm = np.zeros((68, 2))
    lm[0:17] = np.stack([np.linspace(-60, 60, 17), 40 - 50 * np.cos(np.linspace(0, np.pi, 17))], -1)
    lm[17:36] = (0, 0)
    lm[36:42] = (-30, -20)
    lm[42:48] = (30, -20)
    lm[48:68] = (0, 40)
    lm[48], lm[54] = (-22, 40), (22, 40)
    ang = np.deg2rad(-12)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = lm @ rot.T * 0.9 + [190, 140]
    face = align_face(photo, lm, output_size=128, transform_size=512)
    return photo, face


def _lower_face_mask(size):
    yy, xx = np.mgrid[:size, :size]
    return ((xx - size / 2) / (0.3 * size)) ** 2 + ((yy - 0.75 * size) / (0.15 * size)) ** 2 < 1


def test_paste_back_keeps_far_pixels_bit_identical(synthetic_face):
    photo, face = synthetic_face
    s = face.size
    mask = _lower_face_mask(s)
    result = face.image.copy()
    result[mask] = (255, 0, 255)
    out = paste_back(photo, result, face.transform, mask, feather_px=4)
    assert out.shape == photo.shape and out.dtype == np.uint8
    # Where the warped mask plus feather cannot reach, the output is the input, bit for bit.
    region, _ = face.transform.warp_to_source(mask.astype(np.float32))
    reach = cv2.dilate((region > 0).astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
    assert np.array_equal(out[~reach], photo[~reach])
    changed = np.any(out != photo, -1)
    assert changed.any() and not (changed & ~reach).any()
    # The magenta patch lands where the transform says the mask is.
    centre = face.transform.to_source([[s / 2, 0.75 * s]])[0].round().astype(int)
    assert out[centre[1], centre[0]].tolist() == [255, 0, 255]


def test_paste_back_round_trip_reproduces_photo(synthetic_face):
    """Pasting the unmodified aligned crop back changes the region only by resampling blur."""
    photo, face = synthetic_face
    mask = _lower_face_mask(face.size)
    out = paste_back(photo, face.image, face.transform, mask)
    changed = np.any(out != photo, -1)
    assert changed.any()
    err = out.astype(float)[changed] - photo[changed]
    psnr = 10 * np.log10(255.0**2 / np.mean(err**2))
    assert psnr > 28.0


def test_paste_back_default_feather_and_empty_mask(synthetic_face):
    photo, face = synthetic_face
    assert default_feather_px(face.transform) >= 2.0
    empty = np.zeros((face.size, face.size), bool)
    out = paste_back(photo, np.zeros_like(face.image), face.transform, empty)
    assert np.array_equal(out, photo) and out is not photo


def test_paste_back_never_mixes_in_black_beyond_the_square():
    """A mask touching the aligned square's edge: nothing outside the square is altered."""
    t = AlignTransform(quad=[[20, 20], [20, 100], [100, 100], [100, 20]], output_size=80, source_size=(120, 120))
    photo = np.full((120, 120, 3), 200, np.uint8)
    result = np.full((80, 80, 3), 50, np.uint8)
    mask = np.zeros((80, 80), bool)
    mask[60:, :] = True  # reaches the bottom and both sides
    out = paste_back(photo, result, t, mask, feather_px=6)
    assert np.array_equal(out[102:], photo[102:])  # below the square
    assert (out[85:98, 30:90] == 50).all()  # inside the square, fully replaced
    assert out.min() >= 50


def test_paste_back_validates_sizes(synthetic_face):
    photo, face = synthetic_face
    mask = _lower_face_mask(face.size)
    with pytest.raises(ValueError, match="transform was made for"):
        paste_back(photo[:100], face.image, face.transform, mask)
    with pytest.raises(ValueError, match="aligned_result"):
        paste_back(photo, face.image[:64, :64], face.transform, mask)
