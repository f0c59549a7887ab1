"""Outline-band error split (a2gnn/outline_errors.py, scripts/compare_labels.py) against loops and hand counts."""

import numpy as np
import pytest

from a2gnn.outline_errors import ErrorSplit, error_split, foreground_iou, outline_band


def band_by_loops(gt: np.ndarray, width: int) -> np.ndarray:
    h, w = gt.shape
    edge = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and gt[yy, xx] != gt[y, x]:
                        edge[y, x] = True
    band = np.zeros((h, w), bool)
    for y, x in zip(*np.nonzero(edge)):
        band[max(0, y - width):y + width + 1, max(0, x - width):x + width + 1] = True
    return band


@pytest.mark.parametrize("width", [0, 1, 2])
def test_outline_band_matches_a_loop(width):
    rng = np.random.default_rng(0)
    gt = np.zeros((12, 15), np.uint8)
    gt[3:8, 4:11] = 1
    gt[9:, :3] = 2
    gt[rng.random(gt.shape) < 0.03] = 255
    assert np.array_equal(outline_band(gt, width), band_by_loops(gt, width))


def test_error_split_by_hand():
    gt = np.zeros((6, 6), np.uint8)
    gt[2:4, 2:4] = 1          # a 2x2 object; with width 0 its band is the 4x4 square rows/cols 1..4 (16 px)
    gt[0, 5] = 255            # ignored: never counted, but its labelled neighbours (0,4), (1,5) are on an outline
    a = gt.copy()
    a[0, 5] = 1
    a[2, 2] = 0               # A misses an object pixel (on the outline)
    b = gt.copy()
    b[5, 0] = 1               # B calls a far background pixel object
    b[2, 2] = 0               # and misses the same object pixel
    split = error_split(a, b, gt, width=0)
    assert split == ErrorSplit(pixels=35, band=18, wrong_a=1, wrong_b=2, wrong_a_band=1, wrong_b_band=1,
                               fixed_by_a=1, broken_by_a=0)
    assert split + split == ErrorSplit(70, 36, 2, 4, 2, 2, 2, 0)


def test_foreground_iou_by_hand():
    gt = np.array([[0, 1, 1, 255]])
    pred = np.array([[1, 1, 0, 1]])
    assert foreground_iou(pred, gt) == pytest.approx(1 / 3)
    assert foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes differ"):
        error_split(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match=">= 0"):
        outline_band(np.zeros((2, 2), np.uint8), -1)
