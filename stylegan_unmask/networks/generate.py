"""Seeds -> images, saved W+ -> images, and the float -> uint8 conversion.

Conventions follow NVIDIA's ``gen_images.py`` so the same seed gives the same
picture here and there: ``z = RandomState(seed).randn(1, z_dim)`` (float64,
cast to float32 by the mapping network), one forward pass per seed, pixels
``clamp(x * 127.5 + 128, 0, 255)`` truncated to uint8, files ``seed0000.png``
and, for projected latents, ``proj00.png``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import UnmaskError
from ..runtime.device import module_device

PathLike = Union[str, Path]

# Keys a W+ file may use: the official projector writes 'w'; other tools use the others.
WS_KEYS = ("w", "w_plus", "ws")


class LatentFileError(UnmaskError):
    """A saved latent (W+) file is missing, unreadable or does not fit the network."""

    def __init__(self, path: PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def parse_seeds(text: Union[str, int, Sequence[int]]) -> List[int]:
    """'0-3,10' -> [0, 1, 2, 3, 10] (ranges inclusive, as NVIDIA's tools); order kept, duplicates dropped."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return list(dict.fromkeys(int(s) for s in text))
    seeds: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ValueError(f"cannot read seeds {text!r}: {part!r} is not a number or a range like 0-3")
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    for seed in seeds:
        if seed >= 2 ** 32:
            raise ValueError(f"seed {seed} is too large (numpy seeds are < 2**32)")
    return list(dict.fromkeys(seeds))


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """The official latent for a seed: RandomState(seed).randn(1, z_dim), float64 [1, z_dim]."""
    return np.random.RandomState(seed).randn(1, z_dim)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Generator output [N, C, H, W] (~[-1, 1]) -> uint8 [N, H, W, C], the official rounding (truncation)."""
    if img.ndim != 4:
        raise ValueError(f"expected an image batch [N, C, H, W], got shape {tuple(img.shape)}")
    x = (img.detach().permute(0, 2, 3, 1).to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.cpu().numpy()


def class_vector(G, class_idx: Optional[int], device: Union[str, torch.device] = "cpu") -> Optional[torch.Tensor]:
    """One-hot label [1, c_dim] for a conditional network, None for an unconditional one."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise UnmaskError(f"--class {class_idx}: this network is unconditional (c_dim = 0); omit --class")
        return None
    if class_idx is None:
        raise UnmaskError(f"this network is conditional ({G.c_dim} classes): choose one with --class")
    if not 0 <= class_idx < G.c_dim:
        raise UnmaskError(f"--class {class_idx}: must be in 0..{G.c_dim - 1}")
    c = torch.zeros([1, G.c_dim], device=device)
    c[0, class_idx] = 1
    return c


@torch.no_grad()
def render_seed(G, seed: int, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "const", class_idx: Optional[int] = None, force_fp32: bool = False) -> np.ndarray:
    """One image (uint8 HxWxC) for one seed, exactly as the official generator script computes it.

    With noise_mode='random' the noise is drawn from a torch generator seeded
    with `seed`, so repeated runs give the same picture.
    """
    device = module_device(G)
    z = torch.from_numpy(z_from_seed(seed, G.z_dim)).to(device=device, dtype=torch.float32)
    c = class_vector(G, class_idx, device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=(noise_mode == "random")):
        if noise_mode == "random":
            torch.manual_seed(seed)
        img = G(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode,
                force_fp32=force_fp32)
    return to_uint8(img)[0]


def iter_seed_images(G, seeds: Iterable[int], **render_kwargs) -> Iterator[Tuple[int, np.ndarray]]:
    """(seed, uint8 HxWxC) for each seed, one forward pass at a time (memory stays flat)."""
    for seed in seeds:
        yield seed, render_seed(G, seed, **render_kwargs)


def load_ws(path: PathLike, num_ws: Optional[int] = None, w_dim: Optional[int] = None) -> torch.Tensor:
    """Read W+ latents [N, num_ws, w_dim] from an .npz (key 'w', 'w_plus' or 'ws') or .npy file.

    A single latent [num_ws, w_dim] gets a batch axis. Never unpickles.
    """
    p = Path(path)
    if not p.is_file():
        raise LatentFileError(p, "file not found")
    try:
        data = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise LatentFileError(p, f"not a plain numpy .npz/.npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise LatentFileError(p, f"cannot read latents ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            key = next((k for k in WS_KEYS if k in data.files), None)
            if key is None:
                raise LatentFileError(p, f"no W+ array: expected one of the keys {list(WS_KEYS)}, "
                                         f"found {data.files}")
            arr = data[key]
    else:
        arr = data
    if not np.issubdtype(arr.dtype, np.floating):
        raise LatentFileError(p, f"W+ must be floating point, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise LatentFileError(p, f"W+ must have shape [N, num_ws, w_dim], got {list(arr.shape)}")
    expected = [num_ws, w_dim]
    if any(e is not None and e != a for e, a in zip(expected, arr.shape[1:])):
        want = ["N", num_ws if num_ws is not None else "num_ws", w_dim if w_dim is not None else "w_dim"]
        raise LatentFileError(p, f"W+ shape {list(arr.shape)} does not fit this network, which needs {want}")
    if not np.isfinite(arr).all():
        raise LatentFileError(p, "W+ contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


@torch.no_grad()
def render_ws(G, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False) -> np.ndarray:
    """W+ [N, num_ws, w_dim] -> uint8 [N, H, W, C], one latent per forward pass like the official script."""
    device = module_device(G)
    images = [to_uint8(G.synthesis(w.unsqueeze(0).to(device), noise_mode=noise_mode, force_fp32=force_fp32))[0]
              for w in ws]
    return np.stack(images)


def seed_filename(seed: int) -> str:
    return f"seed{seed:04d}.png"


def proj_filename(index: int) -> str:
    return f"proj{index:02d}.png"
