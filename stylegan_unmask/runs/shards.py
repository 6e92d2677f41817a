"""Sharding a folder run: each process takes ``files[i::n]``; whichever finishes last merges the reports.

With ``--shard i/n``, or under ``torchrun`` (RANK / WORLD_SIZE), each process
writes ``summary-rank{i}.csv``; rank 0 merges what exists as it goes, and the
last rank to finish merges the complete ``summary.csv`` / ``index.html``. No
process group or barrier is needed, so shards may run at very different
speeds (or on machines that share only the output folder) without a
collective timing out.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch.distributed as dist

from ..errors import UnmaskError
from .files import BatchItem
from .summary import BatchRecord, read_summary_csv, write_reports

__all__ = ["parse_shard", "resolve_shard", "flag_path", "merge_shards", "barrier_if_distributed"]


def parse_shard(text: str) -> Tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UnmaskError(f"--shard {text!r}: expected i/n, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        raise UnmaskError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def resolve_shard(shard: Optional[Union[str, Tuple[int, int]]] = None) -> Tuple[int, int]:
    """(rank, world size): from ``shard``, else torchrun's RANK/WORLD_SIZE, else torch.distributed, else (0, 1)."""
    if shard is not None:
        return parse_shard(shard) if isinstance(shard, str) else (int(shard[0]), int(shard[1]))
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if world >= 1 and 0 <= rank < world:
            return rank, world
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def flag_path(outdir: Path, rank: int, world: int) -> Path:
    """The file a shard writes when it is complete."""
    return outdir / f".shard-{rank}-of-{world}.complete"


def merge_shards(outdir: Path, items: Sequence[BatchItem], world: int, settings: Dict[str, object],
                 final_only: bool = False) -> Optional[Tuple[Path, Path]]:
    """Merge ``summary-rank*.csv`` into ``summary.csv`` + ``index.html``.

    With ``final_only`` the merge happens only once every shard has flagged
    completion (returns None otherwise). Photos no shard has reported yet are
    listed as pending.
    """
    complete = all(flag_path(outdir, r, world).is_file() for r in range(world))
    if final_only and not complete:
        return None
    known: Dict[str, BatchRecord] = {}
    for r in range(world):
        part = outdir / f"summary-rank{r}.csv"
        if part.is_file():
            try:
                for rec in read_summary_csv(part):
                    known[rec.file] = rec
            except (OSError, KeyError, ValueError):
                continue
    records = [known.get(it.file) or BatchRecord(file=it.file, status="pending", outdir=it.out_rel) for it in items]
    note = f"merged from {world} shards" + ("" if complete else " (still running)")
    return write_reports(outdir, records, settings, note=note)


def barrier_if_distributed() -> None:
    """Under a caller's own process group, wait for every rank so rank 0's merge sees all shards."""
    try:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    except Exception:  # noqa: BLE001 - the flag files still make the last rank merge
        pass
