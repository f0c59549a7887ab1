"""Pseudo instances scored against ground-truth instances (a2gnn/evaluation/pseudo_instances.py, stages/evaluate_instances.py)
and the GrabCut + CRF competitor's soft label (a2gnn/pseudo_labels/grabcut_crf.py)."""

from __future__ import annotations

import json

import a2gnn  # noqa: F401
import numpy as np
import pytest
from PIL import Image

from a2gnn.data.coco import COCODataset, CocoImage, CocoInstance, write_coco_instances
from a2gnn.pseudo_labels.postprocess import soft_label
from a2gnn.evaluation.pseudo_instances import mask_iou, score_label_dirs, size_of
from a2gnn.pseudo_labels.instances import InstanceConfig
from a2gnn.core.io import DataError, write_label

CLASSES = ("background", "cat", "dog")
H, W = 120, 160


def make_dataset(tmp_path):
    """Two photos: a large cat (100x100) and a small dog (10x12) in the first, a medium dog (40x40) in the second."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    objects = {1: [(1, (10, 110, 20, 120)), (2, (100, 110, 130, 142))], 2: [(2, (30, 70, 50, 90))]}
    images, instances, masks = [], [], {}
    for image_id, objs in objects.items():
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(image_dir / f"{image_id}.png")
        images.append(CocoImage(image_id, f"{image_id}.png", W, H))
        for label, (y1, y2, x1, x2) in objs:
            mask = np.zeros((H, W), bool)
            mask[y1:y2, x1:x2] = True
            instances.append(CocoInstance(image_id, label, mask))
            masks.setdefault(str(image_id), []).append((label, mask))
    path = tmp_path / "gt.json"
    write_coco_instances(path, images, CLASSES, instances)
    return COCODataset(path, image_dir), masks


def paint(masks, shrink: int = 0):
    """Semantic labels from the GT masks, each object eroded by ``shrink`` pixels on its top and left."""
    out = np.zeros((H, W), np.uint8)
    for label, mask in masks:
        ys, xs = np.nonzero(mask)
        out[ys.min() + shrink : ys.max() + 1, xs.min() + shrink : xs.max() + 1] = label
    return out


def test_size_classes_and_iou():
    assert [size_of(a) for a in (1, 1023, 1024, 9215, 9216)] == ["small", "small", "medium", "medium", "large"]
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12) and mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0


def test_scores_against_hand_computed_ious(tmp_path):
    dataset, masks = make_dataset(tmp_path)
    perfect, shrunk, empty = tmp_path / "perfect", tmp_path / "shrunk", tmp_path / "empty"
    for image_id in dataset.ids:
        write_label(perfect / f"{image_id}.png", paint(masks[image_id]))
        write_label(shrunk / f"{image_id}.png", paint(masks[image_id], shrink=5))
        write_label(empty / f"{image_id}.png", np.zeros((H, W), np.uint8))
    drop = InstanceConfig(empty_box="drop")
    out = score_label_dirs(dataset, {"perfect": perfect, "shrunk": shrunk, "empty": empty}, drop)
    # shrunk by 5 px on two sides: (h - 5)(w - 5) / (h w) for cat 100x100, dog 10x12, dog 40x40
    cat, small_dog, dog = 95 * 95 / 10000, 5 * 7 / 120, 35 * 35 / 1600
    assert out["perfect"]["box_iou"] == 1.0 and out["perfect"]["ap50"] == pytest.approx(1.0)
    assert out["shrunk"]["box_iou"] == pytest.approx((cat + small_dog + dog) / 3, abs=1e-9)
    assert out["shrunk"]["iou_small"] == pytest.approx(small_dog)
    assert out["shrunk"]["iou_medium"] == pytest.approx(dog) and out["shrunk"]["iou_large"] == pytest.approx(cat)
    # AP50 by hand: cat 1; dog: the small dog (IoU 0.29, image 1, first among the equal scores) is a false positive,
    # then the medium dog a hit: precision 0.5 up to recall 0.5, so 51 of COCO's 101 recall points at 0.5
    assert out["shrunk"]["ap50"] == pytest.approx((1 + 51 * 0.5 / 101) / 2)
    assert out["empty"]["box_iou"] == 0.0 and out["empty"]["ap50"] == 0.0 and out["empty"]["boxes"] == 3
    # empty_box "box" (the instances stage's default) turns an empty box into the whole box: IoU 1 here
    assert score_label_dirs(dataset, {"empty": empty}, InstanceConfig())["empty"]["box_iou"] == 1.0


def test_missing_or_mis_sized_label_names_the_file(tmp_path):
    dataset, masks = make_dataset(tmp_path)
    folder = tmp_path / "bad"
    write_label(folder / "1.png", paint(masks["1"]))
    with pytest.raises(DataError, match="2.png"):
        score_label_dirs(dataset, {"bad": folder}, InstanceConfig())
    write_label(folder / "2.png", np.zeros((H // 2, W), np.uint8))
    with pytest.raises(DataError, match="2.png.*160x60"):
        score_label_dirs(dataset, {"bad": folder}, InstanceConfig())


def test_soft_label_matches_a_loop():
    label = np.array([[0, 3, 255], [7, 3, 0]], np.uint8)
    channels = np.array([0, 3, 7])
    probs = soft_label(label, channels, 0.7)
    for y in range(2):
        for x in range(3):
            cls = 0 if label[y, x] == 255 else label[y, x]
            for k, c in enumerate(channels):
                assert probs[k, y, x] == pytest.approx(0.7 if c == cls else 0.15)
    assert np.allclose(probs.sum(axis=0), 1.0)
    assert (soft_label(np.zeros((2, 2), np.uint8), np.array([0]), 0.7) == 1.0).all()
    with pytest.raises(ValueError, match="5"):
        soft_label(np.array([[5]], np.uint8), channels, 0.7)


def test_stage_writes_metrics_and_table(tmp_path, monkeypatch):
    from helpers import load_stage

    dataset, masks = make_dataset(tmp_path)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    data = json.loads((tmp_path / "gt.json").read_text())
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    for image_id in dataset.ids:
        (root / "train" / f"{image_id}.png").write_bytes((tmp_path / "images" / f"{image_id}.png").read_bytes())
        write_label(tmp_path / "a" / f"{image_id}.png", paint(masks[image_id]))
    params = tmp_path / "params.yaml"
    params.write_text("dataset: {format: coco, train_split: train, val_split: train}\n")
    monkeypatch.chdir(tmp_path)
    load_stage("evaluate_instances").main([str(root), f"a={tmp_path / 'a'}", "--metric", "box_iou=iou.json",
                                          "--metric", "ap50=ap.json", "--table", "t.csv", "--params", str(params)])
    assert json.loads((tmp_path / "iou.json").read_text()) == {"a": 1.0}
    assert json.loads((tmp_path / "ap.json").read_text()) == {"a": 1.0}
    header, row = (tmp_path / "t.csv").read_text().splitlines()
    assert header.startswith("method,box_iou,iou_small") and row.startswith("a,1.0000") and row.endswith(",3")


def test_grabcut_scorer_reads_m_b_and_names_bad_files(tmp_path):
    from a2gnn.data.voc import Annotation, Box
    from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig, GrabCutScorer
    from a2gnn.pseudo_labels.postprocess import fuse_scores

    ann = Annotation("a", 4, 3, (Box(0, 0, 2, 2, 2), Box(1, 1, 4, 3, 5)))
    m_b = np.array([[2, 2, 0, 0], [2, 5, 5, 255], [0, 5, 5, 5]], np.uint8)
    write_label(tmp_path / "a.png", m_b)
    scorer = GrabCutScorer(tmp_path, GrabCutCRFConfig(confidence=0.8))
    (scores,) = scorer(["a"], [ann])
    assert scores.shape == (3, 3, 4)  # background, class 2, class 5
    assert scores[:, 1, 3].tolist() == pytest.approx([0.8, 0.1, 0.1])  # unknown (255) -> background
    assert scores[:, 0, 0].tolist() == pytest.approx([0.1, 0.8, 0.1])
    fused = fuse_scores(np.stack([np.ones((3, 4)), np.zeros((3, 4)), np.zeros((3, 4))]), scores, 0.5)
    assert fused[:, 0, 0].tolist() == pytest.approx([0.55, 0.4, 0.05])
    with pytest.raises(DataError, match="b.png"):
        scorer(["b"], [ann])
    write_label(tmp_path / "c.png", m_b[:2])
    with pytest.raises(DataError, match="c.png"):
        scorer(["c"], [Annotation("c", 4, 3, ann.boxes)])
