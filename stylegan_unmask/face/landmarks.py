"""68-point facial landmarks (iBUG 300-W layout) for photos of masked faces.

Two backends:

* ``face-alignment`` (FAN): the most accurate; its weights download on first
  use into the torch hub cache, so ``auto`` picks it only when they are already
  there - an offline machine never stalls on a download it did not ask for.
  Boxes come from our detectors (face-alignment's "folder" detector loads
  nothing), or from one of face-alignment's own detectors (``detector='sfd'``,
  ...), which download their weights too.
* ``dlib``: the 68-point shape predictor shipped in ``face-recognition-models``;
  works offline. The predictor was trained on boxes from dlib's HOG detector,
  so boxes from other detectors are first mapped to where HOG would have put
  them (offsets measured on 401 clean dev faces, see docs/detectors.md).

Boxes come from :mod:`stylegan_unmask.face.detect`, whose default detector finds
faces behind masks. Points below the nose are the predictor's best guess on a
masked face; the mask stage is built to be generous there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import detect as _detect
from ..errors import InputImageError, NoFaceError, UnmaskError, WeightsMissingError

LANDMARK_BACKENDS = ("auto", "dlib", "face-alignment")
PathLike = Union[str, "os.PathLike[str]"]

#: CenterFace box -> dlib-HOG-like square box, as fractions of the CenterFace
#: box width: median offsets of the HOG box centre and its size (401 clean dev
#: faces; median absolute deviation 0.046 / 0.042 / 0.085).
CENTERFACE_TO_HOG = {"dx": -0.030, "dy": 0.079, "size": 1.08}

#: face-alignment's 2-D FAN weights: file name in the torch hub cache -> URL
#: (as face_alignment.api.models_urls names them). Enough when boxes come from
#: our detectors (face-alignment's "folder" detector then loads nothing).
FAN_WEIGHTS = {
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}
#: face-alignment's own face detectors (``detector=`` with the face-alignment
#: backend) and the files each downloads into the same cache.
FAN_DETECTOR_WEIGHTS = {
    "sfd": {"s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"},
    "blazeface": {
        "blazeface.pth": "https://github.com/hollance/BlazeFace-PyTorch/blob/master/blazeface.pth?raw=true",
        "anchors.npy": "https://github.com/hollance/BlazeFace-PyTorch/blob/master/anchors.npy?raw=true",
    },
    "retinaface": {"retinaface_mobilenet0.25.pth":
                   "https://www.adrianbulat.com/downloads/python-fan/retinaface_mobilenet0.25.pth"},
    "yunet": {"face_detection_yunet_2023mar.onnx": "https://github.com/opencv/opencv_zoo/raw/main/models/"
                                                   "face_detection_yunet/face_detection_yunet_2023mar.onnx"},
    "scrfd": {"scrfd_2.5g_bnkps.onnx": "https://github.com/yakhyo/facial-analysis/releases/download/v0.0.1/det_2.5g.onnx"},
}
FAN_DETECTORS = tuple(FAN_DETECTOR_WEIGHTS)


@dataclass(eq=False)
class FaceLandmarks:
    """68 landmarks in source pixel coordinates, and how they were found."""

    points: np.ndarray                      # (68, 2) float64, x then y
    box: Optional[Tuple[float, float, float, float]]
    backend: str                            # 'dlib', 'face-alignment' or 'given'
    detector: str                           # which detector gave the box ('given', 'centerface', ...)
    num_faces: int = 1                      # faces the detector found in the photo


# --------------------------------------------------------------------------- helpers
def _validate_points(points, where: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise UnmaskError(f"{where}: landmarks must be numbers") from None
    if arr.shape != (68, 2):
        raise UnmaskError(f"{where}: expected 68x2 landmarks (x, y), got an array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UnmaskError(f"{where}: landmarks contain NaN or infinite values")
    return arr


def load_landmarks_file(path: PathLike) -> np.ndarray:
    """68x2 landmarks from ``.npy``, ``.json`` (list of [x, y]) or text (two columns)."""
    p = Path(path)
    if not p.is_file():
        raise UnmaskError(f"{p}: landmarks file not found")
    try:
        if p.suffix.lower() == ".npy":
            data = np.load(p, allow_pickle=False)
        elif p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("landmarks", data.get("points"))
        else:
            data = np.loadtxt(p, delimiter="," if "," in p.read_text(encoding="utf-8", errors="replace") else None)
    except (ValueError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnmaskError(f"{p}: cannot read landmarks ({e})") from None
    return _validate_points(data, str(p))


def _hog_like_box(det: _detect.FaceDetection) -> Tuple[float, float, float, float]:
    """Map a detector box to the box dlib's predictor was trained with."""
    x0, y0, x1, y1 = det.box
    if det.backend != "centerface":
        return det.box
    w = x1 - x0
    cx = (x0 + x1) / 2 + CENTERFACE_TO_HOG["dx"] * w
    cy = (y0 + y1) / 2 + CENTERFACE_TO_HOG["dy"] * w
    half = CENTERFACE_TO_HOG["size"] * w / 2
    return (cx - half, cy - half, cx + half, cy + half)


# --------------------------------------------------------------------------- backends
def _dlib_predictor():
    dlib = _detect._import_dlib()
    path = _detect.dlib_model_path("shape_predictor_68_face_landmarks.dat")
    return _detect._cached("dlib-68", lambda: dlib.shape_predictor(path))


def _dlib_landmarks(image: np.ndarray, box) -> np.ndarray:
    """dlib's 68 points in ``box``; a box reaching beyond the photo (a face cut by the frame) is
    read from a grey-padded copy, as the detector's frame retries saw it."""
    import dlib

    h, w = image.shape[:2]
    pad = int(np.ceil(max(0.0, -box[0], -box[1], box[2] - w, box[3] - h)))
    if pad > 0:
        image = _detect.pad_image(image, pad)
    rect = dlib.rectangle(*(int(round(v + pad)) for v in box))
    shape = _dlib_predictor()(np.ascontiguousarray(image), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) - pad


def fan_weights_dir() -> Path:
    """Where face-alignment keeps its downloads: ``torch.hub.get_dir()/checkpoints``
    (``~/.cache/torch/hub/checkpoints`` unless TORCH_HOME is set)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def fan_weight_files(fa_detector: Optional[str] = None) -> Dict[str, str]:
    """File name -> URL of everything the face-alignment backend needs."""
    files = dict(FAN_WEIGHTS)
    if fa_detector is not None:
        files.update(FAN_DETECTOR_WEIGHTS[fa_detector])
    return files


def fan_weights_present(fa_detector: Optional[str] = None) -> bool:
    return all((fan_weights_dir() / name).is_file() for name in fan_weight_files(fa_detector))


def _fan_weights_error(files: Dict[str, str], cause: BaseException) -> WeightsMissingError:
    where = fan_weights_dir()
    todo = "; ".join(f"{url} -> {where / name}" for name, url in files.items())
    return WeightsMissingError(
        f"face-alignment could not load its weights ({type(cause).__name__}: {cause}). "
        f"Download them by hand and save them under these names: {todo} "
        f"(the folder is torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it); or use --backend dlib")


def _fan_model(device: Optional[str] = None, fa_detector: Optional[str] = None):
    """face-alignment's FaceAlignment, loaded once per (device, detector).

    Without ``fa_detector`` it gets boxes from our detectors through its
    "folder" detector, which loads no weights. Missing files are fetched with
    face-alignment's own downloader first so that a failure (offline, HTTP
    error) can be reported with the URLs and the folder to put them in.
    """
    try:
        import face_alignment
        import face_alignment.utils as fa_utils
    except ImportError:
        raise WeightsMissingError("face-alignment is not installed: `pip install face-alignment`") from None
    import inspect

    from ..runtime.device import resolve_device  # imports torch: only when face-alignment runs

    device = device or resolve_device().type
    files = fan_weight_files(fa_detector)

    def build():
        for name, url in files.items():
            if not (fan_weights_dir() / name).is_file():
                try:
                    fa_utils.load_file_from_url(url, model_dir=str(fan_weights_dir()), file_name=name)
                except Exception as e:  # offline, HTTP error, disk full, ...
                    raise _fan_weights_error(files, e) from None
        kwargs = dict(device=device, flip_input=False, face_detector=fa_detector or "folder")
        if "compile" in inspect.signature(face_alignment.FaceAlignment.__init__).parameters:
            kwargs["compile"] = False  # torch.compile costs minutes on a CPU for one photo
        try:
            return face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **kwargs)
        except (OSError, RuntimeError, ValueError, KeyError) as e:  # unreadable / truncated weight file
            raise _fan_weights_error(files, e) from None

    return _detect._cached(f"fan-{device}-{fa_detector or 'given-boxes'}", build)


def _fan_detect(image: np.ndarray, fa_detector: str, device: Optional[str]) -> List[_detect.FaceDetection]:
    """Faces from one of face-alignment's own detectors, largest first, source pixels."""
    small, scale = _detect._downscaled(image)
    fa = _fan_model(device, fa_detector)
    found = fa.face_detector.detect_from_image(np.ascontiguousarray(small).copy())
    faces = []
    for d in found if found is not None else []:
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        score = float(d[4]) if d.size > 4 else 1.0
        faces.append(_detect.FaceDetection(tuple(float(v) / scale for v in d[:4]), score, f"fa-{fa_detector}"))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def _fan_landmarks(image: np.ndarray, box, device: Optional[str] = None,
                   fa_detector: Optional[str] = None) -> np.ndarray:
    fa = _fan_model(device, fa_detector)
    # float64: face-alignment writes box-derived numpy scalars into torch tensors,
    # which torch refuses for numpy.float32 (checked with torch 2.13 / numpy 2.4)
    found = fa.get_landmarks_from_image(image, detected_faces=[np.array([*box, 1.0], dtype=np.float64)])
    if not found:
        raise NoFaceError(None, "face-alignment returned no landmarks for the detected face")
    return np.asarray(found[0], dtype=np.float64)[:, :2]


def resolve_backend(backend: str) -> str:
    if backend not in LANDMARK_BACKENDS:
        raise ValueError(f"unknown landmark backend {backend!r}; choose one of {', '.join(LANDMARK_BACKENDS)}")
    if backend != "auto":
        return backend
    from importlib.util import find_spec

    if find_spec("face_alignment") is not None and fan_weights_present():
        return "face-alignment"
    return "dlib"


# --------------------------------------------------------------------------- entry point
def _check_points_fit(pts: np.ndarray, image: np.ndarray, where: str) -> None:
    """User landmarks must belong to this photo: within one image size of its frame."""
    h, w = image.shape[:2]
    inside = (pts[:, 0] > -w) & (pts[:, 0] < 2 * w) & (pts[:, 1] > -h) & (pts[:, 1] < 2 * h)
    if not inside.all():
        raise UnmaskError(f"{where}: landmarks lie far outside the {w}x{h} photo; were they made for another image?")
    span = pts.max(axis=0) - pts.min(axis=0)
    if span.min() < 2.0:
        raise UnmaskError(f"{where}: the 68 landmarks span only {span[0]:.2g}x{span[1]:.2g} px; "
                          "they must be in pixels (not normalised to 0..1)")


def find_landmarks(image: np.ndarray, backend: str = "auto", face_index: Optional[int] = None,
                   box: Optional[Sequence[float]] = None, points=None, path: Optional[PathLike] = None,
                   detector: str = "auto", device: Optional[str] = None) -> FaceLandmarks:
    """68 landmarks of one face in an RGB uint8 photo.

    ``points`` (68x2) skips everything; ``box`` (x0, y0, x1, y1) skips detection;
    otherwise faces are detected and the largest is used, or the
    ``face_index``-th largest. ``path`` only names the photo in errors.
    ``detector``: one of :data:`stylegan_unmask.face.detect.DETECTOR_BACKENDS`, or,
    with ``backend='face-alignment'``, one of face-alignment's own detectors
    (:data:`FAN_DETECTORS`, downloaded on first use). ``device`` is for
    face-alignment (default: CUDA when available).
    """
    where = str(path) if path is not None else "<image>"
    valid_image = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    if points is not None:
        pts = _validate_points(points, where)
        if valid_image:
            _check_points_fit(pts, image, where)
        return FaceLandmarks(pts, None, "given", "given")
    if not valid_image:
        raise InputImageError(path, "landmarks need an RGB uint8 image (HxWx3)")
    name = resolve_backend(backend)
    fa_detector = None
    if detector in FAN_DETECTORS:
        if name != "face-alignment":
            raise ValueError(f"detector {detector!r} is one of face-alignment's; use it with backend='face-alignment'")
        fa_detector = detector
    if box is not None:
        try:
            b = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            raise UnmaskError(f"{where}: a face box is four numbers x0,y0,x1,y1, got {box!r}") from None
        if len(b) != 4 or not all(np.isfinite(b)) or not (b[2] > b[0] and b[3] > b[1]):
            raise UnmaskError(f"{where}: a face box is x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {box}")
        det = _detect.FaceDetection(b, 1.0, "given")
        faces = [det]
    else:
        if fa_detector is not None:
            faces, tried = _fan_detect(image, fa_detector, device), f"face-alignment's {fa_detector}"
        else:
            faces, tried = _detect.detect_faces(image, backend=detector), ", ".join(_detect.tried_detectors(detector))
        if not faces:
            raise NoFaceError(path, f"no face found by {tried}; pass --landmarks FILE or --box x0,y0,x1,y1")
        index = 0 if face_index is None else int(face_index)
        if not 0 <= index < len(faces):
            raise NoFaceError(path, f"face index {index} requested but {len(faces)} face(s) were found "
                                    f"(0 = largest)")
        det = faces[index]
    if name == "dlib":
        pts = _dlib_landmarks(image, _hog_like_box(det))
    else:
        pts = _fan_landmarks(image, det.box, device, fa_detector)
    return FaceLandmarks(pts, det.box, name, det.backend, num_faces=len(faces))
