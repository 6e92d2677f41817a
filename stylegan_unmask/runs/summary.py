"""What a folder run reports: one ``BatchRecord`` per photo, ``summary.csv`` and ``index.html``."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..atomic import atomic_write_text
from .index_html import IndexEntry, render_index_html

__all__ = ["BatchRecord", "SUMMARY_FIELDS", "THUMB_INPUT", "THUMB_RESULT", "write_summary_csv", "read_summary_csv",
           "write_reports"]

SUMMARY_FIELDS = ("file", "status", "error", "seconds", "final_loss", "psnr", "outdir")
THUMB_INPUT = "thumb_input.jpg"
THUMB_RESULT = "thumb_result.jpg"


@dataclass
class BatchRecord:
    """One row of ``summary.csv``."""

    file: str
    status: str  # ok | failed | skipped | pending
    error: str = ""
    seconds: Optional[float] = None
    final_loss: Optional[float] = None
    psnr: Optional[float] = None
    outdir: str = ""

    def row(self) -> Dict[str, str]:
        def num(v, fmt):
            return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

        return {"file": self.file, "status": self.status, "error": self.error, "seconds": num(self.seconds, ".2f"),
                "final_loss": num(self.final_loss, ".6g"), "psnr": num(self.psnr, ".3f"), "outdir": self.outdir}

    @classmethod
    def from_row(cls, row: Dict[str, str]) -> "BatchRecord":
        def num(key):
            v = (row.get(key) or "").strip()
            return float(v) if v else None

        return cls(file=row["file"], status=row["status"], error=row.get("error", ""), seconds=num("seconds"),
                   final_loss=num("final_loss"), psnr=num("psnr"), outdir=row.get("outdir", ""))


def write_summary_csv(path: Path, records: Iterable[BatchRecord]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.row())
    return atomic_write_text(path, buf.getvalue())


def read_summary_csv(path: Path) -> List[BatchRecord]:
    with open(path, newline="", encoding="utf-8") as f:
        return [BatchRecord.from_row(row) for row in csv.DictReader(f)]


def _index_entries(records: Iterable[BatchRecord], picture: str = "comparison.png") -> List[IndexEntry]:
    """``picture``: the per-photo image shown in the comparison column (``completions.png`` with samples)."""
    entries = []
    for r in records:
        def rel(name: str) -> Optional[str]:
            # ok/skipped photos have every output (their done marker says so): no stat() per row.
            if not r.outdir or r.status not in ("ok", "skipped"):
                return None
            return f"{r.outdir}/{name}"

        entries.append(IndexEntry(name=r.file, status=r.status, error=r.error, seconds=r.seconds,
                                  final_loss=r.final_loss, psnr=r.psnr, input_thumb=rel(THUMB_INPUT),
                                  result_thumb=rel(THUMB_RESULT), comparison=rel(picture),
                                  outdir=r.outdir if r.status in ("ok", "skipped") else None))
    return entries


def write_reports(outdir: Path, records: Sequence[BatchRecord], settings: Dict[str, object],
                  note: str = "") -> Tuple[Path, Path]:
    """``summary.csv`` and ``index.html`` for ``records`` (atomic rewrites)."""
    csv_path = write_summary_csv(outdir / "summary.csv", records)
    picture = "completions.png" if int(settings.get("samples", 1) or 1) > 1 else "comparison.png"
    html = render_index_html(_index_entries(records, picture), title=f"stylegan-unmask batch: {outdir.name}",
                             settings=settings, note=note)
    return csv_path, atomic_write_text(outdir / "index.html", html)
