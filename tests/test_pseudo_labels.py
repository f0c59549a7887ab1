"""Pseudo-label post-processing, the Table 4(a) Baseline, A²GNN up-sampling and the consistency-check counts,
each against a hand-computed value or an explicit loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2gnn.baseline import BaselineConfig, BaselineScorer, baseline_scores
from a2gnn.crf import CRFConfig
from a2gnn.datasets.voc import Annotation, Box
from a2gnn.gnn.pseudo_labels import SeedCheckCounts
from a2gnn.graph_nodes import grid_probs_to_image
from a2gnn.pseudo_labels import PostprocessConfig, box_constraint, finish_labels, generate_pseudo_labels, image_channels
from a2gnn.seeds.scores import save_cam_scores

# a 6 x 8 image: class 1 in box A, class 3 in box B (overlapping A in column 4)
ANN = Annotation("x", width=8, height=6, boxes=(Box(1, 1, 5, 4, label=1), Box(4, 2, 8, 6, label=3)))


def test_box_constraint_against_a_pixel_loop():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 6, 8)).astype(np.float32)
    channels = image_channels(ANN)
    assert channels.tolist() == [0, 1, 3]
    got = box_constraint(scores, channels, ANN)
    for y in range(6):
        for x in range(8):
            allowed = [True] + [any(b.label == c and b.x1 <= x < b.x2 and b.y1 <= y < b.y2 for b in ANN.boxes)
                                for c in channels[1:]]
            want = np.where(allowed, scores[:, y, x], 0.0)
            np.testing.assert_allclose(got[:, y, x], want / want.sum(), rtol=1e-6)


def test_baseline_takes_background_from_the_boxes():
    cams = np.zeros((2, 6, 8), np.float32)
    cams[0] = 0.5  # class 1 everywhere, also outside its box
    cams[1, 3, 5] = 1.0  # class 3 peak inside box B
    got = baseline_scores(cams, ANN, bg_alpha=2.0)
    # outside every box: background only
    np.testing.assert_allclose(got[:, 0, 0], [1, 0, 0])
    # inside A only (row 1, col 1): bg (1 - 0.5)^2 = 0.25 vs class 1 0.5 -> normalised, class 3 not allowed
    np.testing.assert_allclose(got[:, 1, 1], [0.25 / 0.75, 0.5 / 0.75, 0], rtol=1e-6)
    # inside B at the class-3 peak (row 3, col 5): bg 0, class 1 not allowed there (outside A), class 3 = 1
    np.testing.assert_allclose(got[:, 3, 5], [0, 0, 1], atol=1e-7)


def test_baseline_ignores_the_box_constraint_switch(tmp_path):
    cams = np.full((2, 6, 8), 0.9, np.float32)
    save_cam_scores(tmp_path / "scores" / "x.npz", cams, [1, 3])
    scores = BaselineScorer(tmp_path, BaselineConfig(bg_alpha=6.0))(["x"], [ANN])
    images = [np.zeros((6, 8, 3), np.uint8)]
    no_constraint = PostprocessConfig(use_crf=False, box_constraint=False)
    labels = finish_labels(images, scores, [ANN], no_constraint, CRFConfig(), workers=0)[0]
    assert (labels[0, :] == 0).all() and (labels[:, 0] == 0).all()  # outside the boxes: background
    assert labels[1, 1] == 1 and labels[5, 7] == 3


def test_finish_labels_maps_channels_to_class_ids():
    scores = np.zeros((3, 6, 8), np.float32)
    scores[0] = 0.2
    scores[2, 2:6, 4:8] = 0.9  # class 3 over box B
    scores[1, 0:4, 0:8] = 0.5  # class 1 over the top rows, partly outside box A
    labels = finish_labels([np.zeros((6, 8, 3), np.uint8)], [scores], [ANN],
                           PostprocessConfig(use_crf=False, box_constraint=True), CRFConfig(), workers=0)[0]
    assert labels.dtype == np.uint8
    assert labels[1, 1] == 1 and labels[0, 6] == 0  # class 1 only inside box A
    assert labels[3, 6] == 3 and labels[5, 0] == 0


def test_grid_probs_to_image_is_bilinear_between_cell_centres():
    """A linear ramp over the grid comes back as the same ramp at pixel centres (bilinear reproduces linear
    functions), on an image whose sides are not multiples of the stride (11 x 13, stride 4 -> 3 x 4 grid)."""
    grid, size, s = (3, 4), (11, 13), 4
    a, b = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    ramp = 0.1 + 0.05 * a + 0.02 * b  # value at cell (a, b), whose centre is pixel coordinate ((a + .5) s, (b + .5) s)
    probs = torch.stack([ramp, 1 - ramp], -1).reshape(12, 2)
    up = grid_probs_to_image(probs, grid, size, np.array([0, 1]))
    assert up.shape == (2, 11, 13)
    for y in range(11):
        for x in range(13):
            cy = min(max((y + 0.5) / s - 0.5, 0.0), 2.0)  # clamped like any bilinear resize at the borders
            cx = min(max((x + 0.5) / s - 0.5, 0.0), 3.0)
            assert up[0, y, x] == pytest.approx(0.1 + 0.05 * cy + 0.02 * cx, abs=1e-6)
    np.testing.assert_allclose(up.sum(0), 1.0, atol=1e-6)


def test_seed_check_counts_by_hand():
    before = torch.tensor([1, 1, 0, 0, 255, 2])
    after = torch.tensor([1, 255, 255, 0, 255, 255])
    truth = torch.tensor([1, 0, 0, 0, 0, 255])  # node 5 has no ground truth: not counted
    counts = SeedCheckCounts()
    counts.add(before, after, truth)
    # seeds: nodes 0-3; wrong: node 1; removed: nodes 1, 2 -> one of the two removed was wrong
    assert (counts.seeds, counts.seeds_wrong, counts.removed, counts.removed_wrong) == (4, 1, 2, 1)
    summary = counts.summary()
    assert summary["removed_wrong"] == 0.5 and summary["seed_err"] == 0.25
    assert summary["seed_err_kept"] == 0.0 and summary["removed"] == 2


class _Dataset:
    ids = ["a", "b", "c"]

    def annotation(self, image_id):
        return Annotation(image_id, 8, 6, ANN.boxes)

    def image(self, image_id):
        return np.full((6, 8, 3), ord(image_id), np.uint8)


def test_chunk_size_does_not_change_labels():
    def scorer(ids, annotations):
        return [np.stack([np.full((6, 8), 0.3), np.full((6, 8), ord(i) % 2), np.full((6, 8), 0.5)]) for i in ids]

    post = PostprocessConfig(use_crf=True, box_constraint=True)
    crf = CRFConfig(iterations=2)
    one = dict(generate_pseudo_labels(_Dataset(), scorer, post, crf, workers=0, chunk_images=1))
    all_ = dict(generate_pseudo_labels(_Dataset(), scorer, post, crf, workers=2, chunk_images=3))
    assert list(one) == _Dataset.ids
    assert all(np.array_equal(one[i], all_[i]) for i in _Dataset.ids)
