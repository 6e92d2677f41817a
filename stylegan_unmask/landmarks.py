"""68-point facial landmarks (iBUG 300-W layout) for photos of masked faces.

Two backends:

* ``face-alignment`` (FAN): the most accurate; its weights download on first
  use (torch hub cache), so it is picked by ``auto`` only when they are already
  there - an offline machine never stalls on a download it did not ask for.
* ``dlib``: the 68-point shape predictor shipped in ``face-recognition-models``;
  works offline. The predictor was trained on boxes from dlib's HOG detector,
  so boxes from other detectors are first mapped to where HOG would have put
  them (offsets measured on 401 clean dev faces, see docs/detectors.md).

Boxes come from :mod:`stylegan_unmask.detect`, whose default detector finds
faces behind masks. Points below the nose are the predictor's best guess on a
masked face; the mask stage is built to be generous there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import detect as _detect
from .errors import InputImageError, NoFaceError, UnmaskError, WeightsMissingError

LANDMARK_BACKENDS = ("auto", "dlib", "face-alignment")
PathLike = Union[str, "os.PathLike[str]"]

#: CenterFace box -> dlib-HOG-like square box, as fractions of the CenterFace
#: box width: median offsets of the HOG box centre and its size (401 clean dev
#: faces; median absolute deviation 0.046 / 0.042 / 0.085).
CENTERFACE_TO_HOG = {"dx": -0.030, "dy": 0.079, "size": 1.08}

# face-alignment's FAN weights (as its own `models_urls` names them).
FAN_WEIGHTS = {
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}


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
    import dlib

    rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
    shape = _dlib_predictor()(np.ascontiguousarray(image), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def fan_weights_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def fan_weights_present() -> bool:
    return all((fan_weights_dir() / name).is_file() for name in FAN_WEIGHTS)


def _fan_model(device: Optional[str] = None):
    try:
        import face_alignment
    except ImportError:
        raise WeightsMissingError("face-alignment is not installed: `pip install face-alignment`") from None
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def build():
        try:
            return face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device, flip_input=False)
        except Exception as e:  # the download of its weights failed (offline, HTTP error, ...)
            where = fan_weights_dir()
            files = "; ".join(f"{url} -> {where / name}" for name, url in FAN_WEIGHTS.items())
            raise WeightsMissingError(
                f"face-alignment could not load its FAN weights ({type(e).__name__}: {e}). "
                f"Download them by hand and put them here: {files}; or use --backend dlib") from None

    return _detect._cached(f"fan-{device}", build)


def _fan_landmarks(image: np.ndarray, box) -> np.ndarray:
    fa = _fan_model()
    found = fa.get_landmarks_from_image(image, detected_faces=[np.array([*box, 1.0], dtype=np.float32)])
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
def find_landmarks(image: np.ndarray, backend: str = "auto", face_index: Optional[int] = None,
                   box: Optional[Sequence[float]] = None, points=None, path: Optional[PathLike] = None,
                   detector: str = "auto") -> FaceLandmarks:
    """68 landmarks of one face in an RGB uint8 photo.

    ``points`` (68x2) skips everything; ``box`` (x0, y0, x1, y1) skips detection;
    otherwise faces are detected and the largest is used, or the
    ``face_index``-th largest. ``path`` only names the photo in errors.
    """
    where = str(path) if path is not None else "<image>"
    if points is not None:
        pts = _validate_points(points, where)
        return FaceLandmarks(pts, None, "given", "given")
    if image is None or getattr(image, "ndim", 0) != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputImageError(path, "landmarks need an RGB uint8 image")
    name = resolve_backend(backend)
    if box is not None:
        b = tuple(float(v) for v in box)
        if len(b) != 4 or not (b[2] > b[0] and b[3] > b[1]):
            raise UnmaskError(f"{where}: a face box is x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {box}")
        det = _detect.FaceDetection(b, 1.0, "given")
        faces = [det]
    else:
        faces = _detect.detect_faces(image, backend=detector)
        if not faces:
            tried = ", ".join(_detect.tried_detectors(detector))
            raise NoFaceError(path, f"no face found (detectors tried: {tried}); pass --box x0,y0,x1,y1 or --landmarks")
        index = 0 if face_index is None else int(face_index)
        if not 0 <= index < len(faces):
            raise NoFaceError(path, f"face index {index} requested but {len(faces)} face(s) were found "
                                    f"(0 = largest)")
        det = faces[index]
    if name == "dlib":
        pts = _dlib_landmarks(image, _hog_like_box(det))
    else:
        pts = _fan_landmarks(image, det.box)
    return FaceLandmarks(pts, det.box, name, det.backend, num_faces=len(faces))
