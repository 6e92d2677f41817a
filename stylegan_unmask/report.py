"""Pictures and pages that summarise a run: comparison grids and the batch index.

The pipeline (``comparison.png``), the batch runner (``index.html``) and the
notebook all show the same labelled panels, so they are drawn in one place.
Everything here is plain PIL/numpy and string formatting: no torch.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw, ImageFont


PathLike = Union[str, Path]


#: Colour of the "hidden by the face mask" overlay (a magenta-red that is rare in faces).
MASK_COLOUR = (255, 0, 96)


# --------------------------------------------------------------------------- panels
def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {a.dtype}")
    return np.ascontiguousarray(a[:, :, :3])


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize an image to ``size`` x ``size`` (LANCZOS down, BICUBIC up)."""
    rgb = _as_rgb(pixels)
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    resample = Image.LANCZOS if max(h, w) > size else Image.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize((size, size), resample))


def mask_overlay(image: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int] = MASK_COLOUR,
                 alpha: float = 0.5) -> np.ndarray:
    """The image with the masked (hidden) region tinted and its outline drawn.

    A tint keeps the face visible under it, so a reader can judge whether the
    mask region really covers the face mask and not more.
    """
    rgb = _as_rgb(image).astype(np.float32)
    m = np.asarray(mask, dtype=bool)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {rgb.shape[:2]}")
    out = rgb.copy()
    tint = np.asarray(colour, np.float32)
    out[m] = (1 - alpha) * rgb[m] + alpha * tint
    # 1-px outline: masked pixels with an unmasked 4-neighbour.
    edge = np.zeros_like(m)
    edge[1:, :] |= m[1:, :] & ~m[:-1, :]
    edge[:-1, :] |= m[:-1, :] & ~m[1:, :]
    edge[:, 1:] |= m[:, 1:] & ~m[:, :-1]
    edge[:, :-1] |= m[:, :-1] & ~m[:, 1:]
    out[edge] = tint
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def labelled_panel(pixels: np.ndarray, label: str, size: int) -> Image.Image:
    """A ``size`` x ``size`` image with ``label`` in a caption bar underneath."""
    font_size = max(11, size // 16)
    bar = font_size + 10
    panel = Image.new("RGB", (size, size + bar), (24, 24, 24))
    panel.paste(Image.fromarray(resize_square(pixels, size)), (0, 0))
    draw = ImageDraw.Draw(panel)
    font = _font(font_size)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    x = max(2, (size - (right - left)) // 2)
    y = size + (bar - (bottom - top)) // 2 - top
    draw.text((x, y), label, fill=(240, 240, 240), font=font)
    return panel


def comparison_grid(panels: Sequence[Tuple[str, np.ndarray]], panel_size: int = 256,
                    columns: Optional[int] = None, gap: int = 4) -> np.ndarray:
    """Labelled panels side by side (``columns`` per row; default all in one row).

    Returns uint8 HxWx3 so callers can save it with ``images.save_image``.
    """
    if not panels:
        raise ValueError("comparison_grid needs at least one panel")
    columns = columns or len(panels)
    tiles = [labelled_panel(p, label, panel_size) for label, p in panels]
    tw, th = tiles[0].size
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * tw + (columns - 1) * gap, rows * th + (rows - 1) * gap), (255, 255, 255))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid.paste(tile, (c * (tw + gap), r * (th + gap)))
    return np.asarray(grid)


def thumbnail(pixels: np.ndarray, max_side: int = 192) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most ``max_side``."""
    rgb = _as_rgb(pixels)
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


# --------------------------------------------------------------------------- batch index
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
