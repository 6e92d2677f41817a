"""``index.html`` of an evaluation: one row per photo, masked | each method | ground truth, sortable.

Every cell shows the picture and its figures; a select box sorts the rows by
any (method, figure), in the browser (a few lines of inline JavaScript, no
external files). Names are HTML-escaped and links relative, so the folder can
be moved or served as is. With ``--samples`` ours' cell also shows its
completions, the first start's and the oracle's LPIPS_m and the spread.
"""
from __future__ import annotations

import html
import json
from typing import Dict, Mapping, Optional, Sequence
from urllib.parse import quote

from .metrics import METRIC_INFO, METRIC_NAMES
from .methods import method_class
from .stats import value_of

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}
th{background:#f0f0f0}tr.failed td{background:#fff0f0}img{display:block}
.m{font-size:80%;font-family:monospace;white-space:pre;line-height:1.25}
.err{font-family:monospace;font-size:85%;max-width:40em;white-space:pre-wrap;color:#a00}
"""

_JS = """
function sortRows(){
  var sel=document.getElementById('sortkey').value, dir=document.getElementById('sortdir').value;
  var body=document.getElementById('rows'), rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
    if(sel==='key'){var r=a.dataset.key.localeCompare(b.dataset.key);return dir==='asc'?r:-r;}
    var x=parseFloat(a.getAttribute('data-'+sel)), y=parseFloat(b.getAttribute('data-'+sel));
    var nx=isNaN(x), ny=isNaN(y); if(nx&&ny) return 0; if(nx) return 1; if(ny) return -1;
    return dir==='asc'? x-y : y-x;});
  rows.forEach(function(r){body.appendChild(r);});
}
"""


def _href(rel: str) -> str:
    return html.escape(quote(rel), quote=True)


def _label(method: str) -> str:
    try:
        return method_class(method).label
    except Exception:  # noqa: BLE001
        return method


def _fmt(name: str, v) -> str:
    f = value_of(v)
    if f is None:
        return "-"
    if METRIC_INFO[name].kind == "bool":
        return "yes" if f >= 0.5 else "no"
    return f"{f:.2f}" if name.startswith("psnr") else f"{f:.3f}"


_SHORT = {"lpips_mask": "LPIPS_m", "psnr_mask": "PSNR_m", "ssim_mask": "SSIM_m", "psnr_full": "PSNR",
          "ssim_full": "SSIM", "identity_distance": "ID", "identity_same": "same", "face_found": "face"}
#: With --samples: the extra figures shown and sortable on a row that has them (column, label, format as).
_SAMPLE_FIGURES = (("lpips_mask_first", "LPIPS_m of the first start", "lpips_mask"),
                   ("lpips_mask_oracle", "LPIPS_m of the oracle (best by the ground truth)", "lpips_mask"),
                   ("spread", "spread (mean pairwise LPIPS_m)", "lpips_mask"))


def _figure_names(rows: Sequence[Mapping[str, object]]) -> Dict[str, list]:
    """method -> the figures its rows carry: every metric, and the sample figures where a row has them."""
    out: Dict[str, list] = {}
    for r in rows:
        names = out.setdefault(str(r["method"]), list(METRIC_NAMES))
        if r.get("samples") not in (None, "") and _SAMPLE_FIGURES[0][0] not in names:
            names += [f for f, _, _ in _SAMPLE_FIGURES]
    return out


def _sample_lines(r: Mapping[str, object]) -> list:
    """The sample figures of a row, as lines under its figures (none without --samples)."""
    if r.get("samples") in (None, ""):
        return []
    oracle = value_of(r.get("oracle_sample"))
    return [f"{'samples':<8}{r.get('samples')}",
            f"{'first':<8}{_fmt('lpips_mask', r.get('lpips_mask_first'))}",
            f"{'oracle':<8}{_fmt('lpips_mask', r.get('lpips_mask_oracle'))}"
            + ("" if oracle is None else f" (start {oracle:.0f})"),
            f"{'spread':<8}{_fmt('lpips_mask', r.get('spread'))}"]


def render_eval_html(rows: Sequence[Mapping[str, object]], methods: Sequence[str], pairs: Sequence[object],
                     status_by_key: Mapping[str, str], settings: Optional[Mapping[str, object]] = None,
                     plots: Sequence[str] = (), summary_text: str = "") -> str:
    esc = html.escape
    by: Dict[str, Dict[str, Mapping[str, object]]] = {}
    for r in rows:
        by.setdefault(str(r["id"]), {})[str(r["method"])] = r
    shown = [m for m in methods if m != "none"]  # the masked photo has its own column
    carried = _figure_names(rows)
    labels = {**{n: METRIC_INFO[n].label for n in METRIC_NAMES}, **{f: lab for f, lab, _ in _SAMPLE_FIGURES}}
    opts = ["<option value='key'>photo id</option>"]
    for m in methods:
        for name in carried.get(m, METRIC_NAMES):
            opts.append(f"<option value='{esc(m)}-{name}'>{esc(_label(m))}: {esc(labels[name])}</option>")
    counts = {s: sum(v == s for v in status_by_key.values()) for s in ("ok", "skipped", "failed")}
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>stylegan-unmask evaluation</title>",
           f"<style>{_CSS}</style><script>{_JS}</script></head><body>",
           "<h1>stylegan-unmask evaluation</h1>",
           f"<p>{len(pairs)} photos: {counts['ok']} evaluated, {counts['skipped']} reused from an earlier run, "
           f"{counts['failed']} failed. Figures against the clean photo; <code>_m</code> = inside the ground-truth "
           "mask. See docs/evaluation.md. <a href='metrics.csv'>metrics.csv</a> · "
           "<a href='summary.csv'>summary.csv</a></p>"]
    if settings:
        out.append("<details><summary>settings</summary><table>")
        out += [f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in settings.items()]
        out.append("</table></details>")
    if summary_text:
        out.append(f"<h2>Summary</h2><pre>{esc(summary_text)}</pre>")
    for p in plots:
        out.append(f"<p><a href='{_href(p)}'><img src='{_href(p)}' alt='distributions' style='max-width:100%'></a></p>")
    failed = [(k, s) for k, s in status_by_key.items() if s == "failed"]
    if failed:
        out.append(f"<h2>Failures ({len(failed)})</h2><ul>")
        for k, _ in failed:
            errs = sorted({str(r.get('error') or '') for r in by.get(k, {}).values() if r.get("status") == "failed"})
            out.append(f"<li><b>{esc(k)}</b>: {esc('; '.join(e for e in errs if e))}</li>")
        out.append("</ul>")
    out.append("<p>sort by <select id='sortkey' onchange='sortRows()'>" + "".join(opts) + "</select> "
               "<select id='sortdir' onchange='sortRows()'><option value='asc'>ascending</option>"
               "<option value='desc'>descending</option></select></p>")
    head = ["photo", "masked" + (" (no change)" if "none" in methods else "")] + [_label(m) for m in shown] + [
        "ground truth"]
    out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody id='rows'>")
    for p in pairs:
        key = p.key
        got = by.get(key, {})
        status = status_by_key.get(key, "pending")
        attrs = [f"data-key='{esc(key, quote=True)}'"]
        for m, r in got.items():
            for name in carried.get(m, METRIC_NAMES):
                v = value_of(r.get(name)) if r.get("status") == "ok" else None
                if v is not None:
                    attrs.append(f"data-{esc(m)}-{name}='{v:.6g}'")
        cls = "failed" if status == "failed" else ""
        cells = [f"<td>{esc(key)}<br><small>{esc(status)}</small>"
                 + (" <small>(flagged: other masks outside GT)</small>" if getattr(p, "flagged", False) else "")
                 + "</td>"]

        def picture(thumb: str, full: Optional[str]) -> str:
            if status not in ("ok", "skipped") and not got:
                return ""
            link = full or thumb
            return (f"<a href='{_href(key + '/' + link)}'><img src='{_href(key + '/' + thumb)}' height='160' "
                    f"alt=''></a>")

        def figures(m: str) -> str:
            r = got.get(m)
            if r is None:
                return ""
            if r.get("status") != "ok":
                return f"<div class='err'>{esc(str(r.get('error') or r.get('status')))}</div>"
            lines = [f"{_SHORT[n]:<8}{_fmt(n, r.get(n))}" for n in METRIC_NAMES]
            s = value_of(r.get("seconds"))
            if s is not None:
                lines.append(f"{'seconds':<8}{s:.2f}")
            strip = f"thumb_{m}_samples.jpg"
            pic = (f"<a href='{_href(key + '/' + strip)}'><img src='{_href(key + '/' + strip)}' width='320' "
                   f"alt='completions'></a>") if r.get("samples") not in (None, "") else ""
            return "<div class='m'>" + esc("\n".join(lines + _sample_lines(r))) + "</div>" + pic

        ok_any = any(r.get("status") == "ok" for r in got.values())
        cells.append("<td>" + (picture("thumb_masked.jpg", "none.png" if "none" in got else None) if ok_any else "")
                     + figures("none") + "</td>")
        for m in shown:
            r = got.get(m)
            pic = picture(f"thumb_{m}.jpg", f"{m}.png") if r is not None and r.get("status") == "ok" else ""
            cells.append("<td>" + pic + figures(m) + "</td>")
        cells.append("<td>" + (picture("thumb_clean.jpg", None) if ok_any else "") + "</td>")
        out.append(f"<tr class='{cls}' {' '.join(attrs)}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(f"<script>var META={json.dumps({'methods': list(methods)})};</script></body></html>")
    return "\n".join(out) + "\n"
