"""Large images: every stage works on images whose long side is at most ``dataset.max_side``.

Photos of several megapixels make the CAM, the affinity CNN and the graphs (one node per 8 x 8 cell: 65,536 nodes
for a 2048 x 2048 photo) slow and memory-hungry, and the paper's networks were trained on ~500 px VOC images.
:class:`ResizedDataset` wraps any reader (VOC, COCO) and presents every image whose long side exceeds
``max_side`` shrunk to it (aspect kept, sides rounded), with everything that goes with it:

* ``image``: area interpolation (``cv2.INTER_AREA``);
* ``annotation``: the image size and every box scaled, then rounded outwards (``floor`` of the top-left corner,
  ``ceil`` of the bottom-right one), clipped to the image and at least one pixel wide, so a box still contains
  its object;
* ``semantic_gt`` / instance maps: nearest neighbour (labels are never blended).

Images at most ``max_side`` long are passed through untouched, so a dataset of small images (the embedded
default, VOC's ~500 px) gives byte-identical results with or without the wrapper. The pseudo labels go back to
the original resolution (:func:`to_original`, nearest neighbour) when they are written, and are evaluated there
against the original ground truth. Time and memory per image are then bounded by ``max_side`` whatever the
photo's size.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from a2gnn.data.voc import Annotation, Box


def scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H', W') with max(H', W') <= max_side, aspect kept (rounded, at least 1); unchanged if already small enough."""
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def scale_box(box: Box, sy: float, sx: float, height: int, width: int) -> Box:
    """A half-open pixel box scaled by (sy, sx) and rounded outwards, clipped to (height, width), >= 1 px."""
    x1 = min(max(0, math.floor(box.x1 * sx)), width - 1)
    y1 = min(max(0, math.floor(box.y1 * sy)), height - 1)
    x2 = max(min(width, math.ceil(box.x2 * sx)), x1 + 1)
    y2 = max(min(height, math.ceil(box.y2 * sy)), y1 + 1)
    return dataclasses.replace(box, x1=x1, y1=y1, x2=x2, y2=y2)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label map to ``size`` = (H', W')."""
    if label.shape[:2] == tuple(size):
        return label
    return cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-interpolated resize of an (H, W, 3) image to ``size`` = (H', W') (returned as is if already that size)."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


class ResizedDataset:
    """A reader (VOC, COCO) whose images are at most ``max_side`` pixels long; ``original`` is the wrapped reader."""

    def __init__(self, original, max_side: int):
        self.original = original
        self.max_side = int(max_side)
        self.ids = original.ids
        self.class_names = original.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __getattr__(self, name):  # root, segmentation_dir, json_path, ... of the wrapped reader
        if name == "original":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.original, name)

    def image_path(self, image_id: str) -> Path:
        return self.original.image_path(image_id)

    def original_size(self, image_id: str) -> tuple[int, int]:
        ann = self.original.annotation(image_id)
        return ann.height, ann.width

    def size(self, image_id: str) -> tuple[int, int]:
        """(H', W') the stages see."""
        return scaled_size(*self.original_size(image_id), self.max_side)

    def image(self, image_id: str) -> np.ndarray:
        return resize_image(self.original.image(image_id), self.size(image_id))

    def annotation(self, image_id: str) -> Annotation:
        ann = self.original.annotation(image_id)
        height, width = self.size(image_id)
        if (height, width) == (ann.height, ann.width):
            return ann
        sy, sx = height / ann.height, width / ann.width
        boxes = tuple(scale_box(b, sy, sx, height, width) for b in ann.boxes)
        return dataclasses.replace(ann, width=width, height=height, boxes=boxes)

    def semantic_gt(self, image_id: str) -> np.ndarray:
        return resize_label(self.original.semantic_gt(image_id), self.size(image_id))

    def instance_gt(self, image_id: str) -> np.ndarray:
        return resize_label(self.original.instance_gt(image_id), self.size(image_id))

    def validate(self) -> None:
        self.original.validate()


def unwrap(dataset):
    """The reader at the original resolution (the dataset itself unless it is a :class:`ResizedDataset`)."""
    return dataset.original if isinstance(dataset, ResizedDataset) else dataset


def to_original(dataset, image_id: str, label: np.ndarray) -> np.ndarray:
    """A label map the stages computed, at the original image resolution (identity for unwrapped readers)."""
    if isinstance(dataset, ResizedDataset):
        return resize_label(label, dataset.original_size(image_id))
    return label


def original_gt(dataset, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """The ground truth to compare a prediction of ``shape`` with: the original one for a prediction mapped back
    to the original resolution, else the one the stages see."""
    if isinstance(dataset, ResizedDataset) and tuple(shape) == dataset.original_size(image_id):
        return dataset.original.semantic_gt(image_id)
    return dataset.semantic_gt(image_id)
