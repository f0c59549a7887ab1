"""a2gnn.pseudo_labels.instances (paper §5: pseudo labels + boxes -> one instance per box) and
stages/instances.py: hand-made overlap / empty-box cases, a COCO round trip through pycocotools, stage bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from a2gnn.core.config import ConfigError
from a2gnn.data.coco import COCODataset
from a2gnn.data.voc import VOCDataset
from a2gnn.data.voc import Box
from a2gnn.pseudo_labels.instances import (
    InstanceConfig,
    box_instance_masks,
    coco_images,
    pseudo_instances,
    write_pseudo_instances,
)
from a2gnn.core.io import DataError, write_label
from helpers import load_stage



def rect(shape, x1, y1, x2, y2):
    m = np.zeros(shape, bool)
    m[y1:y2, x1:x2] = True
    return m


def test_instance_is_the_box_pixels_of_the_box_class():
    label = np.zeros((6, 8), np.uint8)
    label[1:5, 1:7] = 1  # class 1 spills out of the box
    label[2, 2] = 255  # unknown: no instance
    label[3, 3] = 2  # another class inside the box
    (mask,) = box_instance_masks(label, [Box(2, 1, 5, 5, 1)])
    expected = rect(label.shape, 2, 1, 5, 5) & (label == 1)
    assert np.array_equal(mask, expected) and not mask[2, 2] and not mask[3, 3] and mask.sum() == 10


def test_overlapping_same_class_boxes_smallest_wins_or_all():
    label = np.ones((6, 6), np.uint8)
    big, small = Box(0, 0, 6, 6, 1), Box(2, 2, 4, 4, 1)
    masks = box_instance_masks(label, [big, small], "smallest")
    assert np.array_equal(masks[1], rect(label.shape, 2, 2, 4, 4))
    assert np.array_equal(masks[0], ~rect(label.shape, 2, 2, 4, 4))
    assert not (masks[0] & masks[1]).any()
    both = box_instance_masks(label, [big, small], "all")
    assert both[0].all() and np.array_equal(both[1], rect(label.shape, 2, 2, 4, 4))


def test_equal_area_tie_goes_to_the_later_box_as_in_grabcut():
    label = np.ones((4, 6), np.uint8)
    a, b = Box(0, 0, 4, 4, 1), Box(2, 0, 6, 4, 1)
    masks = box_instance_masks(label, [a, b])
    assert masks[1][:, 2:4].all() and not masks[0][:, 2:4].any()


def test_boxes_of_other_classes_do_not_compete():
    label = np.zeros((6, 6), np.uint8)
    label[:, :3] = 1
    label[:, 3:] = 2
    masks = box_instance_masks(label, [Box(0, 0, 6, 6, 1), Box(1, 1, 5, 5, 2)])
    assert np.array_equal(masks[0], label == 1)  # the smaller class-2 box takes no class-1 pixel
    assert np.array_equal(masks[1], rect(label.shape, 1, 1, 5, 5) & (label == 2))


@pytest.mark.parametrize("empty_box", ["box", "drop"])
def test_box_without_pixels_of_its_class(empty_box):
    label = np.zeros((6, 6), np.uint8)
    label[0:2, 0:2] = 1
    boxes = [Box(0, 0, 2, 2, 1), Box(3, 3, 6, 6, 2)]  # box 1 holds no class-2 pixel
    found = pseudo_instances(label, boxes, InstanceConfig(empty_box=empty_box))
    assert found[0].box_index == 0 and not found[0].fallback and found[0].fill == 1.0
    if empty_box == "drop":
        assert len(found) == 1
    else:
        assert len(found) == 2 and found[1].fallback and found[1].fill == 0.0
        assert np.array_equal(found[1].mask, rect(label.shape, 3, 3, 6, 6))


def test_box_emptied_by_smaller_boxes_and_min_fill():
    label = np.zeros((4, 8), np.uint8)
    label[1:3, 1:3] = 1  # all class-1 pixels lie in the small box
    big, small = Box(0, 0, 8, 4, 1), Box(1, 1, 3, 3, 1)
    found = pseudo_instances(label, [big, small], InstanceConfig())
    assert found[0].fallback and found[0].mask.all()  # the large box lost all its pixels: whole box
    assert not found[1].fallback
    label[0, 5] = 1  # one pixel left for the large box: 1/32 of it
    assert not pseudo_instances(label, [big, small], InstanceConfig())[0].fallback
    assert pseudo_instances(label, [big, small], InstanceConfig(min_fill=0.1))[0].fallback


def test_config_rejects_unknown_rules():
    with pytest.raises(ConfigError, match="overlap"):
        InstanceConfig.from_params({"overlap": "largest"})
    with pytest.raises(ConfigError, match="empty_box"):
        InstanceConfig.from_params({"empty_box": "grabcut"})


def write_gt_labels(dataset: VOCDataset, out: Path) -> None:
    for image_id in dataset.ids:
        write_label(out / f"{image_id}.png", dataset.semantic_gt(image_id))


def test_coco_round_trip_through_pycocotools(tiny_voc, tmp_path):
    dataset = VOCDataset(tiny_voc, "train")
    labels = tmp_path / "labels"
    write_gt_labels(dataset, labels)
    out = tmp_path / "train.json"
    stats = write_pseudo_instances(dataset, labels, InstanceConfig(), out)
    n_boxes = sum(len(dataset.annotation(i).boxes) for i in dataset.ids)
    assert stats.images == len(dataset.ids) and stats.boxes == n_boxes == stats.instances

    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == list(range(1, len(dataset.ids) + 1))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(dataset.class_names[1:])
    ours = COCODataset(out, tiny_voc / "JPEGImages")
    for img, image_id in zip(coco_images(dataset), dataset.ids):
        assert (tiny_voc / "JPEGImages" / img.file_name).is_file()
        boxes = dataset.annotation(image_id).boxes
        expected = box_instance_masks(dataset.semantic_gt(image_id), boxes)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img.id]))
        decoded = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        assert np.array_equal(decoded, expected)
        assert [a["category_id"] for a in anns] == [b.label for b in boxes]
        assert np.array_equal(ours.instance_masks(str(img.id)), expected)
        for a, m in zip(anns, expected):
            assert a["area"] == m.sum() and mask_utils.area(a["segmentation"]) == m.sum()


def test_missing_or_mis_sized_label_names_the_file(tiny_voc, tmp_path):
    dataset = VOCDataset(tiny_voc, "train")
    labels = tmp_path / "labels"
    write_gt_labels(dataset, labels)
    victim = labels / f"{dataset.ids[1]}.png"
    write_label(victim, np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=victim.name):
        write_pseudo_instances(dataset, labels, InstanceConfig(), tmp_path / "x.json")
    victim.unlink()
    with pytest.raises(DataError, match=victim.name):
        write_pseudo_instances(dataset, labels, InstanceConfig(), tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_stage_writes_identical_bytes_twice(tiny_voc, tmp_path):
    dataset = VOCDataset(tiny_voc, "train")
    labels = tmp_path / "labels"
    write_gt_labels(dataset, labels)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}, "instances": {"empty_box": "drop"}}))
    stage = load_stage("instances")
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}" / "train.json"
        stage.main([str(tiny_voc), str(labels), str(out), "--params", str(params)])
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and json.loads(outs[0])["annotations"]


def test_large_photos_give_instances_at_their_full_size(tiny_voc, tmp_path):
    """With ``dataset.max_side`` the earlier stages see shrunk photos but write pseudo labels at full size: the
    instances (and so Mask R-CNN, which resizes by itself) are at the photo's own size, boxes as annotated."""
    dataset = VOCDataset(tiny_voc, "train")
    labels = tmp_path / "labels"
    write_gt_labels(dataset, labels)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc), "max_side": 64}}))
    out = tmp_path / "train.json"
    load_stage("instances").main([str(tiny_voc), str(labels), str(out), "--params", str(params)])
    coco = COCO(str(out))
    for image_id, img in zip(dataset.ids, sorted(coco.imgs.values(), key=lambda i: i["id"])):
        ann = dataset.annotation(image_id)
        assert (img["height"], img["width"]) == (ann.height, ann.width) and max(ann.height, ann.width) > 64
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))]
        assert masks and all(m.shape == (ann.height, ann.width) for m in masks)
