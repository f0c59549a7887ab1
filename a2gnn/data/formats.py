"""Dataset readers (VOC 2012 + SBD, COCO instances) and the embedded default dataset generator.

Stages open a split through :func:`open_dataset`, which picks the reader named by ``dataset.format``
from :data:`READERS`; every reader offers the same interface (``ids``, ``class_names``,
``num_classes``, ``image(id)``, ``annotation(id)``, ``semantic_gt(id)``, ``image_path(id)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from a2gnn.core.config import DatasetConfig
from a2gnn.data.coco import COCODataset, voc_to_coco, write_coco_instances
from a2gnn.data.resize import ResizedDataset
from a2gnn.data.voc import VOC_CLASSES, Annotation, Box, VOCDataset, load_class_names, parse_voc_xml


def _open_voc(root: Path, split: str, cfg: DatasetConfig) -> VOCDataset:
    return VOCDataset(root, split, cfg.segmentation_dir, cfg.use_difficult)


def _open_coco(root: Path, split: str, cfg: DatasetConfig) -> COCODataset:
    return COCODataset(root / "annotations" / f"instances_{split}.json", root / split, skip_empty=cfg.skip_empty)


#: ``dataset.format`` -> reader factory ``(root, split, cfg) -> dataset``.
READERS: dict[str, Callable[[Path, str, DatasetConfig], VOCDataset | COCODataset]] = {
    "voc": _open_voc,
    "coco": _open_coco,
}


def open_dataset(cfg: DatasetConfig, split: str, root: os.PathLike | str | None = None):
    """The ``split`` of the dataset described by ``cfg`` (``root`` overrides ``cfg.root``, as stages pass it);
    with ``cfg.max_side`` images longer than that are presented shrunk (:class:`ResizedDataset`)."""
    reader = READERS[cfg.format](Path(cfg.root if root is None else root), split, cfg)
    return ResizedDataset(reader, cfg.max_side) if cfg.max_side else reader


__all__ = [
    "READERS", "ResizedDataset", "VOC_CLASSES", "Annotation", "Box", "COCODataset", "VOCDataset", "load_class_names", "open_dataset",
    "parse_voc_xml", "voc_to_coco", "write_coco_instances",
]
