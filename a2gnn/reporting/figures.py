"""Qualitative figure like the paper's Fig. 6: one row per image, one column per source (image, ground truth,
pseudo label, DeepLab prediction, Mask R-CNN instances).

Pure drawing on numpy arrays + PIL, no model code (the stage ``stages/figure.py`` runs the models):

* :func:`colourise` -- class-index map -> RGB with the VOC palette of :func:`a2gnn.core.io.write_label`;
* :func:`overlay_instances` -- binary masks blended over an image, each instance a distinct colour, outlined;
  only masked pixels change;
* :func:`assemble_grid` -- rows of equally many (H, W, 3) panels -> one RGB grid of fixed-size cells with
  column titles (and optional row captions);
* :func:`write_png` -- the grid as a PNG, atomically and with deterministic bytes (no metadata chunks).
"""

from __future__ import annotations

import colorsys
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from a2gnn.core.io import atomic_file, voc_palette

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def colourise(label: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB in the VOC palette (255 = ignore, VOC's cream)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label.shape}")
    return voc_palette()[label.astype(np.uint8)]


def instance_colours(n: int) -> np.ndarray:
    """``n`` distinct saturated RGB colours (golden-ratio hue steps), (n, 3) uint8, the same for every call."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.85, 1.0)
        out[k] = (round(r * 255), round(g * 255), round(b * 255))
    return out


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of a binary mask: mask pixels with a 4-neighbour outside the mask (or on the image edge)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay_instances(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with instance ``k`` of ``masks`` ((H, W) bool each) blended in colour ``k`` of
    :func:`instance_colours` and outlined in it. Later masks are drawn over earlier ones; pixels outside every
    mask are unchanged."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    out = image.astype(np.float32)
    for colour, mask in zip(instance_colours(len(masks)).astype(np.float32), masks):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {image.shape[:2]}")
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
        out[mask_outline(mask)] = colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: the bitmap font only
        return ImageFont.load_default()


def _text_cell(text: str, size: tuple[int, int], font_size: int) -> Image.Image:
    """``text`` centred in a white (h, w) = ``size`` box, the font shrunk (down to 6 px) until it fits, then clipped."""
    box = Image.new("RGB", (size[1], size[0]), BACKGROUND)
    draw = ImageDraw.Draw(box)
    for fs in range(font_size, 5, -1):
        font = _font(fs)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= size[1] - 2 and bottom - top <= size[0]:
            break
    draw.text(((size[1] - (right - left)) // 2 - left, (size[0] - (bottom - top)) // 2 - top), text, fill=TEXT, font=font)
    return box


def _fit(panel: np.ndarray, cell: tuple[int, int], nearest: bool) -> Image.Image:
    """``panel`` scaled (aspect kept) to fit ``cell`` = (h, w)."""
    h, w = panel.shape[:2]
    scale = min(cell[0] / h, cell[1] / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(np.ascontiguousarray(panel, dtype=np.uint8))
    return im if im.size == size else im.resize(size, Image.NEAREST if nearest else Image.BILINEAR)


def assemble_grid(
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str],
    cell: tuple[int, int] = (160, 160),
    captions: Sequence[str] | None = None,
    nearest: Sequence[bool] | None = None,
    margin: int = 4,
    header: int = 20,
    font_size: int = 12,
) -> np.ndarray:
    """One RGB figure: a header line of column ``titles``, then one row of cells per entry of ``rows``.

    Every panel ((H, W, 3) uint8, any size) is scaled to fit a ``cell`` = (h, w) with its aspect kept and centred
    in it (white around); ``nearest[j]`` resizes column ``j`` by nearest neighbour (label maps) rather than
    bilinearly. ``captions[i]`` (e.g. the image id) is written at the top left of row ``i``'s first panel.
    Shape: (header + n_rows * (h + margin) + margin, n_cols * (w + margin) + margin, 3).
    """
    n_cols = len(titles)
    if any(len(row) != n_cols for row in rows):
        raise ValueError(f"every row needs {n_cols} panels (one per title)")
    if captions is not None and len(captions) != len(rows):
        raise ValueError("one caption per row")
    nearest = [False] * n_cols if nearest is None else list(nearest)
    ch, cw = cell
    width = n_cols * (cw + margin) + margin
    height = header + len(rows) * (ch + margin) + margin
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    for j, title in enumerate(titles):
        canvas.paste(_text_cell(title, (header, cw), font_size), (margin + j * (cw + margin), 0))
    for i, row in enumerate(rows):
        y0 = header + i * (ch + margin)
        for j, panel in enumerate(row):
            box = Image.new("RGB", (cw, ch), BACKGROUND)
            im = _fit(panel, cell, nearest[j])
            px, py = (cw - im.size[0]) // 2, (ch - im.size[1]) // 2
            box.paste(im, (px, py))
            if j == 0 and captions is not None and captions[i]:
                draw = ImageDraw.Draw(box)  # drawn inside the cell: a long caption is clipped, never spills over
                font = _font(font_size)
                left, top, right, bottom = draw.textbbox((px + 2, py + 2), captions[i], font=font)
                draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
                draw.text((px + 2, py + 2), captions[i], fill=(255, 255, 255), font=font)
            canvas.paste(box, (margin + j * (cw + margin), y0))
    return np.asarray(canvas, dtype=np.uint8).copy()


def write_png(path: os.PathLike | str, figure: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 figure as a PNG, atomically; no text/time chunks, so equal arrays give equal bytes."""
    im = Image.fromarray(np.ascontiguousarray(figure, dtype=np.uint8))
    with atomic_file(path) as tmp:
        im.save(tmp, format="PNG", pnginfo=None, optimize=False, compress_level=9)
