"""Mask region geometry (synthetic landmarks) and user masks."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import FRONTAL_FACE as FACE

from stylegan_unmask.errors import InputImageError
from stylegan_unmask.evaluation.masks import eye_area
from stylegan_unmask.face.mask import (CHIN_FLOOR, EYE_CLEARANCE, feather_mask, grow_mask, inter_ocular_distance,
                                       load_user_mask, mask_from_landmarks)

SHAPE = (256, 256)


def _at(mask, xy):
    return bool(mask[int(round(xy[1])), int(round(xy[0]))])


def _jaw_polygon(points, shape):
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(points[:17]).astype(np.int32)], 1)
    return m.astype(bool)


def test_covers_mouth_nose_chin_and_jaw():
    m = mask_from_landmarks(FACE, SHAPE)
    assert m.dtype == np.bool_ and m.shape == SHAPE
    for i in [30, 31, 33, 35, 48, 51, 54, 57, 62, 66, 8, 4, 12, 28]:
        assert _at(m, FACE[i]), f"landmark {i} not covered"
    iod = inter_ocular_distance(FACE)
    assert _at(m, FACE[8] + [0, 0.2 * iod]), "must reach below the chin"
    # Everything of the jaw polygon below the nose tip is covered.
    jaw = _jaw_polygon(FACE, SHAPE)
    low = np.zeros(SHAPE, bool)
    low[int(FACE[30, 1]):] = True  # below the nose tip (under the eyes the edge keeps a gap)
    assert (m | ~(jaw & low)).all()


def test_excludes_eyes_and_forehead():
    m = mask_from_landmarks(FACE, SHAPE)
    for i in range(36, 48):
        assert not _at(m, FACE[i]), f"eye landmark {i} covered"
    for i in range(17, 27):
        assert not _at(m, FACE[i]), f"brow landmark {i} covered"
    assert not m[: int(FACE[27, 1])].any()


def test_margin_is_monotonic():
    areas = []
    prev = None
    for margin in [0.0, 0.1, 0.2, 0.3, 0.5]:
        m = mask_from_landmarks(FACE, SHAPE, margin=margin)
        if prev is not None:
            assert (m | ~prev).all(), "a larger margin must contain the smaller one"
        prev = m
        areas.append(m.sum())
    assert all(b > a for a, b in zip(areas, areas[1:]))
    with pytest.raises(ValueError):
        mask_from_landmarks(FACE, SHAPE, margin=-0.1)


def test_scale_rotation_and_translation_invariance():
    """Same landmarks in another space (e.g. 1024-px aligned, or a rotated photo): same region."""
    base = mask_from_landmarks(FACE, SHAPE)
    s = 4.0
    big = mask_from_landmarks(FACE * s, (1024, 1024))
    small = np.asarray(Image.fromarray(big.astype(np.uint8) * 255).resize(SHAPE, Image.BILINEAR)) > 127
    assert (small ^ base).mean() < 0.01
    c = np.array([128.0, 128.0])
    a = np.deg2rad(90)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = mask_from_landmarks((FACE - c) @ rot.T + c, SHAPE)
    back = np.rot90(turned, k=1)  # undo a 90-degree rotation of the image
    assert (back ^ base).sum() / base.sum() < 0.03
    shifted = mask_from_landmarks(FACE + [40, 30], (300, 300))
    assert (shifted[30:286, 40:296] ^ base).sum() / base.sum() < 0.005  # rasteriser rounding only


def test_aligned_space_via_align_transform():
    from stylegan_unmask.face.align import align_face

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    face = align_face(photo, FACE, output_size=256, transform_size=256)
    m = mask_from_landmarks(face.landmarks, (256, 256))
    assert _at(m, face.landmarks[33]) and _at(m, face.landmarks[57]) and not _at(m, face.landmarks[37])
    assert 0.1 < m.mean() < 0.6


def test_face_partly_outside_image_and_bad_points():
    m = mask_from_landmarks(FACE - [100, 0], SHAPE)  # left half of the face is off-image
    assert m.any() and m.shape == SHAPE
    with pytest.raises(ValueError):
        mask_from_landmarks(FACE[:60], SHAPE)
    bad = FACE.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError):
        mask_from_landmarks(bad, SHAPE)


def test_eyes_stay_clear_even_with_a_huge_margin():
    """The eye contours plus a clearance are cut out whatever the margin or the face's tilt."""
    iod = inter_ocular_distance(FACE)
    c = np.array([128.0, 128.0])
    for deg in (0, 25, -40):
        a = np.deg2rad(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (FACE - c) @ rot.T + c
        m = mask_from_landmarks(pts, SHAPE, margin=3.0)
        eyes = grow_mask(eye_area(pts, SHAPE), 0.9 * EYE_CLEARANCE * iod)
        assert not (m & eyes).any(), f"eye area covered at {deg} degrees"
        assert _at(m, pts[33]) and _at(m, pts[8])


def test_chin_floor_stretches_a_short_jaw_down():
    """A predicted chin closer than CHIN_FLOOR IOD to the eye line is pushed down to it; a long one is kept."""
    iod = inter_ocular_distance(FACE)
    eyes_y = (FACE[36:42].mean(0)[1] + FACE[42:48].mean(0)[1]) / 2
    depth = (FACE[8, 1] - eyes_y) / iod
    assert depth < CHIN_FLOOR  # this synthetic face has a short jaw
    plain = mask_from_landmarks(FACE, SHAPE, margin=0.0, chin_floor=0.0)
    floored = mask_from_landmarks(FACE, SHAPE, margin=0.0)
    assert (floored | ~plain).all() and floored.sum() > plain.sum()
    x = int(round(FACE[8, 0]))
    bottom = np.flatnonzero(floored[:, x])[-1]
    assert abs(bottom - (eyes_y + CHIN_FLOOR * iod)) <= 1.5
    assert np.flatnonzero(plain[:, x])[-1] <= FACE[8, 1] + 1
    # A face already longer than the floor is untouched.
    long_face = FACE.copy()
    long_face[:17, 1] = eyes_y + (FACE[:17, 1] - eyes_y) * 1.3
    assert (mask_from_landmarks(long_face, (300, 256), chin_floor=0.0)
            == mask_from_landmarks(long_face, (300, 256))).all()
    with pytest.raises(ValueError):
        mask_from_landmarks(FACE, SHAPE, chin_floor=-1)


def test_reaches_up_the_nose_bridge():
    """The top edge crosses the nose above landmark 28 (where a mask's nose wire sits)."""
    m = mask_from_landmarks(FACE, SHAPE)
    x = int(round(FACE[28, 0]))
    column = np.flatnonzero(m[:, x])
    assert column.size and column[0] < FACE[28, 1] - 2 and column[0] > FACE[27, 1]


def test_grow_and_feather_helpers():
    m = np.zeros((50, 60), bool)
    m[20:30, 25:35] = True
    g = grow_mask(m, 3)
    assert (g | ~m).all() and g.sum() > m.sum()
    assert g[20, 22] and not g[20, 21]  # exact Euclidean: 3 px to the left, not 4
    assert (grow_mask(m, 0) == m).all()
    with pytest.raises(ValueError):
        grow_mask(m, -1)
    a = feather_mask(m, 4)
    assert a.dtype == np.float32 and (a[m] == 1).all() and a[20, 20] == 0 and 0 < a[25, 23] < 1
    assert np.all(np.diff(a[25, 15:25]) >= 0)  # rises towards the mask


def test_load_user_mask(tmp_path):
    a = np.zeros((40, 60), np.uint8)
    a[10:30, 20:40] = 200
    a[0, 0] = 127  # threshold: 127 is not masked
    p = tmp_path / "m.png"
    Image.fromarray(a).save(p)
    m = load_user_mask(p, (60, 40))
    assert m.shape == (40, 60) and m.sum() == 400 and not m[0, 0]
    with pytest.raises(InputImageError) as e:
        load_user_mask(p, (64, 48))
    msg = str(e.value)
    assert "m.png" in msg and "60x40" in msg and "64x48" in msg and "photo" in msg
    rgb = tmp_path / "rgb.jpg"
    Image.fromarray(np.stack([a] * 3, -1)).save(rgb, quality=98)
    assert (load_user_mask(rgb, (60, 40)) ^ m).sum() <= 4  # JPEG may move an edge pixel, no more
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(empty)
    with pytest.raises(InputImageError, match="empty"):
        load_user_mask(empty, (60, 40))
    full = tmp_path / "full.png"
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(full)
    with pytest.raises(InputImageError, match="inverted"):
        load_user_mask(full, (60, 40))
    with pytest.raises(InputImageError, match="missing.png"):
        load_user_mask(tmp_path / "missing.png", (60, 40))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    with pytest.raises(InputImageError, match="broken.png"):
        load_user_mask(broken, (60, 40))


def test_user_mask_alpha_and_space(tmp_path):
    """Transparent pixels are unmasked; a square mask for a non-square photo is named as an aligned one."""
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = 255          # white everywhere ...
    rgba[10:30, 20:40, 3] = 255  # ... but opaque only here
    p = tmp_path / "layer.png"
    Image.fromarray(rgba, "RGBA").save(p)
    m = load_user_mask(p, (60, 40))
    assert m.sum() == 400 and m[10:30, 20:40].all()
    sq = tmp_path / "aligned_mask.png"
    Image.fromarray(np.pad(np.full((20, 20), 255, np.uint8), 22)).save(sq)  # 64x64
    with pytest.raises(InputImageError, match="aligned") as e:
        load_user_mask(sq, (60, 40))
    assert "64x64" in str(e.value)
    with pytest.raises(InputImageError, match="aligned face is 128x128"):
        load_user_mask(sq, (128, 128), space="aligned face")
    assert load_user_mask(sq, (64, 64), space="aligned face").sum() == 400
