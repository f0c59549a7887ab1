"""Consistency checking (Eq. 27-28) on hand-made features on a 3x4 grid."""

import pytest
import torch

from a2gnn.gnn.consistency import background_prototypes, box_prototypes, candidate_background_distance, consistency_check, cosine_distance, distance_scale
from helpers import box_seed_candidates, outside_boxes


pytestmark = pytest.mark.usefixtures("one_thread")


# grid 3 x 4 (node n at (n // 4, n % 4)); box 0 = x [0, 3) y [0, 3), box 1 = x [2, 4) y [0, 2), both class 1
GRID = (3, 4)
BOXES = torch.tensor([[0, 0, 3, 3, 1], [2, 0, 4, 2, 1]])
LABELS = torch.tensor([255, 1, 1, 255,
                       1, 255, 2, 255,
                       0, 1, 255, 1])
ENTRY_NODE = torch.tensor([0, 5, 3, 7])  # multi-point nodes K_0 = {0, 5}, K_1 = {3, 7}
ENTRY_BOX = torch.tensor([0, 0, 1, 1])


def features():
    h = torch.zeros(12, 2)
    h[0], h[5] = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.2])  # box 0's object points along x
    h[3], h[7] = torch.tensor([0.0, 1.0]), torch.tensor([0.1, 1.0])  # box 1's object points along y
    h[1] = torch.tensor([1.0, 0.1])  # seed close to box 0's prototype
    h[4] = torch.tensor([0.0, 1.0])  # seed far from box 0's prototype, inside box 0 only -> noisy
    h[2] = torch.tensor([0.0, 1.0])  # far from box 0 but close to box 1 (inside both) -> kept
    h[9] = torch.tensor([1.0, 1.0])  # d = 0.23 to box 0's prototype
    h[8] = torch.tensor([0.0, 1.0])  # background seed: never checked by a class-1 box
    h[11] = torch.tensor([0.0, 1.0])  # class-1 seed outside every box: never checked
    h[6] = torch.tensor([0.0, 1.0])  # class-2 seed inside box 0: not box 0's class
    return h


def test_eq27_prototypes_are_means():
    h = features()
    protos = box_prototypes(h, ENTRY_NODE, ENTRY_BOX, 3)
    assert torch.allclose(protos, torch.tensor([[1.0, 0.1], [0.05, 1.0], [0.0, 0.0]]))


def test_candidates_are_box_class_seeds_inside_each_box():
    box, node = box_seed_candidates(LABELS, BOXES, GRID)
    assert list(zip(box.tolist(), node.tolist())) == [(0, 1), (0, 2), (0, 4), (0, 9), (1, 2)]


@pytest.mark.parametrize("threshold,removed", [(0.5, [4]), (0.2, [4, 9]), (2.0, []), (0.0, [1, 2, 4, 9])])
def test_eq28_removes_far_box_class_seeds(threshold, removed):
    h = features()
    protos = box_prototypes(h, ENTRY_NODE, ENTRY_BOX, 2)
    cand_box, cand_node = box_seed_candidates(LABELS, BOXES, GRID)
    out = consistency_check(LABELS, h, protos, cand_box, cand_node, threshold)
    want = LABELS.clone()
    want[removed] = 255
    assert out.tolist() == want.tolist()


def test_eq28_without_candidates_is_identity():
    h = features()
    protos = box_prototypes(h, ENTRY_NODE, ENTRY_BOX, 2)
    empty = torch.zeros(0, dtype=torch.int64)
    assert torch.equal(consistency_check(LABELS, h, protos, empty, empty, 0.1), LABELS)


def test_outside_nodes_and_background_prototype():
    outside = outside_boxes(BOXES, GRID)
    assert outside.tolist() == [11]  # only (2, 3) is outside both boxes
    h = torch.cat([features(), 2 * features()])  # two images of 12 nodes
    bg, has_bg = background_prototypes(h, torch.cat([outside, outside + 12]), torch.tensor([0, 1]), 3)
    assert torch.allclose(bg[:2], torch.stack([h[11], h[23]])) and has_bg.tolist() == [True, True, False]


def test_eq28_background_scale():
    """tau_j = threshold * d(prototype_j, background): seeds nearer than that fraction of the way are kept."""
    h = features()
    protos = box_prototypes(h, ENTRY_NODE, ENTRY_BOX, 2)
    bg = torch.tensor([[1.0, 1.0]])  # a made-up background direction
    scale = distance_scale(protos, bg, torch.tensor([True]), torch.tensor([0, 0]))
    assert torch.allclose(scale, cosine_distance(protos, bg.expand(2, 2)))
    cand_box, cand_node = box_seed_candidates(LABELS, BOXES, GRID)
    # box 0: scale = 1 - cos([1, .1], [1, 1]) = 0.226; node 9 ([1, 1]) is at d = 0.226 (= 1.0 x scale)
    out = consistency_check(LABELS, h, protos, cand_box, cand_node, 0.9, scale)
    assert out[9] == 255 and out[1] == 1 and out[4] == 255 and out[2] == 1
    out = consistency_check(LABELS, h, protos, cand_box, cand_node, 1.01, scale)
    assert out[9] == 1
    no_bg = distance_scale(protos, bg, torch.tensor([False]), torch.tensor([0, 0]))
    assert torch.isinf(no_bg).all()
    assert torch.equal(consistency_check(LABELS, h, protos, cand_box, cand_node, 0.0, no_bg), LABELS)


def test_eq28_nearest_rule_keeps_a_seed_iff_nearer_to_its_prototype_than_to_the_background():
    """tau_i = threshold * d(H(i), H_bg): with threshold 1 each seed goes to the nearer of the two prototypes."""
    h = features()
    protos = box_prototypes(h, ENTRY_NODE, ENTRY_BOX, 2)
    bg = torch.tensor([[0.2, 1.0]])  # background points (mostly) along y, like box 1's object
    cand_box, cand_node = box_seed_candidates(LABELS, BOXES, GRID)
    unit = candidate_background_distance(h, cand_node, cand_box, bg, torch.tensor([True]), torch.tensor([0, 0]))
    assert torch.allclose(unit, cosine_distance(h[cand_node], bg.expand(len(cand_node), 2)))
    out = consistency_check(LABELS, h, protos, cand_box, cand_node, 1.0, candidate_scale=unit)
    # by hand, each checked seed against box 0's prototype ~[1, .1] and the background [.2, 1]:
    for node in cand_node[cand_box == 0].tolist():
        nearer_object = cosine_distance(h[node][None], protos[0][None]) <= cosine_distance(h[node][None], bg)
        in_box1 = (cand_node[cand_box == 1] == node).any()
        if not in_box1:
            assert (out[node] != 255) == bool(nearer_object), node
    assert out[1] == 1 and out[4] == 255  # [1, .1] is object-like, [0, 1] background-like
    no_bg = candidate_background_distance(h, cand_node, cand_box, bg, torch.tensor([False]), torch.tensor([0, 0]))
    assert torch.isinf(no_bg).all()
    assert torch.equal(consistency_check(LABELS, h, protos, cand_box, cand_node, 0.0, candidate_scale=no_bg), LABELS)
