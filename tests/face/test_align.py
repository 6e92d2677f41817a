"""FFHQ alignment against the official recipe's outputs, and the geometry that maps results back."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED

from stylegan_unmask.face.align import AlignedFace, AlignTransform, align_face, ffhq_square
from stylegan_unmask.images import load_image

# Needed at collection time to list the goldens.
GOLDEN_DIR = SHARED / "data" / "dev" / "alignment"
# Fast items (small sources; one without padding, one with) run in every test
# run; aligning all 16 at the official 4096 render takes ~30-60 s on 2 cores.
QUICK = ("astronaut", "masked_cdeb7_1589")


def _golden_names():
    try:
        return [it["name"] for it in json.loads((GOLDEN_DIR / "goldens.json").read_text())["items"]]
    except OSError:
        return list(QUICK)  # tests skip through the fixture below


GOLDEN_NAMES = _golden_names()
_ALIGNED_CACHE: dict = {}


@pytest.fixture(scope="module")
def goldens(dev_data_dir):
    index = json.loads((dev_data_dir / "alignment" / "goldens.json").read_text())
    return {it["name"]: it for it in index["items"]}


def _aligned(goldens, name):
    """Align a golden item once per session (the 4096 render is the expensive part)."""
    if name not in _ALIGNED_CACHE:
        item = goldens[name]
        src = load_image(GOLDEN_DIR / item["source"])
        lm = np.load(GOLDEN_DIR / item["landmarks"])
        _ALIGNED_CACHE[name] = (src.pixels, lm, align_face(src.pixels, lm, output_size=1024, transform_size=4096))
    return _ALIGNED_CACHE[name]


def _psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in GOLDEN_NAMES]
)
def test_matches_official_recipe(goldens, name):
    item = goldens[name]
    _, _, face = _aligned(goldens, name)
    ref = np.asarray(Image.open(GOLDEN_DIR / item["aligned"]).convert("RGB"))
    assert face.image.shape == ref.shape == (1024, 1024, 3)
    mad = np.abs(face.image.astype(np.int16) - ref).mean()
    assert mad <= 1.0, f"{name}: mean abs difference {mad:.4f} vs the official recipe"

    # Same geometry, step by step.
    inter = item["intermediates"]
    steps = face.steps
    np.testing.assert_allclose(face.transform.quad, np.load(GOLDEN_DIR / item["quad"]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(steps.c0, inter["c0"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(steps.x, inter["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(steps.y, inter["y"], rtol=0, atol=1e-9)
    assert steps.qsize == pytest.approx(inter["qsize"], abs=1e-9)
    assert steps.shrink == inter["shrink"] and steps.border == inter["border"]
    assert list(steps.crop_ltrb) == inter["crop_ltrb"]
    assert list(steps.pad_ltrb_computed) == inter["pad_ltrb_computed"]
    assert steps.padding_applied == inter["padding_applied"]
    assert list(steps.pad_ltrb_applied) == inter["pad_ltrb_applied"]
    assert list(steps.image_size_at_transform) == inter["image_size_at_transform"]
    np.testing.assert_allclose(steps.quad_at_transform, inter["quad_at_transform_xy"], rtol=0, atol=1e-9)
    assert face.transform.source_size == tuple(item["source_size_wh"])


def test_all_goldens_are_listed(goldens):
    assert len(goldens) == 16 and set(QUICK) <= set(goldens)


@pytest.mark.parametrize("name", QUICK)
def test_aligned_landmarks_sit_at_ffhq_positions(goldens, name):
    _, lm, face = _aligned(goldens, name)
    assert isinstance(face, AlignedFace)
    np.testing.assert_allclose(face.source_landmarks, lm)
    a = face.landmarks / face.size  # as fractions of the square
    eye_l, eye_r = a[36:42].mean(0), a[42:48].mean(0)
    mouth = (a[48] + a[54]) / 2
    # FFHQ: eyes level, ~a quarter of the width apart, centred, just above the middle.
    assert abs(eye_l[1] - eye_r[1]) < 0.02
    assert 0.17 < eye_r[0] - eye_l[0] < 0.26
    assert abs((eye_l[0] + eye_r[0]) / 2 - 0.5) < 0.01
    assert 0.46 < (eye_l[1] + eye_r[1]) / 2 < 0.49
    assert abs(mouth[0] - 0.5) < 0.02 and 0.68 < mouth[1] < 0.76


@pytest.mark.parametrize("name", QUICK)
def test_warp_back_reproduces_the_photo(goldens, name):
    """Warping the aligned crop back onto the photo must land on the same pixels."""
    src, _, face = _aligned(goldens, name)
    back, valid = face.transform.warp_to_source(face.image)
    assert back.shape == src.shape and valid.shape == src.shape[:2]
    keep = valid.copy()
    steps = face.steps
    if steps.padding_applied:
        # The recipe blurs the photo up to a third of the pad width inside its edge: not the photo any more.
        h, w = keep.shape
        left, top, right, bottom = steps.pad_ltrb_applied
        cx0, cy0, cx1, cy1 = steps.crop_ltrb
        yy, xx = np.mgrid[:h, :w]
        keep &= (xx >= cx0 + left / 3 + 2) & (xx <= cx1 - 1 - right / 3 - 2)
        keep &= (yy >= cy0 + top / 3 + 2) & (yy <= cy1 - 1 - bottom / 3 - 2)
    keep = cv2.erode(keep.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert keep.mean() > 0.1
    assert _psnr(back[keep], src[keep]) > 30.0
    # Beyond the square (past the partly covered edge pixels) nothing is produced.
    near = cv2.dilate(valid.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert not back[~near].any() and (~near).any()


@pytest.mark.parametrize("name", QUICK)
def test_warp_from_source_matches_the_recipe(goldens, name):
    src, _, face = _aligned(goldens, name)
    warped, valid = face.transform.warp_from_source(src)
    keep = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    if face.steps.padding_applied:
        keep[:200] = keep[-200:] = False  # stay clear of the synthesised padding
        keep[:, :200] = keep[:, -200:] = False
    assert keep.mean() > 0.2
    assert _psnr(warped[keep], face.image[keep]) > 35.0


def test_point_maps_round_trip_on_goldens(goldens):
    for name in QUICK:
        src, _, face = _aligned(goldens, name)
        t = face.transform
        assert t.is_affine
        h, w = src.shape[:2]
        pts = np.random.RandomState(0).rand(200, 2) * [w, h]
        np.testing.assert_allclose(t.to_source(t.to_aligned(pts)), pts, atol=1e-8)
        s = t.output_size
        corners = t.to_aligned(t.quad)
        np.testing.assert_allclose(corners, [[-0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5], [s - 0.5, -0.5]],
                                   atol=1e-8)


@pytest.mark.parametrize("output_size, transform_size", [(256, 1024), (64, 256), (64, None)])
def test_subpixel_position_of_a_dot(dev_data_dir, output_size, transform_size):
    """A blurred dot lands exactly where to_aligned() says (checks the half-pixel conventions, shrink included)."""
    lm = np.load(dev_data_dir / "alignment" / "ffhq_00000" / "landmarks.npy")
    ang = np.deg2rad(17.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src_lm = (lm - 512) @ rot.T * 0.3 + [260, 190]
    h, w = 400, 500
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    dot = (240.3, 170.7)
    img = np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 3.0**2)) * 255
    img = np.repeat(img.astype(np.uint8)[:, :, None], 3, axis=2)
    face = align_face(img, src_lm, output_size=output_size, transform_size=transform_size)
    assert face.image.shape == (output_size, output_size, 3)
    if transform_size is None:
        assert face.steps.transform_size == 4096
    if output_size == 64:
        assert face.steps.shrink > 1  # exercises the shrink branch and its exact source quad
    a = face.image[..., 0].astype(np.float64)
    gy, gx = np.mgrid[:output_size, :output_size]
    centroid = np.array([(a * gx).sum() / a.sum(), (a * gy).sum() / a.sum()])
    np.testing.assert_allclose(centroid, face.transform.to_aligned(dot), atol=0.05)


def test_general_quad_maps_and_warps():
    """A non-parallelogram quad (not produced by FFHQ, but a valid AlignTransform) uses the exact bilinear map."""
    quad = np.array([[30.0, 20.0], [25.0, 180.0], [200.0, 170.0], [180.0, 35.0]])
    t = AlignTransform(quad=quad, output_size=128, source_size=(240, 210))
    assert not t.is_affine
    pts = np.random.RandomState(1).rand(300, 2) * 127
    np.testing.assert_allclose(t.to_aligned(t.to_source(pts)), pts, atol=1e-7)
    np.testing.assert_allclose(t.to_source([[-0.5, -0.5], [127.5, 127.5]]), quad[[0, 2]], atol=1e-12)
    yy, xx = np.mgrid[:210, :240]
    smooth = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    aligned, valid_a = t.warp_from_source(smooth)
    assert valid_a.all()
    back, valid_s = t.warp_to_source(aligned)
    keep = cv2.erode(valid_s.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.abs(back[keep].astype(int) - smooth[keep]).max() <= 2


def test_masks_warp_as_bool():
    t = AlignTransform(quad=[[10, 10], [10, 110], [110, 110], [110, 10]], output_size=50, source_size=(130, 120))
    m = np.zeros((50, 50), bool)
    m[20:30, 10:40] = True
    back, valid = t.warp_to_source(m, cv2.INTER_NEAREST)
    assert back.dtype == bool and back.shape == (120, 130)
    assert back.sum() == pytest.approx(m.sum() * 4, rel=0.05)  # 2x scale: 4x the area
    assert not valid[:5].any() and valid[60, 60]
    again, _ = t.warp_from_source(back, cv2.INTER_NEAREST)
    assert again.dtype == bool and np.array_equal(again, m)


def test_transform_serialises():
    quad = [[1.5, 2.0], [0.0, 100.0], [98.5, 101.0], [100.0, 3.0]]
    t = AlignTransform(quad=quad, output_size=64, source_size=(120, 110))
    t2 = AlignTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    np.testing.assert_array_equal(t2.quad, t.quad)
    assert (t2.output_size, t2.source_size) == (64, (120, 110))


def test_bad_arguments():
    img = np.zeros((64, 64, 3), np.uint8)
    lm = np.zeros((68, 2))
    lm[36:42] = (20, 30)  # eyes
    lm[42:48] = (44, 30)
    lm[48], lm[54] = (24, 50), (40, 50)  # mouth corners
    with pytest.raises(ValueError, match="68x2"):
        align_face(img, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        ffhq_square(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="NaN"):
        align_face(img, np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="output_size"):
        align_face(img, lm, output_size=8)
    with pytest.raises(ValueError, match="transform_size"):
        align_face(img, lm, output_size=256, transform_size=128)
    assert align_face(img, lm, output_size=32, transform_size=64).image.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="degenerate"):
        AlignTransform(quad=np.zeros((4, 2)), output_size=64, source_size=(10, 10))
