"""eval-masks (evaluation/masks.py): its metrics, its bookkeeping, and the dev-set acceptance figures."""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import FRONTAL_FACE as FACE
from PIL import Image

from stylegan_unmask.errors import InputImageError, NoFaceError, WeightsMissingError
from stylegan_unmask.evaluation.masks import (TARGETS, _disk, coverage_overreach, evaluate_folder, eye_area,
                                              eye_overlap, find_paired_items, find_plain_images, format_report, gt_body)
from stylegan_unmask.face.mask import DEFAULT_MARGIN, mask_from_landmarks

SHAPE = (256, 256)


def test_metrics_on_toy_masks():
    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 55) ** 2 <= 25 ** 2  # the mask body
    gt = disk.copy()
    gt[50, 0:30] = True  # a strap: thin line, not part of the body
    body = gt_body(gt)
    assert (body == disk).all()
    ours = body & (xx < 55)  # the left half of the body
    cov, full, over = coverage_overreach(ours, gt)
    assert cov == pytest.approx(ours.sum() / body.sum()) and 0.45 < cov < 0.55 and over == 0.0
    assert full == pytest.approx(ours.sum() / gt.sum()) and full < cov
    ours = (yy >= 20) & (yy < 80)  # all of it, plus area around it and the strap
    cov, full, over = coverage_overreach(ours, gt)
    assert cov == 1.0 and full == 1.0
    assert over == pytest.approx((ours.sum() - gt.sum()) / ours.sum())
    with pytest.raises(ValueError):
        coverage_overreach(ours[:50], gt)


def test_gt_body_matches_the_dataset_recipe_at_the_borders():
    """The OpenCV opening equals scipy's binary_opening (outside = empty), also where the mask meets the edge."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(1)
    gt = ndi.gaussian_filter(rng.random((90, 120)), 6) > 0.5
    gt[:, :3] = True  # touches the left edge
    gt[40, 60:] = True  # a strap running off the right edge
    opened = ndi.binary_opening(gt, structure=_disk(4))
    labels, n = ndi.label(opened)
    sizes = ndi.sum(opened, labels, range(1, n + 1))
    reference = ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    assert (gt_body(gt) == reference).all()


def _write_pair(folder, gt, photo=None):
    folder.mkdir(parents=True)
    h, w = gt.shape
    Image.fromarray(np.full((h, w, 3), 90, np.uint8) if photo is None else photo).save(folder / "masked.jpg")
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(folder / "clean.png")
    Image.fromarray(gt.astype(np.uint8) * 255).save(folder / "gt_mask.png")


def test_evaluate_folder_logic_with_given_landmarks(tmp_path):
    """The bookkeeping of eval-masks (sources, flags, failures, figures) without a detector."""
    truth = mask_from_landmarks(FACE, SHAPE, margin=0.1)  # GT: the region a 0.1 margin draws
    root = tmp_path / "paired"
    _write_pair(root / "a" / "1", truth)
    _write_pair(root / "a" / "2", truth)
    _write_pair(root / "a" / "3", truth)                  # flagged in index.csv
    _write_pair(root / "b" / "x" / "9", truth)            # deeper nesting still found
    _write_pair(root / "b" / "noface", truth)
    (root / "a" / "index.csv").write_text("id,other_pasted_masks_outside_gt\n1,0\n2,0\n3,1\n")
    items = find_paired_items(root)
    assert [(i.source, i.id, i.flagged) for i in items] == [
        ("a", "1", False), ("a", "2", False), ("a", "3", True), ("b", "noface", False), ("b", "9", False)]

    def given(image, path):
        if "noface" in str(path):
            raise NoFaceError(path, "no face found by test")
        return FACE

    rep = evaluate_folder(root, margin=0.1, landmark_fn=given, progress=False)
    assert rep.kind == "paired" and [s.name for s in rep.summaries] == ["a", "b", "all"]
    o = rep.overall
    assert (o.n, o.detected, o.measured) == (5, 4, 3)
    assert o.coverage_median == 1.0 and o.overreach_median == 0.0 and o.coverage_full_p10 == 1.0
    assert o.eyes_checked == 3 and o.eyes_touched == 0
    text = format_report(rep)
    assert "a/3" in text and "noface" in text and "no face found by test" in text
    assert rep.meets_targets() == {"detection_rate": False, "coverage_median": True, "coverage_p10": True,
                                   "overreach_median": True}
    wide = evaluate_folder(root, margin=0.5, landmark_fn=given, progress=False, eyes=False)
    assert wide.overall.overreach_median > 0.2 and wide.overall.eyes_checked == 0
    assert len(evaluate_folder(root, landmark_fn=given, progress=False, limit=2).items) == 2

    def unavailable(image, path):
        raise WeightsMissingError("face-alignment weights are not installed")

    with pytest.raises(WeightsMissingError):  # a backend that cannot run stops the run, not 5 failures
        evaluate_folder(root, landmark_fn=unavailable, progress=False)


def test_plain_folder_discovery(tmp_path):
    for name in ("b.jpg", "a.png", "sub/c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "index.csv").write_text("file,source\na.png,cam\n")
    found = [(s, p.relative_to(tmp_path).as_posix()) for s, p in find_plain_images(tmp_path)]
    assert found == [("cam", "a.png"), ("all", "b.jpg"), ("sub", "sub/c.jpg")]
    assert find_paired_items(tmp_path) == []
    with pytest.raises(InputImageError):
        evaluate_folder(tmp_path / "missing", landmark_fn=lambda im, p: FACE, progress=False)


# ----------------------------------------------------------------------------- real data


def _real_landmarks_available():
    try:
        import stylegan_unmask.face.landmarks  # noqa: F401
    except ImportError as e:  # pragma: no cover - only while landmarks.py is missing
        pytest.skip(f"stylegan_unmask.face.landmarks not importable: {e}")


@pytest.fixture(scope="module")
def paired_report(dev_data_dir):
    """All 207 dev pairs, landmarks found on the MASKED photos (~60 s on 2 cores, eye check included)."""
    _real_landmarks_available()
    t = time.time()
    report = evaluate_folder(dev_data_dir / "paired", progress=False)
    print(f"\n{format_report(report)}\n({time.time() - t:.1f} s)")
    return report


@pytest.mark.slow
def test_paired_dev_set_meets_targets(paired_report):
    """The issue's acceptance figures on the full dev paired set, default margin."""
    o = paired_report.overall
    assert paired_report.margin == DEFAULT_MARGIN and o.n == 207 and o.measured >= 195
    assert o.detection_rate >= TARGETS["detection_rate"]
    assert o.coverage_median >= TARGETS["coverage_median"], o
    assert o.coverage_p10 >= TARGETS["coverage_p10"], o
    assert o.overreach_median <= TARGETS["overreach_median"], o
    assert o.coverage_full_p10 >= 0.93, "ear straps included, coverage must still be high"


@pytest.mark.slow
def test_paired_dev_set_keeps_off_the_eyes(paired_report):
    """Measured against the eyes found on the CLEAN photos: at most 3 % of photos touched, none badly."""
    o = paired_report.overall
    assert o.eyes_checked >= 190
    assert o.eyes_touched <= 0.03 * o.eyes_checked, o
    worst = max((r.eye_overlap or 0.0) for r in paired_report.items)
    assert worst < 0.5


@pytest.mark.slow
def test_masked_real_detection(dev_data_dir):
    """Real masked photos (no GT): landmarks found on at least 95 % (~15 s)."""
    _real_landmarks_available()
    report = evaluate_folder(dev_data_dir / "masked_real", progress=False)
    assert report.kind == "plain" and report.overall.n == 148
    assert {s.name for s in report.summaries} == {"cdeb7", "fm12k", "rmfd", "all"}
    assert report.overall.detection_rate >= 0.95, [r.id for r in report.failures]


def test_visible_eye_overlap_counts_only_the_eye_the_mask_leaves_bare():
    eyes = eye_area(FACE, (256, 256))
    ys = np.nonzero(eyes)[0]
    region = np.zeros((256, 256), bool)
    region[ys.min() + (ys.max() - ys.min()) // 2:] = True  # the lower half of the eyes and all below
    gt_over_eyes = region.copy()
    assert 0 < eye_overlap(region, FACE) < 1
    assert eye_overlap(region, FACE, gt_over_eyes) == 0.0  # the fabric lies on those eye pixels
    assert eye_overlap(region, FACE, np.zeros_like(region)) == eye_overlap(region, FACE)
