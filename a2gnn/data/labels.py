"""Folders of label maps (``<folder>/<image id>.png``, (H, W) uint8, 255 = unknown): seeds M_I / M_B / M_F / M_g,
pseudo labels of every method, a user's annotation maps. One reader, :class:`LabelFolder`, checks what every caller
needs: that the file exists, that its size is the image's and that its values are class indices or 255; each
problem is a :class:`a2gnn.core.io.DataError` naming the file (``<what> is 3x3, the image is 16x12``)."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from a2gnn.core.io import IGNORE_INDEX, DataError, read_label


def size_text(shape: Sequence[int]) -> str:
    """``(H, W, ...)`` -> ``"WxH"``."""
    return f"{shape[1]}x{shape[0]}"


def check_label_values(path: os.PathLike | str, label: np.ndarray, num_classes: int, what: str = "label map") -> None:
    """DataError naming ``path`` if a value of ``label`` is neither a class index (< ``num_classes``) nor 255."""
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        values = sorted(set(label[bad].tolist()))
        raise DataError(path, f"{what} values {values[:8]} are not class indices 0..{num_classes - 1} or "
                              f"{IGNORE_INDEX}")


def read_label_checked(path: os.PathLike | str, shape: Sequence[int] | None = None, num_classes: int | None = None,
                       what: str = "label map", hint: str = "") -> np.ndarray:
    """The label map at ``path``, (H, W) uint8, checked: it exists, its size is ``shape`` (H, W) when given, its
    values are class indices or 255 when ``num_classes`` is given. ``hint`` is appended to a size error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} is missing")
    label = read_label(path)
    if shape is not None and label.shape != tuple(shape[:2]):
        raise DataError(path, f"{what} is {size_text(label.shape)}, the image is {size_text(shape)}"
                              + (f" {hint}" if hint else ""))
    if num_classes is not None:
        check_label_values(path, label, num_classes, what)
    return label


@dataclasses.dataclass(frozen=True)
class LabelFolder:
    """``root/<image id>.png`` label maps of one kind (``what`` names them in errors: "M_B", "pseudo label", ...).

    ``num_classes`` (when given) bounds the values; ``hint`` is appended to a size error (where the likely cause is
    known, e.g. maps written for another ``dataset.max_side``)."""

    root: Path
    what: str = "label map"
    num_classes: int | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.png"

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids whose map is absent."""
        return [i for i in ids if not self.path(i).is_file()]

    def check_complete(self, ids: Sequence[str]) -> None:
        """DataError naming the folder if it is missing, else the first missing map of ``ids`` (and how many more)."""
        if not self.root.is_dir():
            raise DataError(self.root, f"{self.what} folder is missing")
        absent = self.missing(ids)
        if absent:
            more = f" ({len(absent) - 1} more of the {len(ids)} images' maps missing)" if len(absent) > 1 else ""
            raise DataError(self.path(absent[0]), f"{self.what} is missing{more}")

    def read(self, image_id: str, shape: Sequence[int] | None = None) -> np.ndarray:
        """The map of ``image_id``, checked (:func:`read_label_checked`) against the image size ``shape`` (H, W)."""
        return read_label_checked(self.path(image_id), shape, self.num_classes, self.what, self.hint)


def load_seed_pair(dataset: typing.Any, seed_dir: os.PathLike | str, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and its seed label map (H, W) uint8 from ``seed_dir/<id>.png`` (size checked)."""
    image = dataset.image(image_id)
    return image, LabelFolder(seed_dir, "seed map").read(image_id, image.shape)
