"""The evaluation's building blocks: metric definitions, statistics, fill methods, pair loading, mask drawing.

Fast and mostly self-contained (synthetic images); the mask-drawing tests use
one dev face and skip without ../shared.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from stylegan_unmask.errors import InputImageError, UnmaskError
from stylegan_unmask.evaluation import metrics as M
from stylegan_unmask.evaluation import stats as S
from stylegan_unmask.evaluation.data import Pair, find_pairs, load_pair
from stylegan_unmask.evaluation.methods import (FillInput, FillMethod, MethodContext, _REGISTRY, build_methods,
                                                parse_methods, register_method)


def _images(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return a, b


# ----------------------------------------------------------------------------- pixel metrics


def test_psnr_in_mask_follows_the_documented_formula():
    clean = np.full((20, 30, 3), 100, np.uint8)
    result = clean.copy()
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:15] = True
    result[mask] = (110, 90, 100)  # squared errors 100, 100, 0 -> MSE 200/3 inside the mask
    result[0, 0] = 0  # outside the mask: must not count
    expected = 10 * math.log10(255 ** 2 / (200 / 3))
    assert M.psnr(result, clean, mask) == pytest.approx(expected, abs=1e-9)
    whole = (np.sum((result.astype(float) - clean) ** 2)) / result.size
    assert M.psnr(result, clean) == pytest.approx(10 * math.log10(255 ** 2 / whole), abs=1e-9)
    assert M.psnr(clean, clean, mask) == M.PSNR_CAP
    with pytest.raises(ValueError):
        M.psnr(result, clean, np.zeros((20, 30), bool))


def test_ssim_in_mask_equals_the_full_map_averaged_over_the_mask():
    a, b = _images(90, 120)
    b = np.clip(a.astype(int) + np.random.default_rng(1).integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    for rect in [(30, 60, 40, 90), (0, 25, 0, 30), (70, 90, 100, 120)]:  # middle, touching edges
        mask = np.zeros(a.shape[:2], bool)
        mask[rect[0]:rect[1], rect[2]:rect[3]] = True
        _, full_map = M.ssim_map(a, b)
        assert M.ssim_in_mask(a, b, mask) == pytest.approx(full_map[mask].mean(), abs=1e-9)
    assert M.ssim_in_mask(a, a, mask) == pytest.approx(1.0)
    whole, _ = M.ssim_map(a, b)
    assert 0 < whole < 1


def test_mask_crop_box_is_square_around_the_mask_and_crops_past_the_edge():
    mask = np.zeros((100, 50), bool)
    mask[80:100, 30:50] = True  # touches the bottom-right corner
    x0, y0, side = M.mask_crop_box(mask)
    assert side == 24 and x0 <= 30 and y0 <= 80 and x0 + side >= 50 and y0 + side >= 100
    img = np.zeros((100, 50, 3), np.uint8)
    img[:, :, 0] = np.arange(50, dtype=np.uint8)[None, :]
    crop = M.crop_resized(img, (x0, y0, side), 48)
    assert crop.shape == (48, 48, 3) and crop[:, -1, 0].min() >= 45  # edge pixels repeated, not black


@pytest.fixture(scope="module")
def lpips_scorer():
    from stylegan_unmask.errors import WeightsMissingError

    pytest.importorskip("torch")
    try:
        return M.LPIPSScorer("cpu", size=64)
    except WeightsMissingError as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")


def test_lpips_in_mask_sees_only_the_ground_truth_region(lpips_scorer):
    clean, noise = _images(96, 96)
    clean = cv2.GaussianBlur(clean, (0, 0), 3)
    gt = np.zeros((96, 96), bool)
    gt[40:70, 30:70] = True
    outside_only = np.where(gt[:, :, None], clean, noise)  # wrong everywhere except inside gt
    inside_wrong = np.where(gt[:, :, None], noise, clean)
    d = lpips_scorer([clean, outside_only, inside_wrong], clean, gt)
    assert d[0] == pytest.approx(0.0, abs=1e-6) and d[1] == pytest.approx(0.0, abs=1e-6)
    assert d[2] > 0.05


def test_pairwise_lpips_compares_completions_only_inside_the_ground_truth(lpips_scorer):
    clean, noise = _images(96, 96)
    clean = cv2.GaussianBlur(clean, (0, 0), 3)
    gt = np.zeros((96, 96), bool)
    gt[40:70, 30:70] = True
    a = np.where(gt[:, :, None], noise, clean)
    b = np.where(gt[:, :, None], 255 - noise, noise)  # differs from a outside gt too: must not count
    same_inside = np.where(gt[:, :, None], noise, 255 - clean)
    d = lpips_scorer.pairwise([a, b, same_inside], clean, gt)
    assert len(d) == 3  # (a, b), (a, same_inside), (b, same_inside)
    assert d[1] == pytest.approx(0.0, abs=1e-6) and d[0] > 0.05
    assert d[0] == pytest.approx(lpips_scorer([b], a, gt)[0], abs=1e-6)
    assert lpips_scorer.pairwise([a], clean, gt) == []


def test_completions_are_scored_chosen_first_start_and_oracle():
    from stylegan_unmask.errors import WeightsMissingError
    from stylegan_unmask.evaluation.methods import Completion
    from stylegan_unmask.evaluation.samples import score_completions

    pytest.importorskip("torch")
    try:
        scorer = M.Scorer("cpu", identity=False)
    except WeightsMissingError as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")
    clean, noise = _images(96, 96)
    clean = cv2.GaussianBlur(clean, (0, 0), 3)
    gt = np.zeros((96, 96), bool)
    gt[40:70, 30:70] = True
    fills = [np.where(gt[:, :, None], img, clean) for img in (noise, 255 - noise, clean)]
    # ranked by visible loss: start 2, start 0, start 1 (the exact fill, the oracle)
    completions = [Completion(fills[0], 2, 0.1), Completion(fills[1], 0, 0.2), Completion(fills[2], 1, 0.3)]
    row, records = score_completions(scorer, completions, clean, gt, M.FaceInResult(False))
    assert (row["samples"], row["chosen_sample"], row["oracle_sample"]) == (3, 2, 1)
    assert row["lpips_mask"] == records[0]["lpips_mask"] and row["psnr_full"] is not None
    assert row["lpips_mask_first"] == records[1]["lpips_mask"] and row["psnr_mask_first"] == records[1]["psnr_mask"]
    assert row["lpips_mask_oracle"] == pytest.approx(0.0, abs=1e-6) and row["psnr_mask_oracle"] == M.PSNR_CAP
    assert row["oracle_beats_first"] is True
    assert row["chosen_beats_first"] is (records[0]["lpips_mask"] < records[1]["lpips_mask"])
    assert row["spread"] == pytest.approx(np.mean(scorer.lpips.pairwise(fills, clean, gt)))
    assert [r["rank"] for r in records] == [1, 2, 3] and [r["sample"] for r in records] == [2, 0, 1]


def test_identity_figures_and_shares():
    a = np.zeros(128)
    b = np.zeros(128)
    b[0] = 0.5
    far = np.zeros(128)
    far[0] = 0.7
    clean = M.FaceInResult(True, (0, 0, 1, 1), a)
    assert M.identity_figures(M.FaceInResult(True, None, b), clean) == {
        "face_found": True, "identity_distance": pytest.approx(0.5), "identity_same": True}
    assert M.identity_figures(M.FaceInResult(True, None, far), clean)["identity_same"] is False
    lost = M.identity_figures(M.FaceInResult(False), clean)
    assert lost == {"face_found": False, "identity_distance": None, "identity_same": False}
    assert M.identity_figures(M.FaceInResult(True, None, b), M.FaceInResult(False))["identity_same"] is None


# ----------------------------------------------------------------------------- statistics


def _rows(method, values, metric="psnr_mask", status="ok"):
    return [{"id": f"p{i}", "method": method, "status": status, metric: v} for i, v in enumerate(values)]


def test_summary_median_mean_interval_and_win_share():
    rows = (_rows("ours", [10, 12, 14, 30]) + _rows("telea", [11, 11, 15, 20])
            + [{"id": "p9", "method": "telea", "status": "failed", "psnr_mask": 99}])
    got = {(s.method, s.metric): s for s in S.summarize(rows, ["ours", "telea"], metrics=["psnr_mask"], n_boot=500)}
    o, t = got[("ours", "psnr_mask")], got[("telea", "psnr_mask")]
    assert (o.n, o.median, o.mean) == (4, 13.0, 16.5)
    assert (t.n, t.median, t.mean) == (4, 13.0, 14.25)  # the failed row is not counted
    assert o.ci_low <= o.mean <= o.ci_high and o.ci_low >= 10 and o.ci_high <= 30
    assert t.ours_beats == pytest.approx(0.5) and t.ours_beats_n == 4  # 12>11, 30>20; 10<11, 14<15
    assert o.ours_beats is None


def test_win_share_respects_lower_is_better_and_missing_values():
    rows = (_rows("ours", [0.1, 0.5, None], "lpips_mask") + _rows("ns", [0.2, 0.4, 0.3], "lpips_mask"))
    s = {x.method: x for x in S.summarize(rows, ["ours", "ns"], metrics=["lpips_mask"], n_boot=0)}
    assert s["ns"].ours_beats == pytest.approx(0.5) and s["ns"].ours_beats_n == 2
    assert s["ours"].ci_low is None  # no bootstrap asked


def test_bootstrap_interval_is_reproducible_and_narrows_with_more_data():
    rng = np.random.default_rng(3)
    small, big = rng.normal(0, 1, 20), rng.normal(0, 1, 2000)
    assert S.bootstrap_mean_ci(small, 1000, seed=1) == S.bootstrap_mean_ci(small, 1000, seed=1)
    lo_s, hi_s = S.bootstrap_mean_ci(small, 1000)
    lo_b, hi_b = S.bootstrap_mean_ci(big, 1000)
    assert hi_b - lo_b < (hi_s - lo_s) / 3
    assert S.bootstrap_mean_ci([1.0]) == (None, None)


def test_format_table_lists_every_method_and_the_win_rows():
    rows = _rows("ours", [10, 12]) + _rows("telea", [11, 13]) + _rows("none", [5, 6])
    names = ["ours", "telea", "none"]
    text = S.format_table(S.summarize(rows, names, n_boot=100), names)
    assert "median" in text and "ours" in text and "telea" in text and "none" in text
    assert "better than" in text
    md = S.format_table(S.summarize(rows, names, n_boot=100), names, markdown=True)
    assert md.count("| ours |") == 2 and "| telea |" in md


def test_samples_table_sets_first_chosen_and_oracle_side_by_side():
    from stylegan_unmask.evaluation.samples import format_samples_table, summarize_samples

    rows = [{"id": f"p{i}", "method": "ours", "status": "ok", "lpips_mask": c, "lpips_mask_first": f,
             "lpips_mask_oracle": o, "spread": 0.1, "oracle_beats_first": o < f, "chosen_beats_first": c < f}
            for i, (c, f, o) in enumerate([(0.3, 0.35, 0.25), (0.2, 0.2, 0.2), (0.4, 0.3, 0.3)])]
    summaries = S.summarize(rows, ["ours"], n_boot=50) + summarize_samples(rows, n_boot=50)
    text = format_samples_table(summaries, 4)
    assert "oracle (best of 4 by LPIPS_m; needs the ground truth)" in text and "first start" in text
    assert "chosen on 33% of 3 photos, oracle on 33% of 3" in text
    lines = {line.split("(")[0].strip(): line for line in text.splitlines()}
    assert "0.250" in lines["oracle"] and "0.300" in lines["first start"] and "0.100" in lines["spread"]


# ----------------------------------------------------------------------------- methods


def test_method_registry_parses_and_rejects_names():
    assert parse_methods("ours, telea,ns,ours") == ["ours", "telea", "ns"]
    with pytest.raises(UnmaskError, match="unknown fill method 'lama'"):
        parse_methods("ours,lama")
    with pytest.raises(UnmaskError):
        parse_methods(" , ")


def test_a_new_method_joins_through_the_registry():
    @register_method("test-invert", label="inverted")
    class Invert(FillMethod):
        def fill_one(self, item):
            out = item.photo.copy()
            out[item.region] = 255 - out[item.region]
            return out

    try:
        photo, _ = _images()
        region = np.zeros(photo.shape[:2], bool)
        region[10:20, 10:30] = True
        (m,) = build_methods(parse_methods("test-invert"), MethodContext())
        (out,) = m.fill_batch([FillInput("k", photo, region)])
        assert np.array_equal(out.image[region], 255 - photo[region])
        assert np.array_equal(out.image[~region], photo[~region])
    finally:
        _REGISTRY.pop("test-invert", None)


def test_a_method_error_is_returned_per_photo():
    @register_method("test-broken")
    class Broken(FillMethod):
        def fill_one(self, item):
            if item.key == "bad":
                raise RuntimeError("boom")
            return item.photo[:, :, :1]  # wrong shape: reported, not silently used

    try:
        photo, _ = _images()
        region = np.ones(photo.shape[:2], bool)
        (m,) = build_methods(["test-broken"], MethodContext())
        outs = m.fill_batch([FillInput("bad", photo, region), FillInput("odd", photo, region)])
        assert isinstance(outs[0], RuntimeError) and isinstance(outs[1], UnmaskError)
    finally:
        _REGISTRY.pop("test-broken", None)


def test_opencv_baselines_fill_only_the_region_and_match_full_image_inpainting():
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 4)
    region = np.zeros((120, 160), bool)
    cv2.ellipse(region.view(np.uint8), (90, 70), (30, 20), 0, 0, 360, 1, -1)
    region = region.view(bool)
    telea, ns, none = build_methods(["telea", "ns", "none"], MethodContext())
    item = FillInput("k", photo, region)
    for method, flag in ((telea, cv2.INPAINT_TELEA), (ns, cv2.INPAINT_NS)):
        (out,) = method.fill_batch([item])
        full = cv2.inpaint(photo, region.astype(np.uint8) * 255, 3.0, flag)
        assert np.array_equal(out.image, full)  # the crop is an exact shortcut
        assert np.array_equal(out.image[~region], photo[~region])
        assert not np.array_equal(out.image[region], photo[region])
    (out,) = none.fill_batch([item])
    assert np.array_equal(out.image, photo)


# ----------------------------------------------------------------------------- pairs


def _write_pair(folder, masked_size=(40, 30), clean_size=(40, 30), gt_fill=True):
    folder.mkdir(parents=True)
    Image.new("RGB", masked_size, (10, 20, 30)).save(folder / "masked.png")
    Image.new("RGB", clean_size, (10, 20, 30)).save(folder / "clean.png")
    gt = Image.new("L", masked_size, 0)
    if gt_fill:
        gt.paste(255, (5, 5, 20, 20))
    gt.save(folder / "gt_mask.png")


def test_pairs_are_found_sorted_and_bad_pairs_name_their_file(tmp_path):
    _write_pair(tmp_path / "src" / "b")
    _write_pair(tmp_path / "src" / "a", clean_size=(41, 30))
    _write_pair(tmp_path / "src" / "c", gt_fill=False)
    pairs = find_pairs(tmp_path)
    assert [p.key for p in pairs] == ["src/a", "src/b", "src/c"]
    ok = load_pair(pairs[1])
    assert ok.gt.sum() == 15 * 15 and ok.clean.shape == (30, 40, 3)
    with pytest.raises(InputImageError, match=r"clean\.png.*41x30.*40x30"):
        load_pair(pairs[0])
    with pytest.raises(InputImageError, match=r"gt_mask\.png.*empty"):
        load_pair(pairs[2])
    with pytest.raises(InputImageError, match="clean"):
        load_pair(Pair("x", tmp_path, pairs[1].masked, None, pairs[1].gt_mask))
    with pytest.raises(InputImageError, match="no pairs"):
        find_pairs(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


# ----------------------------------------------------------------------------- synthetic masks


@pytest.fixture(scope="module")
def face(dev_data_dir):
    from stylegan_unmask.images import load_image
    from stylegan_unmask.face.landmarks import find_landmarks

    path = dev_data_dir / "faces" / "celebahq_female_031796.jpg"
    if not path.is_file():
        pytest.skip(f"dev face {path} is missing")
    pixels = np.asarray(Image.open(path).convert("RGB").resize((384, 384), Image.LANCZOS))
    return pixels, find_landmarks(pixels).points


@pytest.mark.parametrize("style", ["surgical", "cloth", "kn95", "black"])
def test_drawn_mask_changes_only_gt_covers_mouth_and_nose_never_eyes(face, style):
    from stylegan_unmask.evaluation import synth_masks as SM

    clean, pts = face
    for seed in range(3):
        rng = SM.face_rng(seed, "face")
        st = SM.choose_style(rng, [style])
        out = SM.draw_mask(clean, pts, rng, style=st)
        assert out.style.style == style
        assert np.array_equal(out.masked[~out.gt], clean[~out.gt])
        changed = (out.masked != clean).any(axis=2)
        assert changed[out.gt].mean() > 0.9  # the GT is what really changed, not a generous outline
        for x, y in SM.must_cover(pts):
            assert out.gt[int(round(y)), int(round(x))]
        eyes = SM.eye_zone(pts, clean.shape, clearance=0.05)
        assert eyes.any() and not (out.gt & eyes).any()
        assert 0.08 < out.gt.mean() < 0.5


def test_masks_are_reproducible_per_seed_and_face(face):
    from stylegan_unmask.evaluation import synth_masks as SM

    clean, pts = face
    a = SM.draw_mask(clean, pts, SM.face_rng(7, "id1"))
    b = SM.draw_mask(clean, pts, SM.face_rng(7, "id1"))
    c = SM.draw_mask(clean, pts, SM.face_rng(8, "id1"))
    assert np.array_equal(a.masked, b.masked) and np.array_equal(a.gt, b.gt)
    assert not np.array_equal(a.masked, c.masked)
    with pytest.raises(UnmaskError, match="choose from"):
        SM.parse_styles("surgical,plague-doctor")
