r"""Pseudo instance masks from pseudo labels and boxes, paper §5 (box-supervised instance segmentation).

Zhang et al., "Affinity Attention Graph Neural Network for Weakly Supervised Semantic Segmentation", TPAMI
(arXiv:2106.04054), §5: "Given a bounding box, we directly assign pixels which locate inside a bounding box
and share the same class with it to one instance." For box :math:`B_k` with class :math:`L_{B_k}` and the
pseudo label map :math:`Y` (class per pixel):

.. math::

    I_k = \{\, i \in B_k : Y(i) = L_{B_k} \,\} \;\setminus\; \bigcup_{j \in S_k} I_j

Choices the paper leaves open (``instances`` section of params.yaml):

* **Overlapping same-class boxes** (``overlap``): ``smallest`` (default) — a pixel of class c inside several
  boxes of class c belongs to the smallest of them only (:math:`S_k` = the smaller boxes of the same class
  that contain the pixel; ties in area: the later box of the annotation), the rule GrabCut seeds use for
  :math:`M_B` (:func:`a2gnn.data.boxes.box_owner_map`), so instances of one class never overlap;
  ``all`` — every box claims every pixel of its class (:math:`S_k = \emptyset`; instances may overlap).
  Boxes of other classes never compete: a pixel's class decides which boxes can take it.
* **Empty boxes** (``empty_box``): a box is *empty* when its instance has no pixel, or fewer than
  ``min_fill`` × the box area (the pseudo label lost the object, or a smaller box took all of it).
  ``box`` (default) — the whole box becomes the instance (SDI's fallback for a failed GrabCut, as
  :mod:`a2gnn.seeds.grabcut` does); ``drop`` — the box gives no instance (Mask R-CNN then never sees it).
* Pixels labelled 255 (unknown) belong to no instance.

Output: a COCO instances JSON (:func:`a2gnn.data.coco.write_coco_instances`, compressed RLE) over the
images of the split in the dataset's id order (COCO image id = position + 1, as :func:`voc_to_coco`), with
``file_name`` relative to the dataset's image folder (:func:`image_root`). A box-fallback instance carries
``score`` 0, a pseudo-label instance its fill (instance area / box area), for inspection only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from a2gnn.data.labels import LabelFolder
from a2gnn.core.config import PSEUDO_LABEL_METHODS, Config
from a2gnn.data.coco import CocoImage, CocoInstance, write_coco_instances
from a2gnn.data.voc import Box
from a2gnn.core.io import DataError
from a2gnn.data.boxes import box_mask, box_owner_map

log = logging.getLogger(__name__)

OVERLAP_RULES = ("smallest", "all")
EMPTY_BOX_RULES = ("box", "drop")


@dataclasses.dataclass(frozen=True)
class InstanceConfig(Config):
    """``instances`` section: pseudo labels + boxes -> one instance mask per box (paper §5)."""

    SECTION: typing.ClassVar[str] = "instances"
    labels: str = "a2gnn"  # pseudo labels outputs/pseudo_labels_<labels>: a2gnn | rw | baseline | grabcut | boxes
    overlap: str = "smallest"  # pixel in several same-class boxes: smallest box | all (paper: not said)
    empty_box: str = "box"  # box with no (or too few) pixels of its class: box = whole box | drop (paper: not said)
    min_fill: float = 0.0  # instance area / box area below this -> empty box (0: only boxes without any pixel)

    def validate(self) -> None:
        self.check(self.overlap in OVERLAP_RULES, "overlap", f"one of {OVERLAP_RULES}")
        self.check(self.empty_box in EMPTY_BOX_RULES, "empty_box", f"one of {EMPTY_BOX_RULES}")
        self.check(0.0 <= self.min_fill <= 1.0, "min_fill", "in [0, 1]")
        self.check(self.labels in PSEUDO_LABEL_METHODS, "labels", f"one of {PSEUDO_LABEL_METHODS}")


def box_instance_masks(label: np.ndarray, boxes: Sequence[Box], overlap: str = "smallest") -> np.ndarray:
    """:math:`I_k` for every box: pixels of ``B_k`` labelled ``L_{B_k}``, overlap rule as in the module doc.

    Shapes: label (H, W) uint8, boxes K -> (K, H, W) bool.
    """
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {overlap!r}; one of {OVERLAP_RULES}")
    shape = label.shape
    masks = np.zeros((len(boxes), *shape), dtype=bool)
    for c in sorted({b.label for b in boxes}):
        same = [k for k, b in enumerate(boxes) if b.label == c]
        of_class = label == c
        if overlap == "smallest":
            owner = box_owner_map([boxes[k] for k in same], shape)  # local index of the smallest box, -1 outside
            for j, k in enumerate(same):
                masks[k] = of_class & (owner == j)
        else:
            for k in same:
                masks[k] = of_class & box_mask(boxes[k], shape)
    return masks


@dataclasses.dataclass(frozen=True)
class PseudoInstance:
    """One box's instance: index ``k`` of the box in the annotation, its mask, and whether it is the fallback."""

    box_index: int
    mask: np.ndarray
    fill: float  # pseudo-label pixels of the instance / box area (before any fallback)
    fallback: bool


def pseudo_instances(label: np.ndarray, boxes: Sequence[Box], cfg: InstanceConfig) -> list[PseudoInstance]:
    """The instances of one image in box order; empty boxes follow ``cfg.empty_box`` (whole box or dropped).

    Shapes: label (H, W) uint8 -> masks (H, W) bool.
    """
    masks = box_instance_masks(label, boxes, cfg.overlap)
    out = []
    for k, box in enumerate(boxes):
        n = int(masks[k].sum())
        fill = n / box.area
        if n == 0 or fill < cfg.min_fill:
            if cfg.empty_box == "drop":
                continue
            out.append(PseudoInstance(k, box_mask(box, label.shape), fill, True))
        else:
            out.append(PseudoInstance(k, masks[k], fill, False))
    return out


def image_root(dataset) -> Path:
    """Folder that COCO ``file_name`` values are relative to: ``image_dir`` (COCO reader) or ``root/JPEGImages``."""
    directory = getattr(dataset, "image_dir", None)
    return Path(directory) if directory is not None else Path(dataset.root) / "JPEGImages"


def coco_images(dataset) -> list[CocoImage]:
    """The split's images as COCO records: id = position in ``dataset.ids`` + 1, file name under :func:`image_root`."""
    root = image_root(dataset)
    images = []
    for n, image_id in enumerate(dataset.ids, start=1):
        ann = dataset.annotation(image_id)
        rel = Path(dataset.image_path(image_id)).relative_to(root).as_posix()
        images.append(CocoImage(n, rel, ann.width, ann.height))
    return images


@dataclasses.dataclass(frozen=True)
class InstanceStats:
    """Counts over a split: boxes, instances written, empty boxes (whole-box fallbacks or dropped), mean fill."""

    images: int
    boxes: int
    instances: int
    empty_boxes: int
    mean_fill: float


def write_pseudo_instances(
    dataset,
    label_dir: os.PathLike | str,
    cfg: InstanceConfig,
    out_json: os.PathLike | str,
    progress: Callable[[Iterable, str, int], Iterable] | None = None,
) -> InstanceStats:
    """Pseudo labels ``label_dir/<id>.png`` + the split's boxes -> COCO instances JSON ``out_json`` (atomic).

    Every label map is checked against its annotation's size; a missing or mis-sized map raises DataError
    naming it before anything is written.
    """
    folder = LabelFolder(label_dir, "pseudo label")
    if not folder.root.is_dir():
        raise DataError(folder.root, "pseudo-label folder is missing")
    images = coco_images(dataset)
    instances, n_boxes, n_empty, fills = [], 0, 0, []
    items = zip(images, dataset.ids)
    if progress is not None:
        items = progress(items, "instances", len(images))
    for img, image_id in items:
        boxes = dataset.annotation(image_id).boxes
        label = folder.read(image_id, (img.height, img.width))
        found = pseudo_instances(label, boxes, cfg)
        n_boxes += len(boxes)
        n_empty += len(boxes) - sum(not p.fallback for p in found)
        fills += [p.fill for p in found if not p.fallback]
        for p in found:
            score = 0.0 if p.fallback else p.fill
            instances.append(CocoInstance(img.id, boxes[p.box_index].label, p.mask, score=score))
    write_coco_instances(out_json, images, dataset.class_names, instances)
    stats = InstanceStats(len(images), n_boxes, len(instances), n_empty, float(np.mean(fills)) if fills else 0.0)
    log.info("%s", stats)
    return stats
