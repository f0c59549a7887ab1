r"""Pseudo instance masks scored directly against the ground-truth instances, without training a detector.

Mask R-CNN cannot be trained on a few dozen photos, yet a user with their own photos wants to know how good the
masks of their boxes are. Every pseudo-label method gives, for each box :math:`B_k`, the instance the
``instances`` stage writes (:func:`a2gnn.pseudo_labels.instances.pseudo_instances`: the pixels of the box's
class inside the box, the smallest same-class box winning overlaps, an empty box filled or dropped by
``instances.empty_box``). Each is compared with the ground-truth instance of the same box:

* **per-box IoU** :math:`|P_k \cap G_k| / |P_k \cup G_k|`, averaged over the boxes (a dropped instance
  scores 0), and the same mean over COCO's object sizes by ground-truth area: small < 32², medium 32²-96²,
  large >= 96² pixels at the photo's own resolution;
* **mask AP** (COCO's, :func:`a2gnn.evaluation.coco_eval.coco_ap`) with every box's pseudo instance as a detection of
  score 1: the share of boxes whose mask clears each IoU threshold, in COCO's averaged form.

Crowd regions (COCO) and VOC "difficult" objects are left out, as the COCO evaluation ignores them.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from a2gnn.data.labels import LabelFolder
from a2gnn.data.coco import CocoInstance, encode_mask, write_coco_instances
from a2gnn.data.voc import Box, parse_voc_xml
from a2gnn.evaluation.coco_eval import coco_ap
from a2gnn.pseudo_labels.instances import InstanceConfig, coco_images, pseudo_instances
from a2gnn.core.io import DataError

SIZE_LIMITS = (32**2, 96**2)
"""COCO's area limits (pixels): small < 32², medium < 96², large otherwise."""
SIZES = ("small", "medium", "large")


def size_of(area: int) -> str:
    """COCO size class of an object of ``area`` pixels."""
    return SIZES[int(np.searchsorted(SIZE_LIMITS, area, side="right"))]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def box_ground_truth(dataset, image_id: str) -> tuple[tuple[Box, ...], np.ndarray, np.ndarray]:
    """The image's boxes with their ground-truth instances, aligned, at the photo's resolution.

    Returns (boxes, masks (n, H, W) bool, scored (n,) bool: False for VOC difficult objects). COCO: the reader's
    boxes and instance masks; VOC: every object of the XML and ``SegmentationObject`` value k + 1."""
    if hasattr(dataset, "instance_masks"):
        boxes = dataset.annotation(image_id).boxes
        return boxes, dataset.instance_masks(image_id), np.ones(len(boxes), dtype=bool)
    xml = dataset.root / "Annotations" / f"{image_id}.xml"
    ann = parse_voc_xml(xml, dataset.class_names, use_difficult=True)
    inst = dataset.instance_gt(image_id)
    if inst.shape != (ann.height, ann.width):
        raise DataError(dataset.root / "SegmentationObject" / f"{image_id}.png",
                        f"instance map is {inst.shape[1]}x{inst.shape[0]}, {xml.name} says {ann.width}x{ann.height}")
    masks = np.stack([inst == k + 1 for k in range(len(ann.boxes))]) if ann.boxes else np.zeros((0,) + inst.shape, bool)
    return ann.boxes, masks, np.array([not b.difficult for b in ann.boxes], dtype=bool)


@dataclass
class BoxScores:
    """Per-box IoUs of one method with each box's class and ground-truth size."""

    ious: list[float]
    sizes: list[str]
    labels: list[int]

    def mean(self, size: str | None = None) -> float | None:
        values = [v for v, s in zip(self.ious, self.sizes) if size is None or s == size]
        return float(np.mean(values)) if values else None


def score_label_dirs(
    dataset,
    label_dirs: Mapping[str, os.PathLike | str],
    cfg: InstanceConfig,
    progress: Callable[[Iterable, str, int], Iterable] | None = None,
) -> dict[str, dict[str, float | None]]:
    """For each named folder of pseudo labels ``<dir>/<id>.png`` (photo size): its per-box IoU (all boxes and by
    size) and mask AP (``ap``, ``ap50``, ``ap75``) over the split. Returns ``{name: {figure: value}}``; a size with
    no box gives None. A missing or mis-sized label map raises DataError naming it."""
    images = coco_images(dataset)
    scores = {name: BoxScores([], [], []) for name in label_dirs}
    detections: dict[str, list[dict]] = {name: [] for name in label_dirs}
    gt_instances = []
    items = zip(images, dataset.ids)
    if progress is not None:
        items = progress(items, "pseudo instances", len(images))
    for img, image_id in items:
        boxes, gt, scored = box_ground_truth(dataset, image_id)
        for box, mask, keep in zip(boxes, gt, scored):
            if mask.any():
                gt_instances.append(CocoInstance(img.id, box.label, mask, iscrowd=not keep))
        for name, folder in label_dirs.items():
            label = LabelFolder(folder, "label map").read(image_id, (img.height, img.width))
            pseudo = np.zeros((len(boxes),) + label.shape, dtype=bool)
            for found in pseudo_instances(label, boxes, cfg):
                pseudo[found.box_index] = found.mask
            for k, box in enumerate(boxes):
                if not (scored[k] and gt[k].any()):
                    continue
                scores[name].ious.append(mask_iou(pseudo[k], gt[k]))
                scores[name].sizes.append(size_of(int(gt[k].sum())))
                scores[name].labels.append(box.label)
                detections[name].append({"image_id": img.id, "category_id": box.label, "score": 1.0,
                                         "segmentation": encode_mask(pseudo[k])})
    from pycocotools.coco import COCO

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_json = Path(tmp) / "gt.json"
        write_coco_instances(gt_json, images, dataset.class_names, gt_instances)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(str(gt_json))
        for name in label_dirs:
            ap = coco_ap(coco_gt, detections[name], "segm")
            s = scores[name]
            out[name] = {"box_iou": s.mean(), **{f"iou_{size}": s.mean(size) for size in SIZES},
                         "ap": ap["ap"], "ap50": ap["ap50"], "ap75": ap["ap75"], "boxes": len(s.ious)}
    return out


def figures_of(results: Mapping[str, Mapping[str, float | None]], figure: str) -> dict[str, float | None]:
    """``{method: value}`` of one figure, rounded to 4 decimals (what one metrics file holds)."""
    return {name: (None if r[figure] is None else round(float(r[figure]), 4)) for name, r in results.items()}
