"""Class choice in multi-class box overlaps (a2gnn/evaluation/overlap_errors.py, scripts/overlap_errors.py),
against hand counts and a per-pixel loop."""

from dataclasses import dataclass

import numpy as np
import yaml
from helpers import load_script

from a2gnn.evaluation.overlap_errors import (box_masks, class_choice, multi_class_overlap, oracle_maps,
                                             smallest_box_rule)


@dataclass
class B:
    x1: int
    y1: int
    x2: int
    y2: int
    label: int


BOXES = [B(0, 0, 6, 6, 1), B(4, 4, 10, 10, 2), B(5, 0, 7, 3, 1)]  # classes 1 and 2 meet on rows/cols 4..5


def test_box_masks_and_overlap_by_hand():
    masks = box_masks((10, 10), BOXES)
    assert set(masks) == {1, 2}
    assert masks[1].sum() == 36 + 6 - 3  # the third box adds columns 6 of rows 0..2 (its column 5 is inside)
    overlap = multi_class_overlap(masks, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[4:6, 4:6] = True  # same-class overlap (boxes 1 and 3) does not count
    assert np.array_equal(overlap, expected)
    half = box_masks((5, 5), [B(0, 0, 3, 3, 1)], scale=(0.5, 0.5))[1]
    assert half.sum() == 4 and half[:2, :2].all()  # rows floor(0) .. ceil(1.5) - 1


def test_class_choice_and_oracles_by_hand():
    gt = np.zeros((10, 10), np.uint8)
    gt[0:6, 0:6] = 1
    gt[4:6, 5] = 2       # two overlap pixels that are class 2
    gt[5, 4] = 0         # one overlap pixel is background
    pred = np.zeros((10, 10), np.uint8)
    pred[0:6, 0:6] = 1   # class 1 everywhere in the first box, overlap included
    pred[9, 9] = 255
    overlap = multi_class_overlap(box_masks((10, 10), BOXES), (10, 10))
    # judged: overlap pixels both call object = 4 - 1 (the background one) = 3; right: (4, 4) only
    assert class_choice(pred, gt, overlap) == (1, 3)
    fixed = oracle_maps(pred, gt, overlap, np.ones((10, 10), bool))
    assert fixed["overlap class"][4, 5] == 2 and fixed["overlap class"][5, 5] == 2
    assert fixed["overlap class"][5, 4] == 1  # background truth: not this oracle's business
    assert fixed["in-box background"][5, 4] == 0 and fixed["in-box background"][0, 0] == 1
    assert fixed["in-box background"][9, 9] == 255  # ignore stays ignore


def test_smallest_box_rule_matches_a_loop():
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(6):
        x1, y1 = rng.integers(0, 12, 2)
        boxes.append(B(int(x1), int(y1), int(x1 + rng.integers(1, 8)), int(y1 + rng.integers(1, 8)),
                       int(rng.integers(1, 4))))
    shape = (20, 20)
    per_box = [(b.label, box_masks(shape, [b])[b.label]) for b in boxes]
    got = smallest_box_rule(per_box, shape)
    for y in range(20):
        for x in range(20):
            covering = [(m.sum(), -i, lab) for i, (lab, m) in enumerate(per_box) if m[y, x]]
            want = min(covering)[2] if covering else 0  # smallest area; ties: the later box
            assert got[y, x] == want


def test_script_on_a_tiny_dataset(tiny_voc, tmp_path, capsys):
    """Ground truth as the label map: every class choice right, and fixing nothing changes the mIoU."""
    from a2gnn.core.io import write_label
    from a2gnn.data.voc import VOCDataset

    dataset = VOCDataset(tiny_voc, "train")
    (tmp_path / "gt").mkdir()
    for image_id in dataset.ids:
        gt = dataset.semantic_gt(image_id)
        write_label(tmp_path / "gt" / f"{image_id}.png", np.where(gt == 255, 0, gt).astype(np.uint8))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"format": "voc", "root": str(tiny_voc)}}))
    out = load_script("overlap_errors").main([str(tiny_voc), f"truth={tmp_path / 'gt'}", "--params", str(params)])
    row = out["truth"]
    assert row["mIoU as is"] == row["mIoU overlap class"] == row["mIoU in-box background"]
    assert row["class right in overlaps"] in (0.0, 100.0)  # 0 when the tiny data has no multi-class overlap
    assert "object pixels in multi-class box overlaps" in capsys.readouterr().out
