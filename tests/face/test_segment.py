"""The face-mask segmenter: frame geometry, post-processing, the shipped weights, and real photos."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from stylegan_unmask.face import segment
from stylegan_unmask.face.segment import (FRAME_EYES, FRAME_SIZE, FRAME_UNIT, clean_region, face_unit_axes,
                                          frame_matrix, from_frame, load_segmenter, segment_face, to_frame)

from conftest import FRONTAL_FACE

FACE = FRONTAL_FACE


def _apply(m, pts):
    return np.asarray(pts) @ m[:, :2].T + m[:, 2]


def test_frame_puts_the_eyes_in_place_at_a_fixed_scale():
    m = frame_matrix(FACE)
    eyes, right, unit = face_unit_axes(FACE)
    np.testing.assert_allclose(_apply(m, eyes), FRAME_EYES, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(abs(np.linalg.det(m[:, :2]))), FRAME_UNIT / unit)
    # rotating and scaling the photo rotates and scales the frame with it: same frame coordinates
    rot = cv2.getRotationMatrix2D((128, 128), 25, 1.7)
    np.testing.assert_allclose(_apply(frame_matrix(_apply(rot, FACE)), _apply(rot, FACE)), _apply(m, FACE), atol=1e-6)


def test_jitter_moves_the_frame():
    base = _apply(frame_matrix(FACE), FACE[30])
    moved = _apply(frame_matrix(FACE, (0.0, 0.0, 0.5, 0.0)), FACE[30])
    np.testing.assert_allclose(base - moved, [0.5 * FRAME_UNIT, 0.0], atol=1e-6)
    bigger = frame_matrix(FACE, (np.log(2), 0, 0, 0))
    np.testing.assert_allclose(np.sqrt(np.linalg.det(bigger[:, :2])), 2 * np.sqrt(np.linalg.det(frame_matrix(FACE)[:, :2])))


def test_frame_round_trip():
    img = np.zeros((256, 256, 3), np.uint8)
    cv2.circle(img, (135, 165), 30, (255, 255, 255), -1)
    m = frame_matrix(FACE)
    frame = to_frame(img, m)
    assert frame.shape == (FRAME_SIZE, FRAME_SIZE, 3)
    back = from_frame(frame[..., 0].astype(np.float32) / 255, m, img.shape) > 0.5
    disk = img[..., 0] > 0
    assert (back & disk).sum() / (back | disk).sum() > 0.9


def test_clean_region_keeps_the_largest_piece_fills_holes_and_spares_the_eyes():
    raw = np.zeros((256, 256), bool)
    raw[121:215, 40:190] = True  # its top edge runs through the eyes (rows 117-127)
    raw[150:160, 120:130] = False  # a hole
    raw[5:15, 5:15] = True  # a speck
    out = clean_region(raw, FACE, seam=0.0)
    assert out[155, 125] and not out[10, 10]
    assert not out[122, 95] and not out[123, 160]  # eye centres
    grown = clean_region(raw, FACE, seam=0.1)
    assert grown.sum() > out.sum() and (grown | ~out).all()
    assert not clean_region(raw, FACE, seam=0.0, eyes=False)[10, 10]
    # a region that closes around an "eye" says the eye landmarks sit on the fabric: no hole is cut
    around = np.zeros((256, 256), bool)
    around[100:215, 40:190] = True
    assert clean_region(around, FACE, seam=0.0)[122, 95]


def test_shipped_weights_are_small_safe_and_fast(one_thread):
    path = segment.default_model_path()
    assert path.is_file() and path.stat().st_size <= 3 * 2 ** 20
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert set(blob) == {"decoder", "meta"}
    model = load_segmenter()
    assert load_segmenter() is model  # loaded once
    frame = np.full((1, FRAME_SIZE, FRAME_SIZE, 3), 128, np.uint8)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        prob = model.probabilities(frame)
        times.append(time.perf_counter() - t)
    assert prob.shape == (1, FRAME_SIZE, FRAME_SIZE) and np.isfinite(prob).all()
    assert min(times) < 1.0  # 12-17 ms on one thread here; generous for a loaded CI machine


def test_missing_weights_say_how_to_get_them(tmp_path):
    from stylegan_unmask.errors import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="train-segmenter"):
        load_segmenter(tmp_path / "none.pt")


def test_segment_face_checks_its_input():
    with pytest.raises(ValueError):
        segment_face(np.zeros((10, 10), np.uint8), FACE)


def test_real_masked_photos_are_segmented(dev_data_dir):
    """A few hand-labelled real photos: the region covers most of the real mask and little else."""
    from stylegan_unmask.evaluation.masks import coverage_overreach, find_paired_items
    from stylegan_unmask.errors import NoFaceError
    from stylegan_unmask.images import load_image
    from stylegan_unmask.face.landmarks import find_landmarks

    covs, overs = [], []
    for item in find_paired_items(dev_data_dir / "real_masks")[:12]:
        img = load_image(item.masked).pixels
        try:
            pts = find_landmarks(img).points
        except NoFaceError:
            continue
        gt = load_image(item.gt).pixels.max(axis=2) > 127
        cov, _, over = coverage_overreach(segment_face(img, pts).region, gt)
        covs.append(cov)
        overs.append(over)
    assert len(covs) >= 8
    assert np.median(covs) > 0.9 and np.median(overs) < 0.2


# ----------------------------------------------------------------------------- the front end's use of it


def test_face_options_know_the_regions():
    from stylegan_unmask.face.frontend import DEFAULT_REGION, FaceOptions

    assert FaceOptions().region == DEFAULT_REGION == "segment"
    assert FaceOptions(region="landmarks").region == "landmarks"
    with pytest.raises(ValueError, match="region"):
        FaceOptions(region="polygon")


def test_padding_beyond_the_photo_that_touches_the_region_is_hidden_too():
    from stylegan_unmask.face.frontend import _with_padding_beyond

    region = np.zeros((10, 10), bool)
    region[6:9, 3:7] = True
    valid = np.ones((10, 10), bool)
    valid[9:] = False  # the photo ends above the last row
    valid[:2, :2] = False  # a corner of padding far from the region
    out = _with_padding_beyond(region, valid)
    assert out[9].all() and out[6:9, 3:7].all() and not out[:2, :2].any() and not out[0, 5]


def test_an_empty_segmentation_falls_back_to_the_landmark_region(monkeypatch):
    from stylegan_unmask.face import frontend

    empty = segment.Segmentation(np.zeros((256, 256), bool), np.zeros((256, 256), np.float32), np.eye(2, 3),
                                 np.zeros((FRAME_SIZE, FRAME_SIZE, 3), np.uint8))
    monkeypatch.setattr(segment, "segment_face", lambda image, points: empty)
    m, source = frontend.face_region(np.zeros((256, 256, 3), np.uint8), FACE, "segment")
    assert m.any() and source.startswith("landmarks") and "no face mask" in source
    m2, source2 = frontend.face_region(np.zeros((256, 256, 3), np.uint8), FACE, "landmarks")
    assert source2 == "landmarks" and (m == m2).all()


def test_faces_cut_by_the_frame_are_found_on_a_padded_retry(dev_data_dir):
    """A tight real crop where the whole detector chain sees no face until the photo is padded."""
    from stylegan_unmask.errors import NoFaceError
    from stylegan_unmask.evaluation.masks import coverage_overreach
    from stylegan_unmask.face import detect
    from stylegan_unmask.face.landmarks import find_landmarks
    from stylegan_unmask.images import load_image

    item = dev_data_dir / "real_masks" / "faceMask1_ttt_196_1_2"
    img = load_image(item / "masked.jpg").pixels
    assert detect.detect_faces(img, frame_retries=False) == []
    faces = detect.detect_faces(img)
    assert faces and faces[0].backend == "centerface"
    pts = find_landmarks(img).points
    gt = load_image(item / "gt_mask.png").pixels.max(axis=2) > 127
    cov, _, over = coverage_overreach(segment_face(img, pts).region, gt)
    assert cov > 0.9 and over < 0.15
    with pytest.raises(NoFaceError, match="padded"):
        find_landmarks(np.full((200, 200, 3), 127, np.uint8))


@pytest.mark.parametrize("pair", ["255", "297", "422", "449"])
def test_region_spares_every_visible_eye_pixel(dev_data_dir, pair):
    """The dev pairs whose region touches the clean photo's eyes: the pasted mask itself lies on
    those eye pixels; the eye the mask leaves visible is never touched."""
    from stylegan_unmask.evaluation.masks import eye_area, eye_overlap
    from stylegan_unmask.face.landmarks import find_landmarks
    from stylegan_unmask.images import load_image

    folder = dev_data_dir / "paired" / "prajnasb" / pair
    masked, clean = load_image(folder / "masked.jpg").pixels, load_image(folder / "clean.jpg").pixels
    gt = load_image(folder / "gt_mask.png").pixels.max(axis=2) > 127
    region = segment_face(masked, find_landmarks(masked).points).region
    clean_points = find_landmarks(clean).points
    assert (eye_area(clean_points, gt.shape) & gt).any(), "the pasted mask covers part of an eye"
    assert not eye_overlap(region, clean_points, gt)
