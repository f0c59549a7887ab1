import numpy as np
import pytest

from a2gnn.evaluation.confusion import ConfusionMatrix


def test_miou_hand_computed():
    gt = np.array([[0, 0, 1], [1, 1, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    cm = ConfusionMatrix(2)
    cm.update(gt, pred)
    # class 0: tp=1, gt=2, pred=2 -> 1/3 ; class 1: tp=2, gt=3, pred=3 -> 2/4
    assert cm.iou() == pytest.approx([1 / 3, 2 / 4])
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert cm.precision() == pytest.approx(3 / 5)


def test_unlabelled_predictions_count_as_misses_but_not_in_labelled_view():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 255, 1, 255])
    cm = ConfusionMatrix(2)
    cm.update(gt, pred)
    assert cm.iou() == pytest.approx([0.5, 0.5])
    assert cm.iou_labelled() == pytest.approx([1.0, 1.0])
    assert cm.precision() == pytest.approx(1.0)
    assert cm.recall() == pytest.approx(0.5)
    assert cm.coverage() == pytest.approx(0.5)


def test_accumulates_over_images_not_average_of_images():
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]))
    cm.update(np.array([1, 0]), np.array([0, 0]))
    # class 1: tp 4, gt 5, pred 4 -> 0.8 ; class 0: tp 1, gt 1, pred 2 -> 0.5
    assert cm.iou() == pytest.approx([0.5, 0.8])


def test_absent_class_is_nan_and_excluded_from_mean():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    iou = cm.iou()
    assert np.isnan(iou[2])
    assert cm.miou() == pytest.approx(1.0)
    summary = cm.summary(["bg", "a", "b"])
    assert summary["per_class_iou"]["b"] is None


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((3, 2)))
