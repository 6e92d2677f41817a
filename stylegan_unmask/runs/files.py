"""The photos of a folder run and where each one's outputs go."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

from ..errors import UnmaskError
from ..images import IMAGE_EXTENSIONS

__all__ = ["BatchItem", "list_images", "plan_items"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class BatchItem:
    """One input photo and where its outputs go."""

    source: Path
    file: str  # path relative to the input folder, POSIX separators (the summary's `file`)
    out_rel: str  # output folder relative to the batch output folder
    outdir: Path


def list_images(folder: PathLike, recursive: bool = False, exclude: Iterable[PathLike] = ()) -> List[Path]:
    """Image files (by extension, case-insensitive) in ``folder``, sorted by relative path.

    Hidden files and anything under an ``exclude`` folder (the output folder,
    when it lies inside the input folder) are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UnmaskError(f"{root}: not a folder")
    excluded = [Path(e).resolve() for e in exclude]
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = []
    for p in candidates:
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
            continue
        rp = p.resolve()
        if any(rp == e or e in rp.parents for e in excluded):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def plan_items(folder: PathLike, files: Sequence[Path], outdir: PathLike) -> List[BatchItem]:
    """Give every photo its own output folder: its relative path without the extension.

    Photos that would share a folder (``a.jpg`` and ``a.png``) get the
    extension appended (``a_jpg``, ``a_png``). Computed over the full list, so
    every shard agrees on the names.
    """
    root, out = Path(folder), Path(outdir)
    rels = [f.relative_to(root) for f in files]
    stems = [r.with_suffix("").as_posix() for r in rels]
    counts: Dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    items = []
    for f, rel, stem in zip(files, rels, stems):
        name = stem if counts[stem.lower()] == 1 else f"{stem}_{rel.suffix.lstrip('.').lower()}"
        items.append(BatchItem(source=f, file=rel.as_posix(), out_rel=name, outdir=out / name))
    return items
