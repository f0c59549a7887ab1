"""Where two label maps differ from the ground truth: near the objects' outlines or away from them.

Used to explain a small mIoU gap between two methods (README, balloon photos: A²GNN against GrabCut): is one of
them losing at the outlines (resolution) or inside the objects (semantics)? Not a stage: run it with
``scripts/compare_labels.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from a2gnn.core.io import IGNORE_INDEX


def outline_band(gt: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels (chessboard distance) of a class change in ``gt``.

    gt: (H, W) integer labels (255 = ignore, counts as a class of its own here). Returns (H, W) bool. A pixel is
    on the outline when one of its 8 neighbours has another label; the band is the outline dilated by a
    (2 * width + 1)² square.
    """
    if width < 0:
        raise ValueError(f"band width must be >= 0, got {width}")
    labels = gt.astype(np.uint8)
    square = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(labels, square, borderType=cv2.BORDER_REPLICATE) != labels) | (
        cv2.erode(labels, square, borderType=cv2.BORDER_REPLICATE) != labels)
    if width == 0:
        return edge
    wide = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(edge.astype(np.uint8), wide, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


@dataclass
class ErrorSplit:
    """Pixel counts over one or more images (ground-truth-ignored pixels left out)."""

    pixels: int = 0        # labelled pixels
    band: int = 0          # of them within the outline band
    wrong_a: int = 0       # pixels method A gets wrong
    wrong_b: int = 0
    wrong_a_band: int = 0  # of them within the band
    wrong_b_band: int = 0
    fixed_by_a: int = 0    # wrong in B, right in A
    broken_by_a: int = 0   # right in B, wrong in A

    def __add__(self, other: "ErrorSplit") -> "ErrorSplit":
        return ErrorSplit(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def error_split(a: np.ndarray, b: np.ndarray, gt: np.ndarray, width: int) -> ErrorSplit:
    """Count where predictions ``a`` and ``b`` (H, W) are wrong against ``gt`` (H, W), split by the outline band."""
    if not a.shape == b.shape == gt.shape:
        raise ValueError(f"shapes differ: a {a.shape}, b {b.shape}, gt {gt.shape}")
    valid = gt != IGNORE_INDEX
    band = outline_band(gt, width) & valid
    wa = (a != gt) & valid
    wb = (b != gt) & valid
    count = lambda m: int(np.count_nonzero(m))  # noqa: E731
    return ErrorSplit(count(valid), count(band), count(wa), count(wb), count(wa & band), count(wb & band),
                      count(wb & ~wa), count(wa & ~wb))


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the non-background (label > 0) pixels of ``pred`` and ``gt`` (H, W), ignored pixels left out."""
    valid = gt != IGNORE_INDEX
    p, g = (pred > 0) & valid, (gt > 0) & valid
    union = np.count_nonzero(p | g)
    return np.count_nonzero(p & g) / union if union else 1.0
