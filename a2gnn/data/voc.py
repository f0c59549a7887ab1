"""PASCAL VOC 2012 (+ SBD) reader; the embedded default dataset uses the same layout.

Layout under ``root``::

    JPEGImages/<id>.jpg              RGB images (.png accepted too)
    Annotations/<id>.xml             boxes, class names, difficult flags
    SegmentationClass[Aug]/<id>.png  palette PNG, class index per pixel, 255 = ignore
    SegmentationObject/<id>.png      palette PNG, instance index per pixel (1..K in XML order), 255 = ignore
    ImageSets/Segmentation/<split>.txt
    classes.txt                      optional: one class name per line, background first
                                     (absent -> the 21 VOC classes)

Box convention everywhere in a2gnn: 0-based, half-open pixel rectangle ``[x1, x2) x [y1, y2)``.
VOC XML stores 1-based inclusive corners, so ``x1 = xmin - 1`` and ``x2 = xmax``.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path

import numpy as np

from a2gnn.core.io import DataError, read_ids, read_image, read_label

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclasses.dataclass(frozen=True)
class Box:
    """One bounding box B_k with its class L_{B_k} (index into the class list, 1.. for foreground)."""

    x1: int
    y1: int
    x2: int
    y2: int
    label: int
    difficult: bool = False

    @property
    def area(self) -> int:
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def width(self) -> int:
        return self.x2 - self.x1


@dataclasses.dataclass(frozen=True)
class Annotation:
    """Image size and boxes of one image."""

    image_id: str
    width: int
    height: int
    boxes: tuple[Box, ...]

    @property
    def image_labels(self) -> tuple[int, ...]:
        """Image-level labels (sorted foreground class indices), derived from the boxes."""
        return tuple(sorted({b.label for b in self.boxes}))


def load_class_names(root: os.PathLike | str) -> tuple[str, ...]:
    """Class names of a dataset: ``root/classes.txt`` if present (background first), else VOC's 21."""
    path = Path(root) / "classes.txt"
    if not path.exists():
        return VOC_CLASSES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2:
        raise DataError(path, "needs background plus at least one foreground class")
    if len(set(names)) != len(names):
        raise DataError(path, "class names must be unique")
    return names


def _int_field(node: ET.Element, tag: str, path: Path) -> int:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(path, f"missing <{tag}>")
    try:
        return int(round(float(child.text)))
    except ValueError as exc:
        raise DataError(path, f"<{tag}> is not a number: {child.text!r}") from exc


def parse_voc_xml(
    path: os.PathLike | str, class_names: tuple[str, ...] = VOC_CLASSES, use_difficult: bool = True
) -> Annotation:
    """Parse one VOC annotation XML, validating every box against the image size.

    Raises DataError (naming the file) for a missing/corrupt file, an unknown class name, a box
    outside the image or of zero area, or an annotation without any object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation file is missing")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(path, f"cannot parse XML ({exc})") from exc
    size = root.find("size")
    if size is None:
        raise DataError(path, "missing <size>")
    width, height = _int_field(size, "width", path), _int_field(size, "height", path)
    if width <= 0 or height <= 0:
        raise DataError(path, f"invalid image size {width}x{height}")
    index = {name: i for i, name in enumerate(class_names)}
    boxes = []
    objects = root.findall("object")
    if not objects:
        raise DataError(path, "annotation has no <object> (empty annotation)")
    for n, obj in enumerate(objects):
        name_node = obj.find("name")
        name = (name_node.text or "").strip() if name_node is not None else ""
        if name not in index or index[name] == 0:
            raise DataError(path, f"object {n}: unknown class name {name!r}")
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(path, f"object {n}: missing <bndbox>")
        xmin, ymin = _int_field(bb, "xmin", path), _int_field(bb, "ymin", path)
        xmax, ymax = _int_field(bb, "xmax", path), _int_field(bb, "ymax", path)
        box = Box(xmin - 1, ymin - 1, xmax, ymax, index[name], _flag(obj, "difficult"))
        if box.width <= 0 or box.height <= 0:
            raise DataError(path, f"object {n} ({name}): zero-area box ({xmin},{ymin},{xmax},{ymax})")
        if box.x1 < 0 or box.y1 < 0 or box.x2 > width or box.y2 > height:
            raise DataError(
                path, f"object {n} ({name}): box ({xmin},{ymin},{xmax},{ymax}) outside the {width}x{height} image"
            )
        if use_difficult or not box.difficult:
            boxes.append(box)
    return Annotation(path.stem, width, height, tuple(boxes))


def _flag(obj: ET.Element, tag: str) -> bool:
    node = obj.find(tag)
    return node is not None and (node.text or "0").strip() not in ("", "0")


class VOCDataset:
    """Read-only access to one split of a VOC-layout dataset."""

    def __init__(
        self,
        root: os.PathLike | str,
        split: str = "train",
        segmentation_dir: str = "SegmentationClass",
        use_difficult: bool = True,
    ):
        self.root = Path(root)
        self.split = split
        self.segmentation_dir = segmentation_dir
        self.use_difficult = use_difficult
        self.class_names = load_class_names(self.root)
        self.ids = read_ids(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, image_id: str) -> Path:
        jpg = self.root / "JPEGImages" / f"{image_id}.jpg"
        if jpg.exists():
            return jpg
        png = jpg.with_suffix(".png")
        return png if png.exists() else jpg

    def image(self, image_id: str) -> np.ndarray:
        """RGB image, (H, W, 3) uint8; checked against the annotation's size."""
        img = read_image(self.image_path(image_id))
        ann = self.annotation(image_id)
        if img.shape[:2] != (ann.height, ann.width):
            raise DataError(
                self.image_path(image_id),
                f"image is {img.shape[1]}x{img.shape[0]} but its annotation says {ann.width}x{ann.height}",
            )
        return img

    def annotation(self, image_id: str) -> Annotation:
        return self._annotations[image_id] if image_id in self._annotations else self._load_annotation(image_id)

    @cached_property
    def _annotations(self) -> dict[str, Annotation]:
        return {}

    def _load_annotation(self, image_id: str) -> Annotation:
        ann = parse_voc_xml(self.root / "Annotations" / f"{image_id}.xml", self.class_names, self.use_difficult)
        self._annotations[image_id] = ann
        return ann

    def missing_ground_truth(self, kind: str = "semantic") -> str | None:
        """Why the split has no ground-truth masks of ``kind`` (semantic: ``segmentation_dir``, instance:
        SegmentationObject), or None. A folder that exists but lacks an image's map is a DataError when read."""
        folder = self.root / (self.segmentation_dir if kind == "semantic" else "SegmentationObject")
        return None if folder.is_dir() else f"{folder}: no such folder (boxes only)"

    def semantic_gt(self, image_id: str) -> np.ndarray:
        """Ground-truth class map, (H, W) uint8, 255 = ignore."""
        return read_label(self.root / self.segmentation_dir / f"{image_id}.png")

    def instance_gt(self, image_id: str) -> np.ndarray:
        """Ground-truth instance map, (H, W) uint8: 0 background, k = k-th object of the XML, 255 = ignore."""
        return read_label(self.root / "SegmentationObject" / f"{image_id}.png")

    def validate(self) -> None:
        """Parse every annotation and decode every image of the split (fails on the first bad file)."""
        for image_id in self.ids:
            self.image(image_id)
