"""Box geometry: box-as-mask labels on a hand-made overlap."""

import numpy as np

from a2gnn.boxes import box_label_map
from a2gnn.datasets.voc import Box


def test_box_label_map_paints_boxes_smallest_on_top():
    boxes = (Box(0, 0, 4, 3, label=2), Box(2, 1, 5, 4, label=5), Box(3, 2, 4, 3, label=1))
    expected = np.array(
        [
            [2, 2, 2, 2, 0, 0],
            [2, 2, 5, 5, 5, 0],  # box 1 (area 9) is smaller than box 0 (area 12): it wins the overlap
            [2, 2, 5, 1, 5, 0],  # the 1-pixel box wins over both
            [0, 0, 5, 5, 5, 0],
        ],
        dtype=np.uint8,
    )
    assert np.array_equal(box_label_map(boxes, (4, 6)), expected)
    assert not box_label_map((), (2, 3)).any()
