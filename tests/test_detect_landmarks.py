"""Face detection and landmarks on masked faces (CenterFace + dlib; FAN offline behaviour)."""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from stylegan_unmask import detect, landmarks
from stylegan_unmask.errors import NoFaceError, UnmaskError, WeightsMissingError
from stylegan_unmask.images import load_image


def _paired_dirs(dev_data_dir, n):
    dirs = sorted(glob.glob(str(dev_data_dir / "paired" / "prajnasb" / "*")))
    step = max(1, len(dirs) // n)
    return dirs[::step][:n]


def _reference_points(clean_pixels):
    """dlib HOG + predictor on the clean twin: what the masked-photo landmarks should approach."""
    faces = detect.detect_dlib_hog(clean_pixels)
    if not faces:
        return None
    best = max(faces, key=lambda f: f.area)
    return landmarks._dlib_landmarks(clean_pixels, best.box)


def test_centerface_finds_masked_faces_where_hog_fails(dev_data_dir):
    files = sorted(glob.glob(str(dev_data_dir / "masked_real" / "cdeb7_*.jpg")))[:20]
    assert len(files) == 20
    images = [load_image(f).pixels for f in files]
    cf = sum(bool(detect.detect_centerface(im)) for im in images)
    hog = sum(bool(detect.detect_dlib_hog(im)) for im in images)
    assert cf >= 17, f"CenterFace found only {cf}/20 masked faces"
    assert cf > hog


def test_masked_landmarks_match_the_clean_twin(dev_data_dir):
    eye_err, jaw_err, found = [], [], 0
    dirs = _paired_dirs(dev_data_dir, 16)
    for d in dirs:
        masked = load_image(f"{d}/masked.jpg").pixels
        clean = load_image(glob.glob(f"{d}/clean.*")[0]).pixels
        lm = landmarks.find_landmarks(masked, backend="dlib", path=f"{d}/masked.jpg")
        found += 1
        assert lm.points.shape == (68, 2) and lm.backend == "dlib"
        ref = _reference_points(clean)
        if ref is None:
            continue
        iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
        err = np.linalg.norm(lm.points - ref, axis=1) / iod
        eye_err.append(err[36:48].mean())
        jaw_err.append(err[0:17].mean())
    assert found == len(dirs)
    assert len(eye_err) >= 8
    assert np.median(eye_err) < 0.08, eye_err
    assert np.median(jaw_err) < 0.25, jaw_err


def test_largest_face_first_and_face_index(dev_data_dir):
    img = load_image(sorted(glob.glob(str(dev_data_dir / "masked_real" / "cdeb7_*.jpg")))[0]).pixels
    h, w = img.shape[:2]
    # Two copies side by side, the right one half size: two faces, the left one larger.
    small = img[::2, ::2]
    canvas = np.full((h, w + small.shape[1], 3), 127, np.uint8)
    canvas[:h, :w] = img
    canvas[: small.shape[0], w:] = small
    faces = detect.detect_faces(canvas)
    assert len(faces) >= 2
    assert faces[0].area >= faces[1].area
    first = landmarks.find_landmarks(canvas, backend="dlib")
    second = landmarks.find_landmarks(canvas, backend="dlib", face_index=1)
    assert first.num_faces >= 2
    assert first.points[:, 0].mean() < w <= second.points[:, 0].mean()
    with pytest.raises(NoFaceError, match="face index 9"):
        landmarks.find_landmarks(canvas, backend="dlib", face_index=9, path="two.png")


def test_box_and_points_bypass_detection(dev_data_dir, monkeypatch):
    d = _paired_dirs(dev_data_dir, 1)[0]
    img = load_image(f"{d}/masked.jpg").pixels
    auto = landmarks.find_landmarks(img, backend="dlib")
    monkeypatch.setattr(detect, "detect_faces", lambda *a, **k: pytest.fail("detection must be skipped"))
    boxed = landmarks.find_landmarks(img, backend="dlib", box=auto.box)
    assert boxed.detector == "given" and boxed.points.shape == (68, 2)
    given = landmarks.find_landmarks(img, points=auto.points)
    assert given.backend == "given"
    np.testing.assert_array_equal(given.points, auto.points)
    with pytest.raises(UnmaskError, match="68x2"):
        landmarks.find_landmarks(img, points=np.zeros((5, 2)))
    with pytest.raises(UnmaskError, match="x1 > x0"):
        landmarks.find_landmarks(img, backend="dlib", box=(10, 10, 5, 20))


@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face_names_the_file(kind):
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), 128, np.uint8) if kind == "grey" else rng.integers(0, 256, (240, 320, 3), np.uint8)
    with pytest.raises(NoFaceError) as info:
        landmarks.find_landmarks(img, backend="dlib", path="holiday.jpg")
    assert "holiday.jpg" in str(info.value) and "no face found" in str(info.value)


def test_very_large_photo_is_detected_on_a_copy(dev_data_dir, monkeypatch):
    d = _paired_dirs(dev_data_dir, 1)[0]
    img = load_image(f"{d}/masked.jpg").pixels
    big = np.kron(img, np.ones((8, 8, 1), np.uint8))  # > DETECTION_MAX_SIDE
    assert max(big.shape[:2]) > detect.DETECTION_MAX_SIDE
    seen = []
    real = detect.detect_centerface
    monkeypatch.setattr(detect, "detect_centerface", lambda im, **k: seen.append(im.shape) or real(im, **k))
    small_lm = landmarks.find_landmarks(img, backend="dlib", detector="centerface")
    big_lm = landmarks.find_landmarks(big, backend="dlib", detector="centerface")
    assert max(seen[-1][:2]) <= detect.DETECTION_MAX_SIDE
    iod = np.linalg.norm(small_lm.points[36:42].mean(0) - small_lm.points[42:48].mean(0))
    err = np.linalg.norm(big_lm.points[36:48] / 8 - small_lm.points[36:48], axis=1).mean() / iod
    assert err < 0.1


def test_landmark_files(tmp_path):
    pts = np.arange(136, dtype=float).reshape(68, 2)
    np.save(tmp_path / "lm.npy", pts)
    (tmp_path / "lm.json").write_text(json.dumps(pts.tolist()))
    np.savetxt(tmp_path / "lm.txt", pts)
    for name in ("lm.npy", "lm.json", "lm.txt"):
        np.testing.assert_allclose(landmarks.load_landmarks_file(tmp_path / name), pts)
    np.save(tmp_path / "bad.npy", np.zeros((5, 2)))
    (tmp_path / "bad.json").write_text("{not json")
    bad_nan = pts.copy()
    bad_nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad_nan)
    for name, msg in [("bad.npy", "68x2"), ("bad.json", "cannot read"), ("nan.npy", "NaN"), ("missing.npy", "not found")]:
        with pytest.raises(UnmaskError, match=msg) as info:
            landmarks.load_landmarks_file(tmp_path / name)
        assert name in str(info.value)


def test_face_alignment_offline_gives_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("face_alignment")
    import face_alignment
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert not landmarks.fan_weights_present()
    assert landmarks.resolve_backend("auto") == "dlib"  # auto never triggers a download

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(face_alignment, "FaceAlignment", offline)
    monkeypatch.setattr(detect, "_models", {})
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(WeightsMissingError) as info:
        landmarks.find_landmarks(img, backend="face-alignment", box=(8, 8, 56, 56))
    msg = str(info.value)
    assert "2DFAN4-11f355bf06.pth.tar" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--backend dlib" in msg


def test_face_alignment_backend_uses_our_box(monkeypatch, tmp_path):
    """With FAN weights present, `auto` picks FAN and feeds it our detector's box."""
    import torch

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for name in landmarks.FAN_WEIGHTS:
        (hub / name).write_bytes(b"x")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert landmarks.resolve_backend("auto") == "face-alignment"

    calls = []

    class FakeFAN:
        def get_landmarks_from_image(self, image, detected_faces=None):
            calls.append(detected_faces)
            x0, y0, x1, y1 = detected_faces[0][:4]
            pts = np.stack([np.linspace(x0, x1, 68), np.linspace(y0, y1, 68), np.zeros(68)], 1)
            return [pts]

    monkeypatch.setattr(landmarks, "_fan_model", lambda device=None: FakeFAN())
    img = np.zeros((100, 100, 3), np.uint8)
    lm = landmarks.find_landmarks(img, box=(10, 20, 60, 80))
    assert lm.backend == "face-alignment"
    assert lm.points.shape == (68, 2)
    np.testing.assert_allclose(calls[0][0][:4], [10, 20, 60, 80])


def test_unknown_backends():
    with pytest.raises(ValueError, match="landmark backend"):
        landmarks.resolve_backend("mediapipe")
    with pytest.raises(ValueError, match="face detector"):
        detect.detector_chain("yolo")
