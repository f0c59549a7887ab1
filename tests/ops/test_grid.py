"""The one image <-> grid mapping (a2gnn.ops.grid) on images whose sides are not multiples of the stride."""

import numpy as np
import pytest
import torch

from a2gnn.ops.grid import GridMap, infer_stride

H, W, S = 37, 53, 8  # -> grid 5 x 7; last cell row holds 5 pixel rows, last cell column 5 pixel columns


pytestmark = pytest.mark.usefixtures("one_thread")


def cell_span(a, s, n):
    """Pixels of cell a along an axis of n pixels: [a s, min((a + 1) s, n))."""
    return range(a * s, min((a + 1) * s, n))


def test_grid_size_and_stride():
    m = GridMap((H, W), S)
    assert m.grid == (5, 7)
    assert GridMap.from_sizes((H, W), (5, 7)) == m
    assert infer_stride((375, 500), (47, 63)) == 8
    with pytest.raises(ValueError):
        infer_stride((H, W), (5, 6))


@pytest.mark.parametrize("rule", ["touch", "centre"])
def test_boxes_match_cell_loop(rule):
    m = GridMap((H, W), S)
    h, w = m.grid
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(60):
        x1, y1 = int(rng.integers(0, W - 1)), int(rng.integers(0, H - 1))
        boxes.append([x1, y1, int(rng.integers(x1 + 1, W + 1)), int(rng.integers(y1 + 1, H + 1)), 3])
    got = m.boxes(torch.tensor(boxes), rule).tolist()
    for (x1, y1, x2, y2, c), row in zip(boxes, got):
        if rule == "touch":  # a cell is in iff one of its pixels is in the box
            cols = [b for b in range(w) if set(cell_span(b, S, W)) & set(range(x1, x2))]
            rows = [a for a in range(h) if set(cell_span(a, S, H)) & set(range(y1, y2))]
        else:  # a cell is in iff its centre (a + 1/2) s lies in [x1, x2)
            cols = [b for b in range(w) if x1 <= (b + 0.5) * S < x2]
            rows = [a for a in range(h) if y1 <= (a + 0.5) * S < y2]
        if cols and rows:
            assert row == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, c]
        else:
            assert row[0] >= row[2] or row[1] >= row[3]  # empty grid box


def test_box_covering_exactly_some_cells():
    m = GridMap((H, W), S)
    # pixels x [8, 24), y [16, 37) = cells columns 1, 2 and rows 2, 3, 4 (the last one cut by the border)
    box = torch.tensor([[8, 16, 24, 37, 1]])
    assert m.boxes(box, "touch").tolist() == [[1, 2, 3, 5, 1]]
    assert m.boxes(box, "centre").tolist() == [[1, 2, 3, 5, 1]]
    # one pixel more on each side touches the neighbours, but their centres stay outside
    wider = torch.tensor([[7, 15, 25, 37, 1]])
    assert m.boxes(wider, "touch").tolist() == [[0, 1, 4, 5, 1]]
    assert m.boxes(wider, "centre").tolist() == [[1, 2, 3, 5, 1]]


@pytest.mark.parametrize("mode", ["centre", "majority"])
def test_block_upsampling_then_downsampling_labels_is_identity(mode):
    m = GridMap((H, W), S)
    cells = torch.randint(0, 6, m.grid, generator=torch.Generator().manual_seed(1))
    cells[0, 0] = 255
    rows, cols = m.pixel_cells()
    per_pixel = cells[rows[:, None], cols[None, :]]  # constant on every cell's pixels
    assert torch.equal(m.downsample_labels(per_pixel, mode), cells)
    assert torch.equal(m.downsample_labels(per_pixel.numpy().astype(np.uint8), mode), cells)


def test_downsample_labels_centre_and_majority_match_loops():
    m = GridMap((H, W), S)
    label = torch.randint(0, 4, (H, W), generator=torch.Generator().manual_seed(2))
    label[label == 3] = 255
    centre = m.downsample_labels(label, "centre")
    major = m.downsample_labels(label, "majority")
    for a in range(5):
        for b in range(7):
            assert centre[a, b] == label[min(a * S + S // 2, H - 1), min(b * S + S // 2, W - 1)]
            values = [int(label[y, x]) for y in cell_span(a, S, H) for x in cell_span(b, S, W)]
            counts = {v: values.count(v) for v in set(values)}
            best = max(counts.values())
            assert major[a, b] == min(v for v, c in counts.items() if c == best)


def test_downsample_image_is_mean_of_in_image_pixels():
    m = GridMap((H, W), S)
    image = torch.rand(3, H, W, generator=torch.Generator().manual_seed(3))
    got = m.downsample_image(image)
    assert got.shape == (3, 5, 7)
    for a in range(5):
        for b in range(7):
            block = image[:, a * S:min((a + 1) * S, H), b * S:min((b + 1) * S, W)]
            assert torch.allclose(got[:, a, b], block.mean(dim=(1, 2)), atol=1e-6)


def test_upsample_keeps_cell_values_at_cell_centres():
    m = GridMap((H, W), S)
    up = m.upsample(torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(4)))
    assert up.shape == (2, H, W)
    assert torch.allclose(m.upsample(torch.full((1, 5, 7), 0.3)), torch.full((1, H, W), 0.3))
    # odd stride 3 on a 13 x 10 image (grid 5 x 4): the centre pixel 3 a + 1 of every cell sits on the cell centre
    # (a + 1/2) 3 - 1/2 in pixel-index coordinates, where bilinear up-sampling returns the cell value exactly
    odd = GridMap((13, 10), 3)
    scores = torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(4))
    up = odd.upsample(scores)
    rows, cols = odd.centre_pixels()
    assert rows.tolist() == [1, 4, 7, 10, 12] and cols.tolist() == [1, 4, 7, 9]  # last ones clipped to the image
    assert torch.allclose(up[:, 1::3, 1::3][:, :4, :3], scores[:, :4, :3], atol=1e-6)
    # a constant-per-cell map survives up-sampling then down-sampling at the cell centres (nearest)
    labels = torch.randint(0, 5, (5, 4), generator=torch.Generator().manual_seed(6))
    one_hot = torch.nn.functional.one_hot(labels, 5).permute(2, 0, 1).float()
    assert torch.equal(odd.downsample_labels(odd.upsample(one_hot).argmax(0)), labels)


@pytest.mark.parametrize("size,stride", [((H, W), 8), ((13, 10), 3), ((16, 24), 8)])
def test_bilinear_taps_equal_upsample(size, stride):
    m = GridMap(size, stride)
    scores = torch.rand(3, *m.grid, generator=torch.Generator().manual_seed(5))
    up = m.upsample(scores).reshape(3, -1)
    node, weight = m.bilinear_taps()
    assert torch.allclose(weight.sum(1), torch.ones(node.shape[0]))
    taps = (scores.reshape(3, -1)[:, node] * weight).sum(-1)
    assert torch.allclose(taps, up, atol=1e-6)
    some = torch.tensor([0, 5, size[0] * size[1] - 1])
    n2, w2 = m.bilinear_taps(some)
    assert torch.equal(n2, node[some]) and torch.equal(w2, weight[some])


def test_pixel_nodes():
    m = GridMap((H, W), S)
    pixels = torch.arange(H * W)
    want = torch.tensor([(p // W // S) * 7 + (p % W) // S for p in range(H * W)])
    assert torch.equal(m.pixel_nodes(pixels), want)


def test_bad_inputs():
    m = GridMap((H, W), S)
    with pytest.raises(ValueError):
        m.downsample_labels(torch.zeros(H, W + 1), "centre")
    with pytest.raises(ValueError):
        m.downsample_labels(torch.zeros(H, W), "mode")
    with pytest.raises(ValueError):
        m.boxes(torch.zeros(1, 5), "inside")
    with pytest.raises(ValueError):
        m.upsample(torch.zeros(1, 5, 6))
