"""Pictures that summarise a result: mask overlays, labelled comparison grids, thumbnails.

The pipeline (``comparison.png``, video frames), the folder runs and the
evaluation (thumbnails in ``index.html``) and the notebook all show the same
panels, so they are drawn in one place. Plain PIL/numpy: no torch.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MASK_COLOUR", "resize_square", "mask_overlay", "labelled_panel", "comparison_grid", "thumbnail"]


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
