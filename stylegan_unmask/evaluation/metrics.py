"""Figures of one filled photo against its clean original (definitions: ``docs/evaluation.md``).

Inside the ground-truth mask ``gt`` (the pixels that are really unknown):

* ``psnr_mask``  10 log10(255^2 / MSE), MSE over the pixels where gt is True,
  all three channels, uint8 scale (0..255); capped at :data:`PSNR_CAP` dB.
* ``ssim_mask``  the SSIM map (Gaussian window sigma 1.5, Wang et al. 2004
  constants, per channel) averaged over the gt pixels and the channels.
* ``lpips_mask`` LPIPS-VGG v0.1 between the clean photo and the result
  *composited into the clean photo inside gt*, on a square crop around gt
  resized to :data:`LPIPS_CROP` px.

Over the whole photo: ``psnr_full``, ``ssim_full`` (same definitions, every
pixel; the SSIM mean skips the 5-px border, as scikit-image does).

Identity: ``identity_distance`` between dlib's 128-D face descriptors of the
result and of the clean photo, ``identity_same`` = distance < 0.6 (dlib's
same-person threshold), ``face_found`` = our detector finds the face in the
result. Every figure is computed from the exact uint8 pixels saved as PNG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..face import detect
from ..face.landmarks import _dlib_landmarks, _hog_like_box
from ..perceptual import LPIPS

#: PSNR when the MSE is 0 (identical pixels).
PSNR_CAP = 100.0
#: Side of the LPIPS crop, px.
LPIPS_CROP = 128
#: The crop around the gt mask's bounding box is this much larger than the box's longer side.
LPIPS_CONTEXT = 1.2
#: dlib's same-person threshold on the descriptor distance (dlib face_recognition example, LFW 99.38 %).
IDENTITY_THRESHOLD = 0.6
#: A face in the result counts as "the" face when its box overlaps the reference box this much (IoU).
FACE_IOU = 0.3
#: Bumped whenever a definition changes: results of older runs are then recomputed.
METRICS_VERSION = 1


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    kind: str  # "float" or "bool"
    doc: str


METRICS: Tuple[MetricInfo, ...] = (
    MetricInfo("lpips_mask", "LPIPS in mask", False, "float", "LPIPS-VGG on a crop around the GT mask"),
    MetricInfo("psnr_mask", "PSNR in mask (dB)", True, "float", "PSNR over the GT mask pixels"),
    MetricInfo("ssim_mask", "SSIM in mask", True, "float", "SSIM map averaged over the GT mask"),
    MetricInfo("psnr_full", "PSNR photo (dB)", True, "float", "PSNR over the whole photo"),
    MetricInfo("ssim_full", "SSIM photo", True, "float", "SSIM over the whole photo"),
    MetricInfo("identity_distance", "ID distance", False, "float", "dlib descriptor distance to the clean face"),
    MetricInfo("identity_same", "same person", True, "bool", "ID distance < 0.6 (no face found counts as no)"),
    MetricInfo("face_found", "face found", True, "bool", "our detector finds the face in the result"),
)
METRIC_NAMES = tuple(m.name for m in METRICS)
METRIC_INFO = {m.name: m for m in METRICS}


# ----------------------------------------------------------------------------- pixel metrics


def _check_pair(result: np.ndarray, clean: np.ndarray) -> None:
    if result.shape != clean.shape or result.ndim != 3 or result.shape[2] != 3:
        raise ValueError(f"result {result.shape} and clean {clean.shape} must both be HxWx3 of one size")
    if result.dtype != np.uint8 or clean.dtype != np.uint8:
        raise ValueError("metrics are computed on uint8 pixels")


def psnr(result: np.ndarray, clean: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """PSNR in dB on the 0..255 scale over ``mask`` (HxW bool; None = every pixel), all channels."""
    _check_pair(result, clean)
    d = result.astype(np.float64) - clean.astype(np.float64)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != result.shape[:2]:
            raise ValueError(f"mask {m.shape} does not match the image {result.shape[:2]}")
        if not m.any():
            raise ValueError("the mask is empty")
        d = d[m]
    mse = float(np.mean(d * d))
    if mse == 0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0 ** 2 / mse))


def ssim_map(result: np.ndarray, clean: np.ndarray) -> Tuple[float, np.ndarray]:
    """(whole-image SSIM, HxW SSIM map averaged over channels), Wang et al.'s Gaussian-window SSIM."""
    from skimage.metrics import structural_similarity

    _check_pair(result, clean)
    mean, full = structural_similarity(result, clean, channel_axis=2, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, full=True)
    return float(mean), np.asarray(full, np.float64).mean(axis=2)


def ssim_in_mask(result: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """The SSIM map averaged over ``mask``; computed on a padded crop (identical values, faster)."""
    m = np.asarray(mask, bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("the mask is empty")
    pad = 16  # > the Gaussian window's radius (truncate 3.5 sigma -> 6 px), so crop edges never reach the mask
    h, w = m.shape
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    _, smap = ssim_map(np.ascontiguousarray(result[y0:y1, x0:x1]), np.ascontiguousarray(clean[y0:y1, x0:x1]))
    return float(smap[m[y0:y1, x0:x1]].mean())


def mask_crop_box(mask: np.ndarray, context: float = LPIPS_CONTEXT) -> Tuple[int, int, int]:
    """(x0, y0, side) of the square crop centred on the mask's bounding box (may reach past the image)."""
    ys, xs = np.nonzero(np.asarray(mask, bool))
    if ys.size == 0:
        raise ValueError("the mask is empty")
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    side = max(16, int(math.ceil(context * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))))
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_resized(image: np.ndarray, box: Tuple[int, int, int], size: int = LPIPS_CROP) -> np.ndarray:
    """The square ``box`` of ``image`` (edge pixels repeated beyond the photo) resized to size x size."""
    import cv2

    x0, y0, side = box
    h, w = image.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + side - h), max(0, x0 + side - w)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    crop = padded[y0 + top:y0 + top + side, x0 + left:x0 + left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


class LPIPSScorer:
    """Our LPIPS-VGG (``perceptual.LPIPS``) on crops around the gt mask, several results in one call."""

    def __init__(self, device="cpu", size: int = LPIPS_CROP):
        self.device = device
        self.size = int(size)
        self.model = LPIPS().to(device).eval()

    def __call__(self, results: Sequence[np.ndarray], clean: np.ndarray, gt: np.ndarray) -> List[float]:
        import torch

        if not results:
            return []
        box = mask_crop_box(gt)
        ref = crop_resized(clean, box, self.size)
        crops = []
        for r in results:
            _check_pair(r, clean)
            crops.append(crop_resized(np.where(gt[:, :, None], r, clean), box, self.size))

        def tensor(batch):
            return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(self.device)

        with torch.no_grad():
            d = self.model(tensor(crops), tensor([ref] * len(crops)))
        return [float(v) for v in d.cpu()]

    def pairwise(self, results: Sequence[np.ndarray], clean: np.ndarray, gt: np.ndarray) -> List[float]:
        """LPIPS between every two results, both composited into the clean photo inside gt (as ``__call__``):
        how much they differ where the photo does not decide. Pairs in ``itertools.combinations`` order."""
        out: List[float] = []
        for i in range(len(results) - 1):
            reference = np.where(gt[:, :, None], results[i], clean)
            out += self(results[i + 1:], reference, gt)
        return out


# ----------------------------------------------------------------------------- identity


@dataclass
class FaceInResult:
    """The face found in an image near a reference box, and its dlib descriptor."""

    found: bool
    box: Optional[Tuple[float, float, float, float]] = None
    descriptor: Optional[np.ndarray] = None  # (128,) float64


class IdentityModel:
    """Our detector (``auto`` chain) + dlib's 68-point predictor + dlib's ResNet face descriptor."""

    MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

    def __init__(self, detector: str = "auto"):
        dlib = detect._import_dlib()
        path = detect.dlib_model_path(self.MODEL_FILE)
        self._dlib = dlib
        self._rec = detect._cached("dlib-face-recognition", lambda: dlib.face_recognition_model_v1(path))
        self.detector = detector

    def find(self, image: np.ndarray, near_box=None) -> FaceInResult:
        """The face overlapping ``near_box`` the most (IoU >= FACE_IOU), else the largest when no box is given."""
        faces = detect.detect_faces(image, backend=self.detector)
        if not faces:
            return FaceInResult(False)
        if near_box is None:
            det = faces[0]
        else:
            ious = [detect.box_iou(f.box, near_box) for f in faces]
            best = int(np.argmax(ious))
            if ious[best] < FACE_IOU:
                return FaceInResult(False)
            det = faces[best]
        box = _hog_like_box(det)
        points = _dlib_landmarks(image, box)
        return FaceInResult(True, tuple(float(v) for v in det.box), self.descriptor(image, box, points))

    def descriptor(self, image: np.ndarray, box, points68: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(points68)]
        shape = dlib.full_object_detection(rect, parts)
        return np.asarray(self._rec.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float64)


def identity_figures(result_face: FaceInResult, clean_face: FaceInResult) -> Dict[str, object]:
    """face_found, identity_distance (None when either face is missing), identity_same (None without a clean face)."""
    out: Dict[str, object] = {"face_found": bool(result_face.found), "identity_distance": None, "identity_same": None}
    if clean_face.descriptor is None:
        return out
    if result_face.descriptor is None:
        out["identity_same"] = False
        return out
    dist = float(np.linalg.norm(result_face.descriptor - clean_face.descriptor))
    out["identity_distance"] = dist
    out["identity_same"] = dist < IDENTITY_THRESHOLD
    return out


# ----------------------------------------------------------------------------- all of them


class Scorer:
    """Every figure for the results of several methods on one photo."""

    def __init__(self, device="cpu", identity: bool = True, detector: str = "auto"):
        self.lpips = LPIPSScorer(device)
        self.identity = IdentityModel(detector) if identity else None

    def reference_face(self, clean: np.ndarray, near_box=None) -> FaceInResult:
        if self.identity is None:
            return FaceInResult(False)
        return self.identity.find(clean, near_box)

    def score(self, results: Sequence[np.ndarray], clean: np.ndarray, gt: np.ndarray,
              clean_face: FaceInResult, near_box=None) -> List[Dict[str, object]]:
        """One dict of figures per result (same order). ``near_box``: where the face is (the clean face's box)."""
        lp = self.lpips(results, clean, gt)
        return [self._whole(r, clean, clean_face, near_box, self._in_mask(r, clean, gt, v)) for r, v in zip(results, lp)]

    def score_samples(self, results: Sequence[np.ndarray], clean: np.ndarray, gt: np.ndarray,
                      clean_face: FaceInResult, near_box=None, full: Sequence[int] = (0,)):
        """Figures of several completions of one photo, from one LPIPS call so they compare exactly:
        (the in-mask figures of each, every figure of those indexed by ``full``, their pairwise in-mask LPIPS)."""
        lp = self.lpips(results, clean, gt)
        in_mask = [self._in_mask(r, clean, gt, v) for r, v in zip(results, lp)]
        whole = {i: self._whole(results[i], clean, clean_face, near_box, dict(in_mask[i])) for i in set(full)}
        return in_mask, whole, self.lpips.pairwise(results, clean, gt)

    @staticmethod
    def _in_mask(r: np.ndarray, clean: np.ndarray, gt: np.ndarray, lpips_value: float) -> Dict[str, object]:
        return {"lpips_mask": lpips_value, "psnr_mask": psnr(r, clean, gt), "ssim_mask": ssim_in_mask(r, clean, gt)}

    def _whole(self, r: np.ndarray, clean: np.ndarray, clean_face: FaceInResult, near_box,
               row: Dict[str, object]) -> Dict[str, object]:
        """``row`` (the in-mask figures) with the whole-photo and identity figures added."""
        full, _ = ssim_map(r, clean)
        row.update({"psnr_full": psnr(r, clean), "ssim_full": full})
        if self.identity is not None:
            box = clean_face.box if clean_face.box is not None else near_box
            row.update(identity_figures(self.identity.find(r, box), clean_face))
        else:
            row.update({"face_found": None, "identity_distance": None, "identity_same": None})
        return row
