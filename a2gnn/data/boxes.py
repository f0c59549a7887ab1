"""Box geometry shared by the seeds, the baselines and the instance stage: box masks, the union B, the
paint order of overlapping boxes (smaller boxes win, Eq. 3) and the box-as-mask labels.

All maps are image-sized numpy arrays; a :class:`a2gnn.data.voc.Box` is 0-based and half-open.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from a2gnn.data.voc import Box

BACKGROUND = 0
"""Class index of the background c_0."""


def box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of one box B_k. Shapes: -> (H, W) bool."""
    mask = np.zeros(shape, dtype=bool)
    mask[box.y1 : box.y2, box.x1 : box.x2] = True
    return mask


def box_union_mask(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """The set B = union of all boxes (Eq. 3-4). Shapes: -> (H, W) bool."""
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        mask[box.y1 : box.y2, box.x1 : box.x2] = True
    return mask


def paint_order(boxes: Sequence[Box]) -> list[int]:
    """Box indices from the largest area to the smallest (stable: equal areas keep annotation order).

    Painting in this order lets smaller boxes overwrite larger ones (the overlap rule of Eq. 3).
    """
    return sorted(range(len(boxes)), key=lambda k: -boxes[k].area)


def box_owner_map(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """For each pixel, the index of the smallest box containing it (-1 outside every box).

    Ties in area go to the later box of the annotation, as in :func:`compose_box_seeds`.
    Shapes: -> (H, W) int64.
    """
    owner = np.full(shape, -1, dtype=np.int64)
    for k in paint_order(boxes):
        box = boxes[k]
        owner[box.y1 : box.y2, box.x1 : box.x2] = k
    return owner


def box_label_map(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """Box-as-mask labels: every pixel of a box takes its class (the smallest box wins on overlaps, as in
    Eq. 3), background elsewhere. The weakest box-supervised pseudo label. Shapes: -> (H, W) uint8."""
    owner = box_owner_map(boxes, shape)
    lut = np.array([BACKGROUND] + [box.label for box in boxes], dtype=np.uint8)
    return lut[owner + 1]
