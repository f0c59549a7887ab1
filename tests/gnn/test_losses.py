"""A²GNN losses (Eq. 20-26) on hand-made tensors, against direct loops over the equations."""

import pytest
import torch

from a2gnn.gnn.layers import EdgeCSR
import math

from a2gnn.ops.grid import GridMap
from a2gnn.gnn.losses import (box_lines, cross_entropy_image_loss, cross_entropy_loss, multi_point_loss,
                          multi_point_sets, pad_by_box, regularized_loss, select_multi_points, total_loss,
                          upsampled_log_probs)


pytestmark = pytest.mark.usefixtures("one_thread")


# --- Eq. (21) -------------------------------------------------------------------------------------------


def test_eq21_mean_over_labelled_nodes():
    lp = torch.log_softmax(torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [0.5, 2.0, 0.0]]), 1)
    labels = torch.tensor([0, 2, 255, 1])
    want = -(lp[0, 0] + lp[1, 2] + lp[3, 1]) / 3
    assert torch.allclose(cross_entropy_loss(lp, labels), want.view(1))
    balanced = -lp[0, 0] - (lp[1, 2] + lp[3, 1]) / 2  # authors' variant: bg mean + fg mean
    assert torch.allclose(cross_entropy_loss(lp, labels, class_balanced=True), balanced.view(1))
    per_image = cross_entropy_loss(lp, labels, torch.tensor([0, 0, 1, 1]), 3)
    assert torch.allclose(per_image, torch.stack([-(lp[0, 0] + lp[1, 2]) / 2, -lp[3, 1], torch.tensor(0.0)]))


def test_eq21_at_image_resolution_hand_example():
    """Grid 1 x 2, stride 2, image 2 x 4: node logits z0 = (2, 0), z1 = (0, 2); column x of the image reads the
    cells at (x + 1/2) / 2 - 1/2 -> weights (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1). Seeds: (0, 1) = class 0,
    (1, 2) = class 1. Pixel (0, 1) has logits (1.5, 0.5) -> -log softmax_0 = log(1 + e^-1); pixel (1, 2) is its
    mirror image. Class 2 is outside the image's classes (-inf)."""
    m = GridMap((2, 4), 2)
    log_probs = torch.log_softmax(torch.tensor([[2.0, 0.0, float("-inf")], [0.0, 2.0, float("-inf")]]), 1)
    seeds = torch.tensor([[255, 0, 255, 255], [255, 255, 1, 255]]).reshape(-1)
    pixels = (seeds != 255).nonzero(as_tuple=True)[0]
    node, weight = m.bilinear_taps(pixels)
    mask = torch.tensor([[True, True, False]]).expand(2, 3)
    got = cross_entropy_image_loss(log_probs, node, weight, seeds[pixels], pix_class_mask=mask)
    assert torch.allclose(got, torch.tensor([math.log(1 + math.exp(-1))]))
    up = upsampled_log_probs(log_probs, node, weight, mask).exp()
    assert torch.allclose(up[0], torch.tensor([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1)), 0.0]))
    # same as up-sampling the logits with F.interpolate and taking the softmax (the authors' order)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).t().reshape(2, 1, 2)
    dense = torch.log_softmax(m.upsample(logits), 0).reshape(2, -1).t()
    assert torch.allclose(upsampled_log_probs(log_probs[:, :2], node, weight), dense[pixels], atol=1e-6)


# --- Eq. (22) -------------------------------------------------------------------------------------------


def reg_case():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 3, generator=gen, dtype=torch.float64), 1).requires_grad_()
    pairs = torch.tensor([[0, 1, 1, 2, 3, 4, 5, 0], [1, 0, 2, 1, 4, 3, 4, 2]])
    g = torch.rand(pairs.shape[1], generator=gen, dtype=torch.float64)
    return probs, pairs, g


def test_eq22_matches_loop_and_is_not_constant():
    probs, pairs, g = reg_case()
    csr, order = EdgeCSR.from_edge_index(pairs, 6)
    got = regularized_loss(probs, csr, g[order])
    want = sum(g[p] * sum(probs[a, c] * (1 - probs[b, c]) for c in range(3))
               for p, (a, b) in enumerate(pairs.t().tolist())) / 6
    assert torch.allclose(got, want.view(1))
    grad = torch.autograd.grad(got.sum(), probs)[0]
    assert grad.abs().max() > 1e-3  # the printed Eq. 22 (sum over all class pairs) would be a constant
    same = torch.zeros(6, 3, dtype=torch.float64)
    same[:, 1] = 1  # every node the same one-hot class: nothing to penalise
    assert torch.allclose(regularized_loss(same, csr, g[order]), torch.zeros(1, dtype=torch.float64))


def test_eq22_per_image_normalised_by_node_count():
    probs, pairs, g = reg_case()
    csr, order = EdgeCSR.from_edge_index(pairs, 6)
    image_of_node = torch.tensor([0, 0, 0, 1, 1, 1])
    pair_image = image_of_node[pairs[0]][order]
    per_image = regularized_loss(probs, csr, g[order], pair_image, torch.tensor([3, 3]), 2)
    total = regularized_loss(probs, csr, g[order])
    assert torch.allclose(per_image.sum() * 3, total * 6)


# --- Eq. (23)-(26) on a hand-made 4x5 grid with two boxes ------------------------------------------------
# box A = [0, 0, 2, 3] class 1: nodes 0 1 / 5 6 / 10 11; box B = [2, 1, 5, 3] class 2: nodes 7 8 9 / 12 13 14

BOXES = torch.tensor([[0, 0, 2, 3, 1], [2, 1, 5, 3, 2]])
GRID = (4, 5)


def two_box_probs():
    o1 = {0: 0.1, 1: 0.6, 5: 0.7, 6: 0.2, 10: 0.3, 11: 0.4}
    o2 = {7: 0.5, 8: 0.1, 9: 0.2, 12: 0.05, 13: 0.6, 14: 0.3}
    probs = torch.full((20, 3), 1 / 3)
    for n, p in o1.items():
        probs[n] = torch.tensor([1 - p, p, 0.0])
    for n, p in o2.items():
        probs[n] = torch.tensor([1 - p, 0.0, p])
    return probs


def test_box_lines_rows_then_columns():
    lines, box = box_lines(BOXES, GRID)
    want = [[0, 1, -1], [5, 6, -1], [10, 11, -1],  # rows of A
            [7, 8, 9], [12, 13, 14],  # rows of B
            [0, 5, 10], [1, 6, 11],  # columns of A
            [7, 12, -1], [8, 13, -1], [9, 14, -1]]  # columns of B
    assert lines.tolist() == want
    assert box.tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 1, 1]
    empty_lines, _ = box_lines(torch.tensor([[3, 1, 3, 4, 1]]), GRID)  # zero width: no lines
    assert empty_lines.shape[0] == 0


def test_eq23_picks_highest_box_class_probability_per_line():
    lines, box = box_lines(BOXES, GRID)
    picked = select_multi_points(two_box_probs(), lines, box, BOXES[:, 4])
    assert picked.tolist() == [1, 5, 11, 7, 13, 5, 1, 7, 13, 14]


def test_eq24_sets_unique_and_per_line():
    lines, box = box_lines(BOXES, GRID)
    picked = select_multi_points(two_box_probs(), lines, box, BOXES[:, 4])
    node, b = multi_point_sets(picked, box, unique=True)
    assert node.tolist() == [1, 5, 11, 7, 13, 14] and b.tolist() == [0, 0, 0, 1, 1, 1]
    node, b = multi_point_sets(picked, box, unique=False)
    assert b.tolist() == [0] * 5 + [1] * 5
    assert sorted(node[:5].tolist()) == [1, 1, 5, 5, 11] and sorted(node[5:].tolist()) == [7, 7, 13, 13, 14]
    assert pad_by_box(b, 2).tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def mp_reference(log_probs, h, node, box, box_class):
    """Eq. (26) with loops: entries (node, box); pairs over entries of one box with different nodes."""
    point = [-log_probs[n, box_class[b]] for n, b in zip(node.tolist(), box.tolist())]
    dist = []
    for m in range(len(node)):
        for n in range(len(node)):
            if box[m] == box[n] and node[m] != node[n]:
                dist.append(1 - torch.cosine_similarity(h[node[m]], h[node[n]], dim=0))
    return sum(point) / len(point) + sum(dist) / len(dist), len(dist)


@pytest.mark.parametrize("unique,pairs", [(True, 12), (False, 32)])
def test_eq26_matches_loop(unique, pairs):
    probs = two_box_probs()
    log_probs = probs.clamp_min(1e-6).log().double()
    h = torch.rand(20, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_()
    lines, box = box_lines(BOXES, GRID)
    node, b = multi_point_sets(select_multi_points(probs, lines, box, BOXES[:, 4]), box, unique)
    got = multi_point_loss(log_probs, h, node, b, BOXES[:, 4])
    want, n_pairs = mp_reference(log_probs, h, node, b, BOXES[:, 4])
    assert n_pairs == pairs
    assert torch.allclose(got, want.view(1))
    grad = torch.autograd.grad(got.sum(), h)[0]
    assert grad[list(set(node.tolist()))].abs().sum() > 0 and grad[[0, 2, 3]].abs().sum() == 0


def test_eq26_per_image_and_empty_image():
    probs = two_box_probs()
    log_probs = probs.clamp_min(1e-6).log()
    h = torch.rand(20, 4, generator=torch.Generator().manual_seed(3))
    lines, box = box_lines(BOXES, GRID)
    node, b = multi_point_sets(select_multi_points(probs, lines, box, BOXES[:, 4]), box)
    per_image = multi_point_loss(log_probs, h, node, b, BOXES[:, 4], torch.tensor([0, 2]), 3)
    only_a = multi_point_loss(log_probs, h, node[b == 0], b[b == 0], BOXES[:1, 4])
    assert torch.allclose(per_image[0], only_a[0]) and per_image[1] == 0 and per_image[2] > 0


def test_eq20_total():
    ce, mp, reg = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25]), torch.tensor([10.0, 20.0])
    assert torch.allclose(total_loss(ce, mp, reg, 0.01), torch.tensor([1.6, 2.45]))
    assert torch.equal(total_loss(ce), ce)
    assert torch.allclose(total_loss(ce, l_reg=reg, lambda_reg=0.1), torch.tensor([2.0, 4.0]))


def test_overlapping_boxes_of_different_classes():
    """A node picked by boxes of two classes is a CE target of both (one entry per box, so N_p counts it twice)
    and is paired, in the distance term, only with the other entries of each box separately.

    Grid 1 x 3, box A = nodes {0, 1} class 1, box B = nodes {1, 2} class 2. Node 1 has the highest O^1 in A's
    row and column 1, and the highest O^2 in B's row and column 1: K_A = {0, 1}, K_B = {1, 2}.
    L_mp = -(log .3 + log .4 + log .4 + log .3) / 4 + (2 (1 - cos(h0, h1)) + 2 (1 - cos(h1, h2))) / 4
    with h0 = (1, 0), h1 = (1, 1), h2 = (0, 1): 1 - cos = 1 - 1/sqrt(2) for both pairs; (h0, h2) are never paired.
    """
    boxes = torch.tensor([[0, 0, 2, 1, 1], [1, 0, 3, 1, 2]])
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.4, 0.4], [0.6, 0.1, 0.3]], dtype=torch.float64)
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    lines, box = box_lines(boxes, (1, 3))
    picked = select_multi_points(probs, lines, box, boxes[:, 4])
    node, b = multi_point_sets(picked, box)
    assert list(zip(node.tolist(), b.tolist())) == [(0, 0), (1, 0), (1, 1), (2, 1)]
    log_probs = probs.log().requires_grad_()
    got = multi_point_loss(log_probs, h, node, b, boxes[:, 4])
    want = -(2 * math.log(0.3) + 2 * math.log(0.4)) / 4 + (1 - 1 / math.sqrt(2))
    assert got.item() == pytest.approx(want, abs=1e-12)
    # node 1 is pushed towards both box classes with equal weight (1 / N_p each)
    grad = torch.autograd.grad(got.sum(), log_probs)[0]
    assert grad[1].tolist() == pytest.approx([0.0, -0.25, -0.25])
