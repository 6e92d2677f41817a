"""How face-like and how varied a generator is, in feature spaces the discriminator never sees.

* FD and KID (Heusel et al., 2017; Bińkowski et al., 2018) on pooled VGG16 conv5_3 features;
* improved precision and recall (Kynkäänniemi et al., 2019, k = 3) on the same features;
* variety: mean pairwise LPIPS among samples over the same among real faces (1 = as varied);
* the face share: samples in which CenterFace finds a face.

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
from typing import List, Optional, Sequence, Tuple

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


def knn_radii(feats: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance from each point to its k-th nearest other point."""
    d = _pairwise(feats, feats)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> Tuple[float, float]:
    """Precision: share of samples inside the real manifold (union of k-NN balls of the real points);
    recall: share of real points inside the samples' manifold."""
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = _pairwise(fake, real)                                   # [fake, real]
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    recall = float((d.T <= r_fake[None, :]).any(axis=1).mean())
    return precision, recall


_LPIPS = {}


@torch.no_grad()
def mean_pairwise_lpips(images: torch.Tensor, pairs: int = 200, seed: int = 0, device="cpu") -> float:
    """Mean LPIPS between random distinct pairs of [-1, 1] images (at most 128 px, for speed)."""
    from ..perceptual import LPIPS

    key = str(device)
    if key not in _LPIPS:
        _LPIPS[key] = LPIPS().to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    i = torch.randint(0, n, [pairs], generator=gen)
    j = (i + torch.randint(1, n, [pairs], generator=gen)) % n
    x = images if images.shape[-1] <= 128 else F.interpolate(images, size=(128, 128), mode="area")
    out = [_LPIPS[key](x[i[s:s + 50]].to(device).float(), x[j[s:s + 50]].to(device).float()).cpu()
           for s in range(0, pairs, 50)]
    return float(torch.cat(out).mean())


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
        reals = data.batch(idx)
        _REAL_CACHE[key] = (vgg_features(reals, device), mean_pairwise_lpips(reals, device=device))
    real_feats, real_lpips = _REAL_CACHE[key]
    fakes = generate(G, n, device, seed=seed + 1)
    feats = vgg_features(fakes, device)
    precision, recall = precision_recall(real_feats, feats)
    return {"fd_vgg": round(frechet_distance(feats, real_feats), 3),
            "kid_vgg": round(kernel_inception_distance(feats, real_feats, subsets=20), 5),
            "precision": round(precision, 3), "recall": round(recall, 3),
            "variety": round(mean_pairwise_lpips(fakes, device=device) / max(real_lpips, 1e-8), 3),
            "face_share": round(face_share(fakes[:faces]), 3)}


@dataclass
class MetricsResult:
    network: str
    data: str
    samples: int
    reals: int
    fd_vgg: float
    kid_vgg: float
    precision: float
    recall: float
    variety: float
    lpips_samples: float
    lpips_reals: float
    face_share: float
    real_face_share: float
    truncation_psi: float

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(G, data, samples: int = 2000, device="cpu", seed: int = 0, truncation_psi: float = 1.0,
                    face_samples: Optional[int] = 500, network: str = "", progress: bool = True) -> MetricsResult:
    """Everything ``stylegan-unmask metrics`` prints, against the images of ``data`` (held-out faces)."""
    return truncation_curve(G, data, [truncation_psi], samples, device, seed, face_samples, network)[0]


def truncation_curve(G, data, psis: Sequence[float], samples: int = 2000, device="cpu", seed: int = 0,
                     face_samples: Optional[int] = 500, network: str = "") -> List[MetricsResult]:
    """:func:`compute_metrics` at each truncation psi; the real faces are measured once, and every
    psi truncates the same latents, so the curve shows the truncation alone."""
    reals = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:samples])
    fr, lp_real = vgg_features(reals, device), mean_pairwise_lpips(reals, device=device)
    k = min(face_samples or samples, samples)
    real_faces = face_share(reals[:k])
    out = []
    for psi in psis:
        fakes = generate(G, samples, device, seed=seed + 1, truncation_psi=psi)
        ff, lp_fake = vgg_features(fakes, device), mean_pairwise_lpips(fakes, device=device)
        precision, recall = precision_recall(fr, ff)
        out.append(MetricsResult(network=network, data=str(data.path), samples=samples, reals=len(reals),
                                 fd_vgg=frechet_distance(ff, fr), kid_vgg=kernel_inception_distance(ff, fr),
                                 precision=precision, recall=recall, variety=lp_fake / max(lp_real, 1e-8),
                                 lpips_samples=lp_fake, lpips_reals=lp_real, face_share=face_share(fakes[:k]),
                                 real_face_share=real_faces, truncation_psi=float(psi)))
    return out
    fr, ff = vgg_features(reals, device), vgg_features(fakes, device)
    precision, recall = precision_recall(fr, ff)
    lp_fake, lp_real = mean_pairwise_lpips(fakes, device=device), mean_pairwise_lpips(reals, device=device)
    k = min(face_samples or samples, samples)
    return MetricsResult(network=network, data=str(data.path), samples=samples, reals=len(reals),
                         fd_vgg=frechet_distance(ff, fr), kid_vgg=kernel_inception_distance(ff, fr),
                         precision=precision, recall=recall, variety=lp_fake / max(lp_real, 1e-8),
                         lpips_samples=lp_fake, lpips_reals=lp_real,
                         face_share=face_share(fakes[:k]), real_face_share=face_share(reals[:k]),
                         truncation_psi=truncation_psi)
