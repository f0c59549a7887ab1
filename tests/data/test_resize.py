"""Large images (a2gnn.data.resize): sizes, boxes rounded outwards, labels by nearest neighbour, pass-through."""

from __future__ import annotations

import numpy as np
import pytest

from a2gnn.data.resize import ResizedDataset, original_gt, scale_box, scaled_size, to_original
from a2gnn.data.voc import Annotation, Box


@pytest.mark.parametrize(
    "size, max_side, expected",
    [((2048, 1536), 512, (512, 384)), ((1536, 2048), 512, (384, 512)), ((300, 200), 512, (300, 200)),
     ((1000, 3), 100, (100, 1)), ((513, 512), 512, (512, 511)), ((800, 600), 0, (800, 600))],
)
def test_scaled_size(size, max_side, expected):
    assert scaled_size(*size, max_side) == expected


def test_scaled_box_contains_the_scaled_object():
    rng = np.random.default_rng(0)
    height, width, new_h, new_w = 97, 131, 40, 54
    for _ in range(200):
        x1, x2 = sorted(rng.choice(width + 1, 2, replace=False))
        y1, y2 = sorted(rng.choice(height + 1, 2, replace=False))
        box = Box(int(x1), int(y1), int(x2), int(y2), label=1)
        small = scale_box(box, new_h / height, new_w / width, new_h, new_w)
        assert 0 <= small.x1 < small.x2 <= new_w and 0 <= small.y1 < small.y2 <= new_h
        # every original pixel of the box lands (by its centre) inside the scaled box
        cx = (np.arange(box.x1, box.x2) + 0.5) * new_w / width
        cy = (np.arange(box.y1, box.y2) + 0.5) * new_h / height
        assert small.x1 <= cx.min() and cx.max() <= small.x2 and small.y1 <= cy.min() and cy.max() <= small.y2


class _Reader:
    ids = ["big", "small"]
    class_names = ("background", "thing")
    root = "somewhere"

    def annotation(self, image_id):
        h, w = (400, 600) if image_id == "big" else (50, 60)
        return Annotation(image_id, w, h, (Box(10, 20, w // 2, h // 2, label=1),))

    def image(self, image_id):
        ann = self.annotation(image_id)
        return np.random.default_rng(len(image_id)).integers(0, 255, (ann.height, ann.width, 3), dtype=np.uint8)

    def semantic_gt(self, image_id):
        ann = self.annotation(image_id)
        gt = np.zeros((ann.height, ann.width), np.uint8)
        b = ann.boxes[0]
        gt[b.y1:b.y2, b.x1:b.x2] = 1
        return gt


def test_resized_reader_shrinks_big_images_and_passes_small_ones_through():
    base = _Reader()
    ds = ResizedDataset(base, max_side=150)
    assert ds.size("big") == (100, 150) and ds.image("big").shape == (100, 150, 3)
    ann = ds.annotation("big")
    assert (ann.height, ann.width) == (100, 150)
    assert ann.boxes[0] == Box(2, 5, 75, 50, label=1)  # (10, 20, 300, 200) x 0.25, rounded outwards
    gt = ds.semantic_gt("big")
    assert gt.shape == (100, 150) and set(np.unique(gt)) == {0, 1}  # nearest: no blended label values
    assert np.array_equal(ds.image("small"), base.image("small"))
    assert ds.annotation("small") == base.annotation("small") and ds.root == "somewhere"
    label = ds.semantic_gt("big")
    back = to_original(ds, "big", label)
    assert back.shape == (400, 600)
    assert (back == base.semantic_gt("big")).mean() > 0.98
    assert original_gt(ds, "big", back.shape).shape == (400, 600)
    assert original_gt(ds, "big", label.shape).shape == (100, 150)
    assert to_original(base, "big", label) is label
