"""Pseudo-label post-processing, the Table 4(a) Baseline, A²GNN up-sampling and the consistency-check counts,
each against a hand-computed value or an explicit loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2gnn.pseudo_labels.baseline import BaselineConfig, BaselineScorer, baseline_scores
from a2gnn.core.config import ConfigError
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.voc import Annotation, Box
from a2gnn.pseudo_labels.a2gnn import SeedCheckCounts
from a2gnn.graph.nodes import grid_probs_to_image
from a2gnn.pseudo_labels.postprocess import (PostprocessConfig, box_constraint, finish_labels, generate_pseudo_labels,
                                 image_channels, upsample_scores)
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


# --- postprocess.resolution: up-sampling, box constraint and CRF at the photo's own size (§5) ---------------------

def test_upsample_scores_matches_torch_bilinear():
    """cv2's bilinear resize against torch's (align_corners=False: pixel centres aligned), another library."""
    scores = np.random.default_rng(1).random((3, 5, 7)).astype(np.float32)
    got = upsample_scores(scores, (13, 20))
    want = torch.nn.functional.interpolate(torch.from_numpy(scores)[None], size=(13, 20), mode="bilinear",
                                           align_corners=False)[0].numpy()
    assert got.shape == (3, 13, 20) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


def _write_png(path, rgb):
    import cv2

    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


class _PhotoReader:
    """Two photos on disk: "big" (12 x 16, shrunk to 6 x 8 by max_side 8) and "small" (6 x 8, passed through).

    The box of "big" (x 3..11, y 1..7) shrinks to (1..6, 0..4) rounded outwards: 2 x 2 working pixels cover it.
    """

    ids = ["big", "small"]
    class_names = ("background", "thing")

    def __init__(self, root):
        self.root = root
        for image_id in self.ids:
            ann = self.annotation(image_id)
            rgb = np.random.default_rng(len(image_id)).integers(0, 255, (ann.height, ann.width, 3), dtype=np.uint8)
            _write_png(self.image_path(image_id), rgb)

    def image_path(self, image_id):
        return self.root / f"{image_id}.png"

    def image(self, image_id):
        from a2gnn.core.io import read_image

        return read_image(self.image_path(image_id))

    def annotation(self, image_id):
        if image_id == "big":
            return Annotation("big", 16, 12, (Box(3, 1, 11, 7, label=1),))
        return Annotation("small", 8, 6, (Box(2, 1, 6, 4, label=1),))


def _thing_everywhere(ids, annotations):
    """Scores that prefer the object class at every pixel of the working image: the boxes alone decide."""
    return [np.stack([np.full((a.height, a.width), 0.2), np.full((a.height, a.width), 0.8)]) for a in annotations]


@pytest.mark.parametrize("workers", [0, 2])
def test_original_resolution_uses_the_photos_own_boxes(tmp_path, workers):
    from a2gnn.data.resize import ResizedDataset, to_original

    ds = ResizedDataset(_PhotoReader(tmp_path), max_side=8)
    assert ds.annotation("big").boxes[0] == Box(1, 0, 6, 4, label=1)
    post = PostprocessConfig(use_crf=False, box_constraint=True, resolution="original")
    labels = dict(generate_pseudo_labels(ds, _thing_everywhere, post, CRFConfig(), workers=workers, chunk_images=2))
    want = np.zeros((12, 16), np.uint8)
    want[1:7, 3:11] = 1  # exactly the photo's box
    assert np.array_equal(labels["big"], want)
    # at the working size the outward-rounded box, enlarged by nearest neighbour, spills over the photo's box
    post_working = PostprocessConfig(use_crf=False, box_constraint=True, resolution="working")
    working = dict(generate_pseudo_labels(ds, _thing_everywhere, post_working, CRFConfig(), workers=0,
                                          chunk_images=2))
    assert working["big"].shape == (6, 8)
    spilled = to_original(ds, "big", working["big"])
    assert (spilled[want == 1] == 1).all() and (spilled == 1).sum() > want.sum()
    # a photo at most max_side long: both settings are the same computation
    assert np.array_equal(labels["small"], working["small"])


def _by_hand(reader, scores, crf, two_scale):
    """Labels of "big" at the original size, the steps written out: [CRF on the shrunk photo within the shrunk
    box,] bilinear up-sampling (torch), the photo's box, CRF on the photo."""
    from a2gnn.ops.crf import dense_crf
    from a2gnn.data.resize import resize_image

    photo = reader.image("big")
    probs = scores / scores.sum(0)
    if two_scale:
        probs[1, :, :1], probs[1, :, 6:], probs[1, 4:] = 0, 0, 0  # outside the shrunk box (1..6, 0..4)
        probs /= probs.sum(0, keepdims=True)
        probs = dense_crf(resize_image(photo, (6, 8)), probs, crf)
    probs = torch.nn.functional.interpolate(torch.from_numpy(probs).float()[None], size=(12, 16), mode="bilinear",
                                            align_corners=False)[0].numpy()
    probs[1, :, :3], probs[1, :, 11:], probs[1, :1], probs[1, 7:] = 0, 0, 0, 0  # outside the photo's box
    probs /= probs.sum(0, keepdims=True)
    return dense_crf(photo, probs, crf).argmax(0)


@pytest.mark.parametrize("resolution", ["original", "two_scale"])
def test_original_resolution_crf_follows_the_scores_upsampled(tmp_path, resolution):
    """With the CRF on, labels at the original size are the arg-max of the dense CRF of the bilinearly
    up-sampled, box-constrained probabilities (after a first CRF at the shrunk size for two_scale); a photo that
    was not shrunk gets the one CRF of ``working``."""
    from a2gnn.data.resize import ResizedDataset

    reader = _PhotoReader(tmp_path)
    ds = ResizedDataset(reader, max_side=8)
    rng = np.random.default_rng(3)
    scores = {"big": rng.random((2, 6, 8)), "small": rng.random((2, 6, 8))}
    crf = CRFConfig(iterations=3)
    post = PostprocessConfig(resolution=resolution)
    got = dict(generate_pseudo_labels(ds, lambda ids, anns: [scores[i] for i in ids], post, crf, workers=0,
                                      chunk_images=2))
    assert got["big"].shape == (12, 16)
    assert np.array_equal(got["big"], _by_hand(reader, scores["big"], crf, resolution == "two_scale"))
    working = dict(generate_pseudo_labels(ds, lambda ids, anns: [scores[i] for i in ids],
                                          PostprocessConfig(resolution="working"), crf, workers=0, chunk_images=2))
    assert np.array_equal(got["small"], working["small"])
    assert not np.array_equal(got["big"], _by_hand(reader, scores["big"], crf, resolution != "two_scale"))


def test_original_resolution_names_a_photo_whose_size_disagrees_with_its_annotation(tmp_path):
    from a2gnn.core.io import DataError
    from a2gnn.pseudo_labels.postprocess import finish_at_original

    path = tmp_path / "odd.png"
    _write_png(path, np.zeros((10, 10, 3), np.uint8))
    job = (path, np.ones((2, 5, 5), np.float32), Annotation("odd", 8, 6, ()), Annotation("odd", 16, 12, ()),
           PostprocessConfig(), CRFConfig())
    with pytest.raises(DataError, match="odd.png.*10x10.*16x12"):
        finish_at_original(job)


def test_postprocess_resolution_is_checked():
    from a2gnn.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"postprocess\] resolution='full'"):
        PostprocessConfig.from_params({"resolution": "full"})


def test_a_stage_on_shrunk_photos_writes_full_size_labels_and_two_scale_recovers_outlines(tiny_voc, tmp_path):
    """``stages/baseline.py`` with ``dataset.max_side``: CAMs that are the ground truth of the shrunk photo give
    full-size labels either way; refining at the photo's size (two_scale) gets closer to the full-size ground
    truth than enlarging the shrunk labels (working), whose outlines are blocky."""
    import yaml

    from a2gnn.data.formats import DatasetConfig
    from a2gnn.data.formats import open_dataset
    from a2gnn.data.voc import VOCDataset
    from a2gnn.evaluation.confusion import ConfusionMatrix
    from a2gnn.core.io import read_label
    from helpers import load_stage

    small = open_dataset(DatasetConfig(root=str(tiny_voc), max_side=40), "train", tiny_voc)
    for image_id in small.ids:
        gt, ann = small.semantic_gt(image_id), small.annotation(image_id)
        cams = np.stack([(gt == c).astype(np.float32) for c in ann.image_labels])
        save_cam_scores(tmp_path / "cam" / "scores" / f"{image_id}.npz", cams, ann.image_labels)
    full = VOCDataset(tiny_voc, "train")
    miou = {}
    for mode in ("working", "two_scale"):
        params = tmp_path / f"{mode}.yaml"
        params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc), "max_side": 40},
                                          "postprocess": {"resolution": mode}, "runtime": {"workers": 0}}))
        out = tmp_path / mode
        load_stage("baseline").main([str(tiny_voc), str(tmp_path / "cam"), str(out), "--params", str(params)])
        cm = ConfusionMatrix(full.num_classes)
        for image_id in full.ids:
            label, ann = read_label(out / f"{image_id}.png"), full.annotation(image_id)
            assert label.shape == (ann.height, ann.width) and max(label.shape) > 40
            cm.update(full.semantic_gt(image_id), label)
        miou[mode] = cm.miou()
    assert miou["two_scale"] > miou["working"] + 0.01, miou


def test_fill_empty_boxes_by_hand():
    """Three boxes on a 6 x 10 map, threshold 0.5: a filled box is left alone, an under-filled one takes M_B's
    object (only where M_B has its class), and a small box nested in a large under-filled one has the last word."""
    from a2gnn.pseudo_labels.postprocess import fill_empty_boxes

    label = np.zeros((6, 10), np.uint8)
    label[0:2, 0:3] = 1  # box A (class 1, 2 x 3): 6 of 6 pixels -> filled
    label[3, 5] = 2  # box B (class 2, rows 2..5, cols 4..9 = 24 px): 1 pixel -> under-filled
    fallback = np.full((6, 10), 255, np.uint8)  # M_B: 255 unknown
    fallback[0:2, 0:3] = 0  # M_B disagrees in A: ignored, A is filled
    fallback[2:6, 4:10] = 2
    fallback[3:5, 6:8] = 3  # box C (class 3, rows 3..4, cols 6..7) inside B, 0 of its 4 pixels labelled
    fallback[5, 4] = 255  # unknown stays as it was
    boxes = (Box(0, 0, 3, 2, label=1), Box(4, 2, 10, 6, label=2), Box(6, 3, 8, 5, label=3))
    want = label.copy()
    want[2:6, 4:10] = 2  # B from M_B ...
    want[5, 4] = 0  # ... except where M_B does not know
    want[3:5, 6:8] = 3  # C on top of B
    got = fill_empty_boxes(label, boxes, fallback, 0.5)
    assert np.array_equal(got, want)
    assert np.array_equal(label[3], [0, 0, 0, 0, 0, 2, 0, 0, 0, 0])  # input untouched
    assert np.array_equal(fill_empty_boxes(label, boxes, fallback, 0.0), label)
    # fill is measured on the input: with threshold 1/24 B has exactly enough and stays as it was (C still fills)
    exact = fill_empty_boxes(label, boxes, fallback, 1 / 24)
    assert exact[2, 4] == 0 and (exact[3:5, 6:8] == 3).all()


def _shrunk_photos_with_m_b(tmp_path, m_b_of_size):
    """The two photos of :class:`_PhotoReader` shrunk by max_side 8, and an M_B folder of ``m_b_of_size(h, w)``
    label maps at the working size: (dataset, M_B folder)."""
    from a2gnn.data.resize import ResizedDataset
    from a2gnn.core.io import write_label

    photos = tmp_path / "photos"
    photos.mkdir()
    ds = ResizedDataset(_PhotoReader(photos), max_side=8)
    m_b = tmp_path / "M_B"
    m_b.mkdir()
    for image_id in ds.ids:
        write_label(m_b / f"{image_id}.png", m_b_of_size(ds.annotation(image_id).height, ds.annotation(image_id).width))
    return ds, m_b


def test_write_pseudo_labels_falls_back_to_m_b_at_the_photos_size(tmp_path):
    """min_box_fill with a shrunk photo: M_B (working size) enlarged by nearest neighbour fills the photo's own box;
    without M_B the config is refused before anything is written."""
    from a2gnn.core.io import read_label
    from a2gnn.pseudo_labels.postprocess import write_pseudo_labels

    ds, m_b = _shrunk_photos_with_m_b(tmp_path, lambda h, w: np.ones((h, w), np.uint8))  # M_B: "thing" everywhere

    def background(ids, annotations):
        return [np.stack([np.ones((a.height, a.width)), np.zeros((a.height, a.width))]) for a in annotations]

    post = PostprocessConfig(use_crf=False, box_constraint=True, resolution="original", min_box_fill=0.15)
    with pytest.raises(ConfigError, match="min_box_fill"):
        write_pseudo_labels(ds, background, post, CRFConfig(), 0, 2, tmp_path / "none", desc="x")
    assert not (tmp_path / "none").exists()
    write_pseudo_labels(ds, background, post, CRFConfig(), 0, 2, tmp_path / "out", desc="x", fallback_dir=m_b)
    big = read_label(tmp_path / "out" / "big.png")
    want = np.zeros((12, 16), np.uint8)
    want[1:7, 3:11] = 1  # the photo's box (x 3..11, y 1..7), not the working box enlarged
    assert np.array_equal(big, want)
    off = PostprocessConfig(use_crf=False, box_constraint=True, resolution="original")
    write_pseudo_labels(ds, background, off, CRFConfig(), 0, 2, tmp_path / "off", desc="x", fallback_dir=m_b)
    assert not read_label(tmp_path / "off" / "big.png").any()


def test_min_box_fill_is_checked():
    from a2gnn.core.config import ConfigError

    with pytest.raises(ConfigError, match="min_box_fill"):
        PostprocessConfig.from_params({"min_box_fill": 1.5})


def test_write_pseudo_labels_names_an_m_b_of_the_wrong_size(tmp_path):
    from a2gnn.core.io import DataError, write_label
    from a2gnn.pseudo_labels.postprocess import write_pseudo_labels

    photos = tmp_path / "photos"
    photos.mkdir()
    reader = _PhotoReader(photos)
    m_b = tmp_path / "M_B"
    m_b.mkdir()
    for image_id in reader.ids:
        write_label(m_b / f"{image_id}.png", np.ones((3, 3), np.uint8))  # not the labels' size
    post = PostprocessConfig(use_crf=False, box_constraint=True, resolution="working", min_box_fill=0.5)
    with pytest.raises(DataError, match=r"big\.png.*M_B is 3x3, the image is 16x12"):
        write_pseudo_labels(reader, _thing_everywhere, post, CRFConfig(), 0, 2, tmp_path / "out", desc="x",
                            fallback_dir=m_b)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_fill_source_grabcut_crf_takes_the_grabcut_crf_stages_label(tmp_path):
    """fill_source grabcut_crf: an under-filled box takes, inside it, the object of the label the grabcut_crf stage
    writes (computed here by that stage's path, GrabCutScorer through write_pseudo_labels), not M_B's."""
    import dataclasses

    from a2gnn.data.resize import to_original
    from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig, GrabCutScorer
    from a2gnn.core.io import read_label
    from a2gnn.pseudo_labels.postprocess import write_pseudo_labels

    holes = lambda h, w: (np.indices((h, w)).sum(axis=0) % 3 != 0).astype(np.uint8)  # thing, a hole every 3rd pixel
    ds, m_b = _shrunk_photos_with_m_b(tmp_path, holes)
    crf = CRFConfig(gaussian_sxy=0.5, gaussian_compat=2.0, bilateral_compat=0.0)  # smoothness only: changes M_B
    post = PostprocessConfig(use_crf=True, box_constraint=True, resolution="two_scale", min_box_fill=0.1)
    gc_cfg = GrabCutCRFConfig(confidence=0.6)
    write_pseudo_labels(ds, GrabCutScorer(m_b, gc_cfg), post, crf, 0, 2, tmp_path / "gc", desc="x", fallback_dir=m_b)

    def background(ids, annotations):  # every box empty: all under-filled
        return [np.stack([np.ones((a.height, a.width)), np.zeros((a.height, a.width))]) for a in annotations]

    crf_source = dataclasses.replace(post, fill_source="grabcut_crf")
    with pytest.raises(ConfigError, match="grabcut_crf.confidence"):
        write_pseudo_labels(ds, background, crf_source, crf, 0, 2, tmp_path / "no", desc="x", fallback_dir=m_b)
    write_pseudo_labels(ds, background, crf_source, crf, 0, 2, tmp_path / "out", desc="x", fallback_dir=m_b,
                        fill_confidence=gc_cfg.confidence)
    write_pseudo_labels(ds, background, post, crf, 0, 2, tmp_path / "m_b", desc="x", fallback_dir=m_b)
    for image_id in ds.ids:
        gc = read_label(tmp_path / "gc" / f"{image_id}.png")
        want = np.zeros_like(gc)
        for box in ds.original.annotation(image_id).boxes:
            window = (slice(box.y1, box.y2), slice(box.x1, box.x2))
            want[window][gc[window] == box.label] = box.label
        assert np.array_equal(read_label(tmp_path / "out" / f"{image_id}.png"), want), image_id
    from_m_b = read_label(tmp_path / "m_b" / "big.png")
    holes_photo = to_original(ds, "big", read_label(m_b / "big.png"))
    assert np.array_equal(from_m_b[1:7, 3:11], holes_photo[1:7, 3:11])  # grabcut: M_B's object as is
    assert not np.array_equal(read_label(tmp_path / "out" / "big.png"), from_m_b)  # the CRF changed it


def test_fill_source_is_checked():
    with pytest.raises(ConfigError, match="fill_source"):
        PostprocessConfig.from_params({"fill_source": "boxes"})


def test_grabcut_crf_fallback_names_an_m_b_with_a_foreign_class(tmp_path):
    from a2gnn.core.io import DataError
    from a2gnn.pseudo_labels.postprocess import grabcut_crf_fallback

    ds, _ = _shrunk_photos_with_m_b(tmp_path, lambda h, w: np.ones((h, w), np.uint8))
    a = ds.annotation("big")
    foreign = np.full((a.height, a.width), 7, np.uint8)  # class 7: not a class of the image
    post = PostprocessConfig(use_crf=False, resolution="two_scale", min_box_fill=0.5, fill_source="grabcut_crf")
    with pytest.raises(DataError, match=r"M_B/big\.png.*not channels"):
        grabcut_crf_fallback(ds, "big", foreign, post, CRFConfig(), 0.7, tmp_path / "M_B" / "big.png")
