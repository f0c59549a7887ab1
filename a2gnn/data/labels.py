"""Folders of label maps (``<folder>/<image id>.png``, (H, W) uint8, 255 = unknown): seeds M_I / M_B / M_F / M_g,
pseudo labels of every method, ground-truth-like PNGs. One reader, :class:`LabelFolder`, checks what every caller
needs: that the file exists, that its size is the image's and that its values are class indices or 255; each
problem is a :class:`a2gnn.core.io.DataError` naming the file."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import numpy as np

from a2gnn.core.io import IGNORE_INDEX, DataError, read_label


def load_seed_pair(dataset: typing.Any, seed_dir: os.PathLike | str, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and its seed label map (H, W) uint8 from ``seed_dir/<id>.png``.

    A seed map whose size differs from the image raises DataError naming the seed file.
    """
    image = dataset.image(image_id)
    path = Path(seed_dir) / f"{image_id}.png"
    seed = read_label(path)
    if seed.shape != image.shape[:2]:
        raise DataError(path, f"seed map is {_size(seed)}, image is {_size(image)}")
    return image, seed


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"
