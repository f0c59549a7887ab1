"""Segmentation metrics: one confusion-matrix implementation used by every stage.

Counts come from a single ``bincount`` of ``num_classes * gt + pred`` (ignore pixels dropped);
IoU is computed once from the accumulated totals, never averaged over images.

Seed maps leave pixels unlabelled (255). Two views are reported for them:

* ``labelled`` metrics look only at pixels the map labels (pred != 255): ``precision`` is the
  pixel accuracy there and ``miou_labelled`` the mIoU of that restricted confusion matrix.
* ``miou`` treats an unlabelled pixel as a miss (false negative of its true class), and ``recall``
  is the fraction of valid ground-truth pixels that are labelled correctly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from a2gnn.core.io import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates ``mat[gt, pred]`` over images; column ``num_classes`` counts unlabelled predictions."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one image. gt, pred: (H, W) integer maps; gt == ignore is skipped, pred == ignore is 'unlabelled'."""
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f"gt and pred differ in size: {gt.shape} vs {pred.shape}")
        n = self.num_classes
        valid = (gt != self.ignore_index) & (gt >= 0) & (gt < n)
        gt, pred = gt[valid], pred[valid]
        pred = np.where((pred >= 0) & (pred < n), pred, n)
        self.mat += np.bincount(gt * (n + 1) + pred, minlength=n * (n + 1)).reshape(n, n + 1)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.mat += other.mat

    # -- derived metrics -------------------------------------------------------------------------
    def _iou(self, mat: np.ndarray) -> np.ndarray:
        n = self.num_classes
        tp = np.diag(mat[:, :n]).astype(np.float64)
        gt_total = mat.sum(axis=1)
        pred_total = mat[:, :n].sum(axis=0)
        union = gt_total + pred_total - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def iou(self) -> np.ndarray:
        """Per-class IoU with unlabelled predictions counted as misses; NaN for classes never seen."""
        return self._iou(self.mat)

    def iou_labelled(self) -> np.ndarray:
        """Per-class IoU over labelled pixels only (unlabelled column dropped)."""
        mat = self.mat.copy()
        mat[:, self.num_classes] = 0
        return self._iou(mat)

    def miou(self) -> float:
        return float(np.nanmean(self.iou())) if np.isfinite(self.iou()).any() else float("nan")

    def miou_labelled(self) -> float:
        iou = self.iou_labelled()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def precision(self) -> float:
        """Pixel accuracy over labelled pixels (pred != 255)."""
        labelled = self.mat[:, : self.num_classes].sum()
        return float(np.trace(self.mat[:, : self.num_classes]) / labelled) if labelled else float("nan")

    def recall(self) -> float:
        """Fraction of valid ground-truth pixels labelled with their true class."""
        total = self.mat.sum()
        return float(np.trace(self.mat[:, : self.num_classes]) / total) if total else float("nan")

    def coverage(self) -> float:
        """Fraction of valid ground-truth pixels that carry any label."""
        total = self.mat.sum()
        return float(self.mat[:, : self.num_classes].sum() / total) if total else float("nan")

    def pixel_accuracy(self) -> float:
        return self.recall()

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Metrics dict for JSON: mIoU (both views), precision, recall, coverage, per-class IoU."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        return {
            "miou": self.miou(),
            "miou_labelled": self.miou_labelled(),
            "precision": self.precision(),
            "recall": self.recall(),
            "coverage": self.coverage(),
            "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        }
