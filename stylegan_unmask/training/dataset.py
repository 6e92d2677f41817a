"""A prepared image folder or zip → a uint8 tensor in memory.

Small datasets (22k faces at 64 px are 280 MB) fit in memory, which keeps the
CPU's two cores on the networks instead of on PNG decoding. Any folder or zip
of same-size square RGB images works (NVIDIA's layout included).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..errors import UnmaskError
from ..images import IMAGE_EXTENSIONS
from .dataset_tool import read_dataset_record


@dataclass
class ImageDataset:
    """All images as ``[N, 3, R, R]`` uint8, plus what ``dataset.json`` says about them."""

    images: torch.Tensor
    path: Path
    names: List[str]
    record: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def crop_scale(self) -> float:
        return float(self.record.get("crop_scale", 1.0))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Images ``indices`` as float [-1, 1]."""
        return self.images[indices].float() / 127.5 - 1


def load_dataset(path, limit: Optional[int] = None, resolution: Optional[int] = None,
                 progress: bool = True) -> ImageDataset:
    from PIL import Image
    from tqdm import tqdm

    path = Path(path)
    if not path.exists():
        raise UnmaskError(f"{path}: no such dataset (a folder or .zip made by `stylegan-unmask dataset`)")
    if path.is_dir():
        names = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        read = lambda name: (path / name).read_bytes()  # noqa: E731
        zf = None
    else:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise UnmaskError(f"{path}: not a dataset folder or zip ({e})") from None
        names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        read = zf.read
    if not names:
        raise UnmaskError(f"{path}: holds no images")
    if limit is not None:
        names = names[:limit]
    arrays = []
    for name in tqdm(names, desc=f"loading {path.name}", unit="img", disable=not progress, leave=False):
        try:
            with Image.open(io.BytesIO(read(name))) as im:
                a = np.asarray(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - any decoder failure names the file
            raise UnmaskError(f"{path}/{name}: cannot decode image ({e})") from None
        if a.shape[0] != a.shape[1] or (arrays and a.shape != arrays[0].shape):
            raise UnmaskError(f"{path}/{name}: is {a.shape[1]}x{a.shape[0]}; every image must be square and the "
                              f"same size ({arrays[0].shape[1] if arrays else '?'} px)")
        arrays.append(a)
    if zf is not None:
        zf.close()
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if resolution is not None and images.shape[-1] != resolution:
        raise UnmaskError(f"{path}: images are {images.shape[-1]} px but {resolution} px were asked for")
    res = images.shape[-1]
    if res < 4 or res & (res - 1):
        raise UnmaskError(f"{path}: image size {res} px is not a power of two (StyleGAN2 needs 2^k)")
    return ImageDataset(images=images, path=path, names=names, record=read_dataset_record(path))
