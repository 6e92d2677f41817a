"""Face detection and landmarks on masked faces (CenterFace + dlib; FAN offline behaviour)."""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from stylegan_unmask.face import detect, landmarks
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
    import time
    import urllib.error

    import face_alignment
    import face_alignment.utils

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub cache = TORCH_HOME/hub, for torch and face-alignment
    assert not landmarks.fan_weights_present()
    assert landmarks.resolve_backend("auto") == "dlib"  # auto never triggers a download

    attempts = []

    def offline(url, dst, *args, **kwargs):  # what torch.hub's downloader raises without a network
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", offline)
    monkeypatch.setattr(face_alignment, "FaceAlignment", lambda *a, **k: pytest.fail("must not load without weights"))
    monkeypatch.setattr(detect, "_models", {})
    img = np.zeros((64, 64, 3), np.uint8)
    for fa_detector, expected in [("auto", ["2DFAN4-11f355bf06.pth.tar"]),
                                  ("sfd", ["2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"])]:
        t0 = time.perf_counter()
        with pytest.raises(WeightsMissingError) as info:
            landmarks.find_landmarks(img, backend="face-alignment", detector=fa_detector, box=(8, 8, 56, 56))
        assert time.perf_counter() - t0 < 5
        msg = str(info.value)
        for name in expected:
            assert str(tmp_path / "hub" / "checkpoints" / name) in msg
        assert "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar" in msg
        assert "URLError" in msg and "--backend dlib" in msg
    assert attempts and all(u.startswith("https://") for u in attempts)


class _FakeFaceAlignment:
    """Stands in for face_alignment.FaceAlignment: FAN's output format, no weights."""

    instances = []

    def __init__(self, landmarks_type, device="cuda", flip_input=True, face_detector="sfd", compile=True, **kw):
        self.kwargs = dict(landmarks_type=landmarks_type, device=device, face_detector=face_detector, compile=compile)
        self.calls = []
        self.detector_inputs = []
        fake = self

        class _Detector:
            def detect_from_image(self, image):
                fake.detector_inputs.append(image.shape)
                h, w = image.shape[:2]
                return [np.array([0.1 * w, 0.1 * h, 0.4 * w, 0.5 * h, 0.99]),
                        np.array([0.5 * w, 0.2 * h, 0.9 * w, 0.9 * h, 0.95])]

        self.face_detector = _Detector()
        _FakeFaceAlignment.instances.append(self)

    def get_landmarks_from_image(self, image, detected_faces=None):
        self.calls.append([np.asarray(d) for d in detected_faces])
        x0, y0, x1, y1 = detected_faces[0][:4]
        # FAN returns float32 (68, 2) arrays in source pixels, one per face
        return [np.stack([np.linspace(x0, x1, 68), np.linspace(y0, y1, 68)], 1).astype(np.float32)]


@pytest.fixture
def fake_fan(monkeypatch, tmp_path):
    face_alignment = pytest.importorskip("face_alignment")

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for name in ["2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"]:
        (hub / name).write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub cache = TORCH_HOME/hub, for torch and face-alignment
    monkeypatch.setattr(face_alignment, "FaceAlignment", _FakeFaceAlignment)
    monkeypatch.setattr(detect, "_models", {})
    _FakeFaceAlignment.instances = []
    return _FakeFaceAlignment


def test_face_alignment_backend_uses_our_box(fake_fan):
    """With FAN weights present, `auto` picks FAN, feeds it our box, loads no detector weights."""
    assert landmarks.resolve_backend("auto") == "face-alignment"
    img = np.zeros((100, 100, 3), np.uint8)
    lm = landmarks.find_landmarks(img, box=(10, 20, 60, 80), device="cpu")
    assert lm.backend == "face-alignment" and lm.detector == "given"
    assert lm.points.shape == (68, 2) and lm.points.dtype == np.float64
    np.testing.assert_allclose(lm.points[0], [10, 20])
    np.testing.assert_allclose(lm.points[-1], [60, 80])
    fa = fake_fan.instances[0]
    assert fa.kwargs["face_detector"] == "folder" and fa.kwargs["device"] == "cpu" and fa.kwargs["compile"] is False
    np.testing.assert_allclose(fa.calls[0][0][:4], [10, 20, 60, 80])
    landmarks.find_landmarks(img, box=(10, 20, 60, 80), device="cpu")
    assert len(fake_fan.instances) == 1  # loaded once per process


def test_face_alignment_own_detector_on_a_large_photo(fake_fan):
    """face-alignment's detectors see the downscaled copy; boxes come back in source pixels."""
    big = np.zeros((2000, 3000, 3), np.uint8)
    lm = landmarks.find_landmarks(big, backend="face-alignment", detector="sfd", device="cpu")
    fa = fake_fan.instances[0]
    assert fa.kwargs["face_detector"] == "sfd"
    assert max(fa.detector_inputs[0][:2]) <= detect.DETECTION_MAX_SIDE
    assert lm.detector == "fa-sfd" and lm.num_faces == 2
    np.testing.assert_allclose(lm.box, [1500, 400, 2700, 1800], atol=2)  # the larger face first
    second = landmarks.find_landmarks(big, backend="face-alignment", detector="sfd", face_index=1)
    np.testing.assert_allclose(second.box, [300, 200, 1200, 1000], atol=2)
    with pytest.raises(ValueError, match="backend='face-alignment'"):
        landmarks.find_landmarks(big, backend="dlib", detector="sfd")


def test_given_points_must_fit_the_photo():
    img = np.zeros((100, 120, 3), np.uint8)
    pts = np.stack([np.linspace(20, 100, 68), np.linspace(10, 90, 68)], 1)
    assert landmarks.find_landmarks(img, points=pts).backend == "given"
    with pytest.raises(UnmaskError, match="far outside") as info:
        landmarks.find_landmarks(img, points=pts + 1000, path="me.jpg")
    assert "me.jpg" in str(info.value)
    with pytest.raises(UnmaskError, match="normalised"):
        landmarks.find_landmarks(img, points=pts / 1000)


def test_unknown_backends():
    with pytest.raises(ValueError, match="landmark backend"):
        landmarks.resolve_backend("mediapipe")
    with pytest.raises(ValueError, match="face detector"):
        detect.detector_chain("yolo")


def test_face_alignment_real_api_with_a_stand_in_weight_file(monkeypatch, tmp_path):
    """The real FaceAlignment class, fed a randomly initialised FAN saved where the
    hub cache expects it: checks our construction arguments and output conversion
    (the points themselves are meaningless)."""
    pytest.importorskip("face_alignment")
    import torch
    from face_alignment.models import FAN

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), hub / "2DFAN4-11f355bf06.pth.tar")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub cache = TORCH_HOME/hub, for torch and face-alignment
    monkeypatch.setattr(detect, "_models", {})
    img = np.random.default_rng(0).integers(0, 256, (120, 100, 3), np.uint8)
    lm = landmarks.find_landmarks(img, backend="face-alignment", box=(20, 20, 80, 100), device="cpu")
    assert lm.points.shape == (68, 2) and lm.points.dtype == np.float64 and np.isfinite(lm.points).all()
    # FAN's crop around a 60x80 box is ~144 px wide (scale (w+h)/195 * 200), centred on
    # the box: every heat-map peak maps back inside that square
    assert (lm.points[:, 0] > 50 - 75).all() and (lm.points[:, 0] < 50 + 75).all()
    assert (lm.points[:, 1] > 50 - 75).all() and (lm.points[:, 1] < 50 + 75).all()


@pytest.mark.slow
def test_auto_finds_95_percent_of_real_masked_faces(dev_data_dir):
    """The full masked_real rate (148 photos, 21 s on one core): `auto` must return
    a box on the reference face (index.csv YuNet box: IoU >= 0.3 or centre inside)."""
    import csv

    rows = list(csv.DictReader(open(dev_data_dir / "masked_real" / "index.csv", newline="")))
    assert len(rows) >= 100
    hits, missed = 0, []
    for row in rows:
        x, y, w, h = (float(v) for v in row["face_box_xywh"].split(","))
        ref = (x, y, x + w, y + h)
        faces = detect.detect_faces(load_image(dev_data_dir / "masked_real" / row["file"]).pixels)
        ok = False
        for f in faces:
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            ok |= detect.box_iou(f.box, ref) >= 0.3 or (ref[0] <= cx <= ref[2] and ref[1] <= cy <= ref[3])
        hits += ok
        if not ok:
            missed.append(row["file"])
    assert hits / len(rows) >= 0.95, f"found {hits}/{len(rows)}; missed {missed}"
