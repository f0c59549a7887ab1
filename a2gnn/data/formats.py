"""Which reader opens a dataset: the ``dataset`` params section (:class:`DatasetConfig`) and the
:data:`DATASET_FORMATS` registry it names (``voc``: VOC 2012 + SBD layout; ``coco``: COCO instances JSON).

Stages open a split through :func:`open_dataset`; every reader offers the same interface (``ids``,
``class_names``, ``num_classes``, ``image(id)``, ``annotation(id)``, ``semantic_gt(id)``, ``image_path(id)``).
A new format is one reader class, one ``@DATASET_FORMATS.register`` factory and one test.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

from a2gnn.core.config import Config
from a2gnn.core.registry import Registry
from a2gnn.data.coco import COCODataset
from a2gnn.data.resize import ResizedDataset
from a2gnn.data.voc import VOCDataset

DATASET_FORMATS: Registry = Registry("dataset format")
"""``dataset.format`` -> reader factory ``(root, split, cfg: DatasetConfig) -> dataset``."""


@dataclasses.dataclass(frozen=True)
class DatasetConfig(Config):
    """``dataset`` section: where the data lives, in which format, and which splits to use.

    ``voc``: ``root`` is a VOC-layout folder (JPEGImages/, Annotations/, SegmentationClass/, ImageSets/),
    a split is ``ImageSets/Segmentation/<split>.txt``. ``coco``: ``root`` is a COCO-layout folder, a split
    ``S`` is ``annotations/instances_S.json`` with its images in ``S/`` (COCO's own layout); class names
    come from the JSON's categories.
    """

    SECTION: typing.ClassVar[str] = "dataset"
    format: str = "voc"  # "voc" | "coco"
    root: str = "data"  # dataset root (see the class docstring)
    train_split: str = "train"  # VOC+SBD: train_aug; COCO: train2017
    val_split: str = "val"  # COCO: val2017
    segmentation_dir: str = "SegmentationClass"  # voc only; VOC+SBD: SegmentationClassAug
    use_difficult: bool = True  # voc only: keep boxes flagged difficult in the XML
    skip_empty: bool = True  # coco only: leave images without (non-crowd) boxes out (false: error on them)
    # large images: every stage sees images whose long side exceeds this shrunk to it (0 = never); pseudo labels
    # go back to the original resolution (a2gnn.data.resize)
    max_side: int = 0

    def validate(self) -> None:
        self.check(self.format in DATASET_FORMATS, "format", f"one of {DATASET_FORMATS.names()}")
        self.check(self.max_side >= 0, "max_side", ">= 0 (0 = keep every image's size)")


@DATASET_FORMATS.register("voc")
def _open_voc(root: Path, split: str, cfg: DatasetConfig) -> VOCDataset:
    return VOCDataset(root, split, cfg.segmentation_dir, cfg.use_difficult)


@DATASET_FORMATS.register("coco")
def _open_coco(root: Path, split: str, cfg: DatasetConfig) -> COCODataset:
    return COCODataset(root / "annotations" / f"instances_{split}.json", root / split, skip_empty=cfg.skip_empty)


def open_dataset(cfg: DatasetConfig, split: str, root: os.PathLike | str | None = None):
    """The ``split`` of the dataset described by ``cfg`` (``root`` overrides ``cfg.root``, as stages pass it);
    with ``cfg.max_side`` images longer than that are presented shrunk (:class:`ResizedDataset`)."""
    reader = DATASET_FORMATS[cfg.format](Path(cfg.root if root is None else root), split, cfg)
    return ResizedDataset(reader, cfg.max_side) if cfg.max_side else reader
