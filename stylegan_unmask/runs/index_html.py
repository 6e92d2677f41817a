"""The batch run's ``index.html``: counts, failures first, then one row per photo with its pictures.

Every name is HTML-escaped and every link relative and percent-encoded, so the
folder can be moved or served as is and odd file names cannot break it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional
from urllib.parse import quote

import numpy as np

__all__ = ["IndexEntry", "render_index_html"]


@dataclass
class IndexEntry:
    """One row of the batch index. Paths are relative to the index file."""

    name: str
    status: str  # "ok" | "failed" | "skipped"
    error: str = ""
    seconds: Optional[float] = None
    final_loss: Optional[float] = None
    psnr: Optional[float] = None
    input_thumb: Optional[str] = None
    result_thumb: Optional[str] = None
    comparison: Optional[str] = None
    outdir: Optional[str] = None


def _href(rel: str) -> str:
    """A relative link: POSIX separators, every unsafe character percent-encoded."""
    return html.escape(quote(Path(rel).as_posix()), quote=True)


def _num(value: Optional[float], fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return format(value, fmt)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:middle}
th{background:#f0f0f0}tr.failed td{background:#fff0f0}tr.skipped td{color:#666}
img{display:block;max-width:none}td.err{font-family:monospace;font-size:90%;max-width:32em;white-space:pre-wrap}
.counts span{margin-right:1.5em}
"""


def render_index_html(entries: Iterable[IndexEntry], title: str = "stylegan-unmask batch",
                      settings: Optional[Mapping[str, object]] = None, note: str = "") -> str:
    """The batch ``index.html``: failures first, then one row per image.

    Every name is HTML-escaped and every link relative and percent-encoded, so
    the folder can be moved or served as is and odd file names cannot break it.
    """
    entries = list(entries)
    counts = {s: sum(e.status == s for e in entries) for s in ("ok", "skipped", "failed")}
    secs = [e.seconds for e in entries if e.status == "ok" and e.seconds is not None]
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{esc(title)}</h1>"]
    if note:
        out.append(f"<p>{esc(note)}</p>")
    out.append("<p class='counts'>" + "".join(
        f"<span><b>{counts[s]}</b> {s}</span>" for s in ("ok", "skipped", "failed"))
        + f"<span><b>{len(entries)}</b> images</span>"
        + (f"<span>{sum(secs):.1f} s computing ({sum(secs) / len(secs):.1f} s per image)</span>" if secs else "")
        + "</p>")
    if settings:
        out.append("<details><summary>settings</summary><table>")
        out += [f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in settings.items()]
        out.append("</table></details>")
    failed = [e for e in entries if e.status == "failed"]
    if failed:
        out.append(f"<h2>Failures ({len(failed)})</h2><ul>")
        out += [f"<li><b>{esc(e.name)}</b>: {esc(e.error)}</li>" for e in failed]
        out.append("</ul>")
    out.append("<h2>Results</h2><table><tr><th>#</th><th>file</th><th>status</th><th>input</th>"
               "<th>result</th><th>comparison</th><th>seconds</th><th>final loss</th><th>PSNR (dB)</th>"
               "<th>error</th></tr>")
    for i, e in enumerate(entries, 1):
        def img(rel: Optional[str], alt: str, height: int) -> str:
            if not rel:
                return ""
            return f"<a href='{_href(rel)}'><img src='{_href(rel)}' alt='{esc(alt)}' height='{height}'></a>"
        name = esc(e.name)
        if e.outdir:
            name = f"<a href='{_href(e.outdir)}/'>{name}</a>"
        out.append(
            f"<tr class='{esc(e.status)}'><td>{i}</td><td>{name}</td><td>{esc(e.status)}</td>"
            f"<td>{img(e.input_thumb, 'input', 128)}</td><td>{img(e.result_thumb, 'result', 128)}</td>"
            f"<td>{img(e.comparison, 'comparison', 128)}</td>"
            f"<td>{_num(e.seconds, '.1f')}</td><td>{_num(e.final_loss, '.4f')}</td><td>{_num(e.psnr, '.2f')}</td>"
            f"<td class='err'>{esc(e.error)}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"
