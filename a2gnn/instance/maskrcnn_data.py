"""Datasets for detectron2's Mask R-CNN: ground-truth instances as COCO JSON, registration in detectron2's
catalogue, the records, and the deterministic sample order of every iteration (independent of the process count)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from a2gnn.data.coco import CocoInstance, voc_to_coco, write_coco_instances
from a2gnn.core.io import DataError


# ------------------------------------------------------------------------------------------------------------
# Datasets: COCO JSON -> registered detectron2 dataset
# ------------------------------------------------------------------------------------------------------------
def write_gt_instances(dataset, path: os.PathLike | str) -> None:
    """Ground-truth instance masks of a split as our COCO JSON (image id = position + 1, category id = label).

    VOC layout: :func:`a2gnn.data.coco.voc_to_coco` (difficult objects -> ``iscrowd``, ignored by COCO
    evaluation). COCO reader: its (non-crowd) instance masks. Same image ids and file names as
    :func:`a2gnn.pseudo_labels.instances.coco_images`.
    """
    if not hasattr(dataset, "instance_masks"):
        voc_to_coco(dataset, path)
        return
    from a2gnn.pseudo_labels.instances import coco_images

    images, instances = coco_images(dataset), []
    for img, image_id in zip(images, dataset.ids):
        boxes = dataset.annotation(image_id).boxes
        for box, mask in zip(boxes, dataset.instance_masks(image_id)):
            if mask.any():
                instances.append(CocoInstance(img.id, box.label, mask))
    write_coco_instances(path, images, dataset.class_names, instances)


def register_instances(name: str, json_path: os.PathLike | str, image_root: os.PathLike | str) -> list[str]:
    """Register our COCO instances JSON as detectron2 dataset ``name`` (re-registering replaces it).

    Returns the foreground class names in contiguous order (detectron2 class ``i`` = our label ``i + 1``).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    json_path, image_root = Path(json_path), Path(image_root)
    if not json_path.is_file():
        raise DataError(json_path, "instances JSON is missing")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_coco_json(str(json_path), str(image_root), name))
    cats = sorted(json.loads(json_path.read_text())["categories"], key=lambda c: c["id"])
    classes = [str(c["name"]) for c in cats]
    MetadataCatalog.get(name).set(json_file=str(json_path), image_root=str(image_root), evaluator_type="coco")
    return classes


def dataset_records(name: str, keep_empty: bool = False) -> list[dict[str, Any]]:
    """``DatasetCatalog.get(name)`` in image-id order; images without a (non-crowd) object dropped unless
    ``keep_empty`` (detectron2's FILTER_EMPTY_ANNOTATIONS)."""
    from detectron2.data import DatasetCatalog

    records = sorted(DatasetCatalog.get(name), key=lambda r: r["image_id"])
    if not keep_empty:
        records = [r for r in records if any(not a.get("iscrowd", 0) for a in r.get("annotations", []))]
    if not records:
        raise DataError(name, "no image with an object")
    return records


# ------------------------------------------------------------------------------------------------------------
# Deterministic sample stream
# ------------------------------------------------------------------------------------------------------------
def derived_seed(*parts: int) -> int:
    """A 32-bit seed from integers (numpy SeedSequence): independent streams for (seed, epoch), (seed, t), ..."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.random.default_rng((seed, epoch)).permutation(n))


def iteration_samples(seed: int, iteration: int, batch_size: int, n: int) -> list[tuple[int, int]]:
    """(stream position, record index) of the images of ``iteration``: positions ``t B .. t B + B - 1`` of the
    concatenated epoch permutations (epoch ``e`` permuted by ``default_rng((seed, e))``)."""
    out = []
    for pos in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, j = divmod(pos, n)
        out.append((pos, _epoch_order(seed, epoch, n)[j]))
    return out
