"""Pictures of a run: sample grids and metric plots (a person would rather look than read)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..images import save_image


@torch.no_grad()
def sample_grid(G, z: torch.Tensor, device="cpu", truncation_psi: float = 1.0, columns: int = 8) -> np.ndarray:
    imgs = []
    for i in range(0, len(z), 16):
        x = G(z[i:i + 16].to(device), None, truncation_psi=truncation_psi, noise_mode="const", force_fp32=True)
        imgs.append((x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    imgs = np.concatenate(imgs)
    n, h, w, c = imgs.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), np.uint8)
    for k, im in enumerate(imgs):
        r, q = divmod(k, columns)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = im
    return grid


def save_sample_grid(G, z, path: Path, device="cpu", truncation_psi: float = 1.0) -> Path:
    return save_image(path, sample_grid(G, z, device, truncation_psi))


def plot_metrics(run_dir: Path) -> None:
    """metrics.png: every numeric metric of metrics.jsonl against kimg."""
    lines = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    keys = [k for k in (lines[-1] if lines else {}) if k not in ("kimg", "seconds", "network")
            and isinstance(lines[-1][k], (int, float))]
    if len(lines) < 2 or not keys:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_file

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(l["kimg"], l[k]) for l in lines if isinstance(l.get(k), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_xlabel("kimg")
        ax.set_title(k)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(Path(run_dir) / "metrics.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


#: What a truncation curve shows, and which way is better.
CURVE_FIGURES = (("fd_vgg", "FD (VGG16), lower is better"), ("precision", "precision"), ("recall", "recall"),
                 ("variety", "variety (1 = as varied as real faces)"), ("face_share", "samples with a face found"))


def plot_truncation_curve(results, path: Path, title: str = "") -> Path:
    """One panel per figure against truncation psi (``results``: MetricsResult per psi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_file

    rs = sorted(results, key=lambda r: r.truncation_psi)
    psis = [r.truncation_psi for r in rs]
    fig, axes = plt.subplots(1, len(CURVE_FIGURES), figsize=(3.2 * len(CURVE_FIGURES), 3), squeeze=False)
    for ax, (key, label) in zip(axes[0], CURVE_FIGURES):
        ax.plot(psis, [getattr(r, key) for r in rs], marker="o", ms=4)
        ax.set_xlabel("truncation psi")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(Path(path), suffix=Path(path).suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return Path(path)
