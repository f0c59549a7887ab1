"""Is a mIoU gap between two label sets real? A paired bootstrap over images.

mIoU is computed from confusion counts summed over the images (never averaged per image), so the bootstrap
resamples whole images with replacement, the same draw for both methods (paired), sums each method's per-image
confusion matrices and takes the difference of the two mIoUs. The spread of that difference over the draws says how
much the gap depends on which photos happened to be in the set. Not a stage: ``scripts/compare_labels.py`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from a2gnn.evaluation.confusion import ConfusionMatrix


def miou_of_counts(counts: np.ndarray) -> float:
    """mIoU of summed confusion counts (C, C + 1), by :class:`a2gnn.evaluation.confusion.ConfusionMatrix` (the metric the
    evaluation stages report)."""
    cm = ConfusionMatrix(counts.shape[0])
    cm.mat += counts
    return cm.miou()


@dataclass(frozen=True)
class PairedDifference:
    """mIoU(A) - mIoU(B) on the whole set and its bootstrap interval."""

    difference: float  # on the images as given
    low: float  # lower end of the central ``level`` interval of the bootstrap differences
    high: float
    share_positive: float  # fraction of draws in which A's mIoU is the higher


def paired_bootstrap(mats_a: np.ndarray, mats_b: np.ndarray, rounds: int = 2000, level: float = 0.95,
                     seed: int = 0) -> PairedDifference:
    """Percentile bootstrap of mIoU(A) - mIoU(B) over images.

    mats_a, mats_b: (N, C, C + 1) per-image confusion matrices of the two methods on the same N images.
    Deterministic for a given ``seed``.
    """
    if mats_a.shape != mats_b.shape or mats_a.ndim != 3 or len(mats_a) == 0:
        raise ValueError(f"need two (N, C, C + 1) stacks of the same shape, N >= 1; got {mats_a.shape}, "
                         f"{mats_b.shape}")
    if rounds < 1 or not 0 < level < 1:
        raise ValueError(f"rounds must be >= 1 and level in (0, 1), got {rounds}, {level}")
    n = len(mats_a)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(rounds, n))
    weights = np.stack([np.bincount(d, minlength=n) for d in draws])  # (rounds, N): times each image is drawn
    totals_a = np.einsum("rn,nij->rij", weights, mats_a)  # (rounds, C, C + 1) summed counts of each draw
    totals_b = np.einsum("rn,nij->rij", weights, mats_b)
    diffs = np.array([miou_of_counts(a) - miou_of_counts(b) for a, b in zip(totals_a, totals_b)])
    whole = miou_of_counts(mats_a.sum(0)) - miou_of_counts(mats_b.sum(0))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return PairedDifference(whole, float(low), float(high), float((diffs > 0).mean()))
