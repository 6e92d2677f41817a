"""Paired evaluation folders: find the pairs, load one pair with every check a bad file needs.

Layout (as ``../shared/data/dev/paired/`` and ``synth-masks`` output)::

    DIR/[<source>/]<id>/{masked.*, clean.*, gt_mask.png}     [index.csv beside the <id> folders]

A pair's *key* is its folder relative to ``DIR`` with POSIX separators
(``prajnasb/14``); results go to ``OUT/<key>/``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ..errors import InputImageError
from ..images import LoadedImage, load_image
from .masks import find_paired_items

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Pair:
    """Where one pair's files are."""

    key: str  # folder relative to the input folder, e.g. "prajnasb/14"
    folder: Path
    masked: Path
    clean: Optional[Path]
    gt_mask: Path
    flagged: bool = False  # index.csv: other_pasted_masks_outside_gt = 1


@dataclass
class LoadedPair:
    """A pair's pixels, checked: same size, a non-empty ground truth."""

    pair: Pair
    masked: LoadedImage
    clean: np.ndarray  # HxWx3 uint8
    gt: np.ndarray  # HxW bool, True = covered by the face mask (unknown)

    @property
    def size(self):
        return self.masked.size


def find_pairs(folder: PathLike) -> List[Pair]:
    """Every pair below ``folder``, sorted by key; raises when there is none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputImageError(root, "not a folder")
    pairs = []
    for it in find_paired_items(root):
        d = it.gt.parent
        key = d.relative_to(root).as_posix()
        if key == ".":
            key = d.name
        pairs.append(Pair(key=key, folder=d, masked=it.masked, clean=it.clean, gt_mask=it.gt, flagged=it.flagged))
    if not pairs:
        raise InputImageError(root, "no pairs found: expected sub-folders holding masked.*, clean.* and gt_mask.png")
    return sorted(pairs, key=lambda p: p.key)


def load_gt_mask(path: PathLike) -> np.ndarray:
    """A ground-truth mask PNG -> HxW bool (any channel > 127 counts as masked)."""
    img = load_image(path)
    return np.asarray(img.pixels).max(axis=2) > 127


def load_pair(pair: Pair) -> LoadedPair:
    """Load and check a pair; every problem is an :class:`InputImageError` naming the file."""
    if pair.clean is None:
        raise InputImageError(pair.folder, "no clean.* photo beside masked.* (needed as the ground truth)")
    masked = load_image(pair.masked)
    clean = load_image(pair.clean).pixels
    gt = load_gt_mask(pair.gt_mask)
    w, h = masked.size
    if clean.shape[:2] != (h, w):
        raise InputImageError(pair.clean, f"clean photo is {clean.shape[1]}x{clean.shape[0]} pixels but the masked "
                                          f"photo {pair.masked.name} is {w}x{h}: pairs must be pixel-aligned")
    if gt.shape != (h, w):
        raise InputImageError(pair.gt_mask, f"ground-truth mask is {gt.shape[1]}x{gt.shape[0]} pixels but the "
                                            f"masked photo {pair.masked.name} is {w}x{h}")
    if not gt.any():
        raise InputImageError(pair.gt_mask, "ground-truth mask is empty (no pixel > 127)")
    if gt.all():
        raise InputImageError(pair.gt_mask, "ground-truth mask covers the whole photo")
    return LoadedPair(pair=pair, masked=masked, clean=np.ascontiguousarray(clean), gt=gt)
