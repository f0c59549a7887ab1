"""A semantic-segmentation training / evaluation set: images from any dataset reader, labels from any source.

Weak labels come in as a dataset (detectron2 PointSup style): the images are those of a reader opened by
:func:`a2gnn.data.formats.open_dataset` (anything with ``ids``, ``class_names`` / ``num_classes``, ``image(id)``,
and ``semantic_gt(id)`` for ground truth), and the label maps are either

* ``GT_LABELS`` (``"gt"``): the reader's ground truth (the fully supervised upper bound), or
* a folder of ``<id>.png`` class-index maps (255 = ignore), e.g. ``outputs/pseudo_labels_a2gnn`` or ``outputs/seeds/M_B``.

Every label file is checked to exist before anything is read; a missing file, a map whose size differs from
its image or a value that is neither a class index nor 255 raises :class:`a2gnn.core.io.DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from a2gnn.data.resize import ResizedDataset, resize_label
from a2gnn.core.io import DataError
from a2gnn.data.labels import LabelFolder, check_label_values, size_text

GT_LABELS = "gt"
"""``labels`` value that selects the reader's ground truth instead of a folder."""


class SegmentationDataset:
    """(image, label map) pairs of the images of ``reader`` with labels from ``labels`` (``"gt"`` or a folder).

    Shapes: :meth:`image` (H, W, 3) uint8, :meth:`label` (H, W) uint8 (255 = ignore).
    """

    def __init__(self, reader: Any, labels: os.PathLike | str = GT_LABELS):
        self.reader = reader
        self.ids: list[str] = list(reader.ids)
        self.class_names: tuple[str, ...] = tuple(reader.class_names)
        self.num_classes = len(self.class_names)
        self.from_gt = str(labels) == GT_LABELS
        self.folder = None if self.from_gt else LabelFolder(labels, "label map")  # values: checked in label()
        if self.folder is not None:
            self.folder.check_complete(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def label_path(self, image_id: str) -> Path:
        """The label file of ``image_id`` (for the ground truth: the reader's file where it has one)."""
        if self.folder is not None:
            return self.folder.path(image_id)
        root, sub = getattr(self.reader, "root", None), getattr(self.reader, "segmentation_dir", None)
        return Path(root) / sub / f"{image_id}.png" if root is not None and sub else Path(f"<gt of {image_id}>")

    def image(self, image_id: str) -> np.ndarray:
        return self.reader.image(image_id)

    def label(self, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Label map of ``image_id``, checked against the image size ``shape`` (H, W) when given.

        With ``dataset.max_side`` the stages see shrunk photos while pseudo labels are written at full size: a
        label map of the photo's original size is shrunk to ``shape`` (nearest neighbour, as the ground truth)."""
        path = self.label_path(image_id)
        label = self.reader.semantic_gt(image_id) if self.from_gt else self.folder.read(image_id)
        if (shape is not None and isinstance(self.reader, ResizedDataset)
                and label.shape == self.reader.original_size(image_id)):
            label = resize_label(label, shape)
        if shape is not None and label.shape != tuple(shape):
            raise DataError(path, f"label map is {size_text(label.shape)}, the image is {size_text(shape)}")
        check_label_values(path, label, self.num_classes)
        return label

    def sample(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) of ``image_id``, sizes checked."""
        image = self.image(image_id)
        return image, self.label(image_id, image.shape[:2])
