"""How face-like a generator is: Fréchet distance and KID on VGG16 features, and the face-detection share.

FID and KID are normally computed on Inception-v3 features, whose weights
cannot be downloaded offline here, so these use the ImageNet VGG16 we ship
(global-average-pooled conv5_3, 512-D, images resized to ``FEATURE_SIZE``):
same formulas (Heusel et al., 2017; Bińkowski et al., 2018), different feature
space — the numbers are comparable between our runs, not with published FIDs.
The face share is the fraction of samples in which our CenterFace detector
(which never took part in training) finds a face, next to the same fraction
for held-out real faces.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

FEATURE_SIZE = 128
FEATURE_LAYER = "conv5_3"
#: Faces are detected on samples enlarged to this size (CenterFace needs ~> 40 px faces).
DETECT_SIZE = 256

_VGG = {}


def _vgg(device):
    key = str(device)
    if key not in _VGG:
        from ..perceptual import VGG16Features

        _VGG[key] = VGG16Features((FEATURE_LAYER,)).to(device)
    return _VGG[key]


@torch.no_grad()
def vgg_features(images: torch.Tensor, device="cpu", batch: int = 64) -> np.ndarray:
    """[N, 3, R, R] in [-1, 1] → [N, 512] float64."""
    net, out = _vgg(device), []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(device).float()
        x = F.interpolate(x, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", align_corners=False, antialias=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                            enabled=torch.device(device).type == "cpu" and _bf16()):
            f = net(x)[FEATURE_LAYER]
        out.append(f.float().mean(dim=(2, 3)).cpu().double().numpy())
    return np.concatenate(out)


def _bf16() -> bool:
    from ..runtime.cpu import cpu_has_native_bf16

    return cpu_has_native_bf16()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½)."""
    import scipy.linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sa @ sb)
    if isinstance(covmean, tuple):  # older SciPy returns (sqrtm, error estimate)
        covmean = covmean[0]
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa + sb - 2 * covmean))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 200,
                              seed: int = 0) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over subsets."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def face_share(images: torch.Tensor, detector: str = "centerface") -> float:
    """Fraction of [-1, 1] images in which a face is detected (after enlarging them to DETECT_SIZE)."""
    from ..face.detect import detect_faces

    found = 0
    for x in images:
        x = F.interpolate(x[None].float(), size=(DETECT_SIZE, DETECT_SIZE), mode="bicubic", align_corners=False)
        px = (x[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        found += bool(detect_faces(np.ascontiguousarray(px), backend=detector))
    return found / max(len(images), 1)


@torch.no_grad()
def generate(G, n: int, device="cpu", seed: int = 0, truncation_psi: float = 1.0, batch: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        z = torch.randn([min(batch, n - i), G.z_dim], generator=gen).to(device)
        out.append(G(z, None, truncation_psi=truncation_psi, noise_mode="const", force_fp32=True).clamp(-1, 1).cpu())
    return torch.cat(out)


_REAL_CACHE = {}


def quick_metrics(G, data, n: int, device="cpu", seed: int = 0, faces: int = 64) -> dict:
    """The snapshot metrics of a training run (on training images: a progress signal, not a held-out score)."""
    key = (str(data.path), n)
    if key not in _REAL_CACHE:
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
        _REAL_CACHE[key] = vgg_features(data.batch(idx), device)
    fakes = generate(G, n, device, seed=seed + 1)
    feats = vgg_features(fakes, device)
    return {"fd_vgg": round(frechet_distance(feats, _REAL_CACHE[key]), 3),
            "kid_vgg": round(kernel_inception_distance(feats, _REAL_CACHE[key], subsets=20), 5),
            "face_share": round(face_share(fakes[:faces]), 3)}


@dataclass
class MetricsResult:
    network: str
    data: str
    samples: int
    reals: int
    fd_vgg: float
    kid_vgg: float
    face_share: float
    real_face_share: float
    truncation_psi: float

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(G, data, samples: int = 2000, device="cpu", seed: int = 0, truncation_psi: float = 1.0,
                    face_samples: Optional[int] = 500, network: str = "", progress: bool = True) -> MetricsResult:
    """Everything ``stylegan-unmask metrics`` prints, against the images of ``data`` (held-out faces)."""
    reals = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:samples])
    fakes = generate(G, samples, device, seed=seed + 1, truncation_psi=truncation_psi)
    fr, ff = vgg_features(reals, device), vgg_features(fakes, device)
    k = min(face_samples or samples, samples)
    return MetricsResult(network=network, data=str(data.path), samples=samples, reals=len(reals),
                         fd_vgg=frechet_distance(ff, fr), kid_vgg=kernel_inception_distance(ff, fr),
                         face_share=face_share(fakes[:k]), real_face_share=face_share(reals[:k]),
                         truncation_psi=truncation_psi)
