"""Paired bootstrap of a mIoU difference: pooled counts against the project's confusion matrix, and the
interval's behaviour on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from a2gnn.evaluation.confusion import ConfusionMatrix
from a2gnn.evaluation.paired_bootstrap import miou_of_counts, paired_bootstrap


def _per_image_mats(preds, gts, num_classes):
    mats = []
    for pred, gt in zip(preds, gts):
        cm = ConfusionMatrix(num_classes)
        cm.update(gt, pred)
        mats.append(cm.mat.copy())
    return np.stack(mats)


def _images(rng, n, flip):
    """n random 3-class maps and predictions with a share ``flip`` of pixels set to another class (and 255s)."""
    gts = [rng.integers(0, 3, (7, 9)) for _ in range(n)]
    preds = []
    for gt in gts:
        pred = gt.copy()
        wrong = rng.random(gt.shape) < flip
        pred[wrong] = (gt[wrong] + 1) % 3
        pred[rng.random(gt.shape) < 0.05] = 255
        preds.append(pred)
    return gts, preds


def test_miou_of_counts_is_the_miou_of_the_images_pooled():
    rng = np.random.default_rng(0)
    gts, preds = _images(rng, 5, 0.3)
    gts[0][:] = 0  # classes absent from an image: NaN classes are left out of the mean
    mats = _per_image_mats(preds, gts, 3)
    total = ConfusionMatrix(3)
    for gt, pred in zip(gts, preds):
        total.update(gt, pred)
    assert miou_of_counts(mats.sum(0)) == pytest.approx(total.miou(), abs=1e-12)
    only_first = ConfusionMatrix(3)
    only_first.update(gts[0], preds[0])
    assert miou_of_counts(mats[0]) == pytest.approx(only_first.miou(), abs=1e-12)


def test_identical_methods_give_a_zero_interval():
    rng = np.random.default_rng(1)
    gts, preds = _images(rng, 8, 0.2)
    mats = _per_image_mats(preds, gts, 3)
    got = paired_bootstrap(mats, mats, rounds=200)
    assert (got.difference, got.low, got.high, got.share_positive) == (0.0, 0.0, 0.0, 0.0)


def test_a_method_better_on_every_image_has_an_interval_above_zero():
    rng = np.random.default_rng(2)
    gts, worse = _images(rng, 12, 0.3)
    better = [np.where(rng.random(g.shape) < 0.5, g, p) for g, p in zip(gts, worse)]  # half the errors fixed
    a, b = _per_image_mats(better, gts, 3), _per_image_mats(worse, gts, 3)
    got = paired_bootstrap(a, b, rounds=500)
    assert got.difference == pytest.approx(miou_of_counts(a.sum(0)) - miou_of_counts(b.sum(0)))
    assert 0 < got.low <= got.difference <= got.high and got.share_positive == 1.0
    assert paired_bootstrap(a, b, rounds=500) == got  # deterministic
    swapped = paired_bootstrap(b, a, rounds=500)
    assert swapped.high == pytest.approx(-got.low) and swapped.share_positive == 0.0


def test_a_gap_carried_by_one_image_is_not_clear():
    """A fixes one image completely and is slightly worse on the others: the interval straddles zero."""
    rng = np.random.default_rng(3)
    gts, b_preds = _images(rng, 10, 0.02)
    a_preds = [p.copy() for p in b_preds]
    b_preds[0] = (gts[0] + 1) % 3  # B gets image 0 entirely wrong
    a_preds[0] = gts[0]
    for k in range(1, 10):
        a_preds[k] = np.where(rng.random(gts[k].shape) < 0.06, (gts[k] + 2) % 3, a_preds[k])
    a, b = _per_image_mats(a_preds, gts, 3), _per_image_mats(b_preds, gts, 3)
    got = paired_bootstrap(a, b, rounds=1000)
    assert got.difference > 0 and got.low < 0 < got.high


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.zeros((3, 2, 3)), np.zeros((2, 2, 3)))
