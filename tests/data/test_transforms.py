"""a2gnn.data.transforms (joint scale / flip / crop) and a2gnn.data.segmentation (labels from GT or a folder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.segmentation import SegmentationDataset
from a2gnn.core.io import DataError, write_label
from a2gnn.data.transforms import random_scale, train_transform


def coded(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose red channel encodes the label (label k -> red 40 k), so alignment is checkable."""
    label = (np.arange(h * w).reshape(h, w) % 5).astype(np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = label * 40
    return image, label


@pytest.mark.parametrize("size", [(20, 30), (50, 60)])
def test_crop_pads_with_ignore_and_mean_and_keeps_alignment(size):
    image, label = coded(*size)
    for seed in range(5):
        x, y = train_transform(image, label, 32, (1.0, 1.0), True, np.random.default_rng(seed))
        assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.int64
        pad = y == 255
        assert (x[:, pad] == 0).all()  # padding = mean colour after normalisation
        assert pad.any() == (size[0] < 32)
        red = x[0] * 0.229 + 0.485  # back to [0, 1]
        assert torch.allclose(red[~pad], y[~pad].float() * 40 / 255, atol=1e-5)


def test_transform_is_deterministic_and_scale_uses_nearest_labels():
    image, label = coded(40, 40)
    a = train_transform(image, label, 32, (0.5, 1.5), True, np.random.default_rng(3))
    b = train_transform(image, label, 32, (0.5, 1.5), True, np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    img2, lab2 = random_scale(image, label, (1.7, 1.7), np.random.default_rng(0))
    assert lab2.shape == (68, 68) and img2.shape == (68, 68, 3) and set(np.unique(lab2)) <= set(range(5))
    with pytest.raises(ValueError):
        train_transform(image, label[:10], 32, (1.0, 1.0), False, np.random.default_rng(0))


def test_segmentation_dataset_gt_and_folder_errors_name_the_file(tiny_voc, tmp_path):
    reader = open_dataset(DatasetConfig(), "train", tiny_voc)
    gt = SegmentationDataset(reader, "gt")
    image, label = gt.sample(gt.ids[0])
    assert label.shape == image.shape[:2] and np.array_equal(label, reader.semantic_gt(gt.ids[0]))
    folder = tmp_path / "labels"
    with pytest.raises(DataError, match="labels"):
        SegmentationDataset(reader, folder)
    folder.mkdir()
    for i in gt.ids[1:]:
        write_label(folder / f"{i}.png", reader.semantic_gt(i))
    with pytest.raises(DataError, match=f"{gt.ids[0]}.png"):
        SegmentationDataset(reader, folder)
    write_label(folder / f"{gt.ids[0]}.png", np.zeros((5, 5), np.uint8))
    ds = SegmentationDataset(reader, folder)
    with pytest.raises(DataError, match=f"{gt.ids[0]}.png.*5x5"):
        ds.sample(gt.ids[0])
    bad = reader.semantic_gt(gt.ids[0]).copy()
    bad[0, 0] = 77
    write_label(folder / f"{gt.ids[0]}.png", bad)
    with pytest.raises(DataError, match="77"):
        ds.sample(gt.ids[0])
    assert np.array_equal(ds.sample(gt.ids[1])[1], reader.semantic_gt(gt.ids[1]))
