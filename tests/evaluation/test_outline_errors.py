"""Outline-band error split (a2gnn/evaluation/outline_errors.py, scripts/compare_labels.py) against loops and hand counts."""

from pathlib import Path

import numpy as np
import pytest

from a2gnn.evaluation.outline_errors import ErrorSplit, error_split, foreground_iou, outline_band


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


def test_compare_labels_script_on_a_tiny_dataset(tiny_voc, tmp_path, capsys):
    """The script end to end: A = the ground truth, B = all background. A fixes every error of B, and its mIoU
    lead has a bootstrap interval above zero."""
    import importlib.util

    import yaml

    from a2gnn.data.voc import VOCDataset
    from a2gnn.core.io import write_label

    dataset = VOCDataset(tiny_voc, "train")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    for image_id in dataset.ids:
        gt = dataset.semantic_gt(image_id)
        write_label(tmp_path / "a" / f"{image_id}.png", np.where(gt == 255, 0, gt).astype(np.uint8))
        write_label(tmp_path / "b" / f"{image_id}.png", np.zeros_like(gt, dtype=np.uint8))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"format": "voc", "root": str(tiny_voc)}}))
    spec = importlib.util.spec_from_file_location("compare_labels", Path(__file__).parents[2] / "scripts" /
                                                  "compare_labels.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(tiny_voc), str(tmp_path / "a"), str(tmp_path / "b"), "--params", str(params), "--rounds", "200"])
    out = capsys.readouterr().out
    assert f"images: {len(dataset.ids)}" in out and "wrong pixels: A 0.000 %" in out
    assert "breaks 0 right ones" in out
    line = next(l for l in out.splitlines() if l.startswith("mIoU A - B"))
    low = float(line.split("[")[1].split(",")[0])
    assert low > 0 and "A higher in 100.0 % of 200 draws" in line
