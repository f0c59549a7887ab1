"""Where boxes of different classes overlap: how much of a label map's error is the choice of class there.

In cluttered photos a quarter of the object pixels lie where boxes of two or more classes overlap (a person on a
chair, cups on a table); there every box-supervised method must choose a class, and Eq. 3's rule for GrabCut
(the smallest box wins) is often wrong. This module measures that choice against the ground truth and bounds what
fixing it, or fixing the background inside the boxes, would be worth. Not a stage: run it with
``scripts/overlap_errors.py``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from a2gnn.core.io import IGNORE_INDEX


def box_masks(shape: tuple[int, int], boxes: Iterable, scale: tuple[float, float] = (1.0, 1.0)
              ) -> dict[int, np.ndarray]:
    """Class -> (H, W) bool: the pixels covered by at least one box of that class.

    boxes: objects with ``x1, y1, x2, y2`` (exclusive ends) and ``label``; scale: (y, x) factors from the boxes'
    coordinates to ``shape`` (a box maps to rows floor(y1 * sy) .. ceil(y2 * sy) - 1).
    """
    sy, sx = scale
    out: dict[int, np.ndarray] = {}
    for b in boxes:
        mask = out.setdefault(int(b.label), np.zeros(shape, bool))
        mask[int(b.y1 * sy):int(np.ceil(b.y2 * sy)), int(b.x1 * sx):int(np.ceil(b.x2 * sx))] = True
    return out


def multi_class_overlap(masks: dict[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels covered by boxes of at least two different classes."""
    count = np.zeros(shape, np.int32)
    for mask in masks.values():
        count += mask
    return count >= 2


def _foreground(labels: np.ndarray) -> np.ndarray:
    return (labels != 0) & (labels != IGNORE_INDEX)


def class_choice(pred: np.ndarray, gt: np.ndarray, overlap: np.ndarray) -> tuple[int, int]:
    """(right, judged): overlap pixels that both maps call object, and those of them with the right class."""
    judged = overlap & _foreground(pred) & _foreground(gt)
    return int((pred[judged] == gt[judged]).sum()), int(judged.sum())


def oracle_maps(pred: np.ndarray, gt: np.ndarray, overlap: np.ndarray, inside: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Label maps that fix one kind of error with the ground truth, to bound what fixing it is worth.

    ``overlap class``: object pixels of ``pred`` in multi-class overlaps take the true class where the truth is
    an object. ``in-box background``: object pixels of ``pred`` inside boxes (``inside``) whose truth is
    background become background. All (H, W) uint8, like ``pred``.
    """
    fg = _foreground(pred)
    fixed_class = pred.copy()
    where = overlap & fg & _foreground(gt)
    fixed_class[where] = gt[where]
    fixed_bg = pred.copy()
    fixed_bg[inside & fg & (gt == 0)] = 0
    return {"overlap class": fixed_class, "in-box background": fixed_bg}


def smallest_box_rule(masks_by_box: Sequence[tuple[int, np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8: each pixel the class of the smallest box covering it (0 outside every box): Eq. 3's rule.

    masks_by_box: (class, (H, W) bool) per box, in any order; ties in area keep the later box.
    """
    out = np.zeros(shape, np.uint8)
    for label, mask in sorted(masks_by_box, key=lambda item: -int(item[1].sum())):
        out[mask] = label
    return out
