"""COCO instances JSON: a reader with the VOC reader's interface, a writer, and VOC -> COCO conversion.

Reader conventions (:class:`COCODataset`):

* **Image ids** are the JSON ``id`` values as strings, sorted numerically when they are all integers
  (COCO's case), else as strings. ``image_dir / file_name`` is the image file.
* **Classes**: ``class_names = ("background", *category names sorted by category id)``; category
  ``c`` gets the contiguous label ``1 + rank of c``. :attr:`COCODataset.category_ids` maps back.
* **Boxes**: ``bbox = [x, y, w, h]`` in float pixels becomes the smallest half-open integer box that
  contains it: ``x1 = floor(x)``, ``y1 = floor(y)``, ``x2 = ceil(x + w)``, ``y2 = ceil(y + h)``
  (with a 1e-6 px slack against float round-off), so a mask's tight COCO box maps back exactly
  onto the mask's tight pixel box. Coordinates up to ``box_tolerance`` px outside the image are
  clipped (COCO's floats sometimes overshoot); a box further outside, or with ``w <= 0`` or
  ``h <= 0``, raises DataError.
* **Crowd regions** (``iscrowd = 1``) are not objects: they give no box and no instance mask, and
  :meth:`COCODataset.semantic_gt` marks them 255 (ignore) where no object covers them. An image
  whose annotations are all crowd counts as an image without annotations.
* **Order**: boxes and instance masks follow the annotation ``id``, so index ``k`` of
  :meth:`COCODataset.annotation` and of :meth:`COCODataset.instance_masks` is the same object.
* **Masks** are decoded with pycocotools from polygons (a list of ``[x1, y1, x2, y2, ...]`` rings,
  merged), uncompressed RLE (``counts`` a list) or compressed RLE (``counts`` a string).

Bad input raises :class:`a2gnn.core.io.DataError` naming the JSON file (and the annotation/image id) or
the image file: unknown category id, box outside the image or of zero area, an image without
annotations (unless ``skip_empty``), a missing/corrupt image or one whose size disagrees with the JSON.

The writer (:func:`write_coco_instances`) stores masks as compressed RLE; it hands pseudo instance
masks to detectron2 and, through :func:`voc_to_coco`, VOC-layout instance GT to COCO evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from a2gnn.data.voc import Annotation, Box, VOCDataset, parse_voc_xml
from a2gnn.core.io import IGNORE_INDEX, DataError, atomic_file, read_image, read_label

_FLOAT_SLACK = 1e-6
"""Float round-off allowance (px) in floor/ceil of box corners: ``ceil(10 + 1e-12)`` must stay 10."""

PRODUCER = "written by a2gnn.datasets.coco"
"""``info.description`` of the COCO JSON files we write: the producer tag as first released (the module has since
moved to :mod:`a2gnn.data.coco`; the tag is kept so the written files stay byte-identical)."""


class COCODataset:
    """Read-only access to a COCO instances JSON and its image folder (VOCDataset-like interface)."""

    def __init__(
        self,
        annotation_json: os.PathLike | str,
        image_dir: os.PathLike | str,
        skip_empty: bool = False,
        box_tolerance: float = 1.0,
    ):
        """``skip_empty``: leave images without (non-crowd) annotations out of ``ids`` instead of
        failing on them; ``box_tolerance``: px a box may overshoot the image before it is an error."""
        self.json_path = Path(annotation_json)
        self.image_dir = Path(image_dir)
        self.box_tolerance = box_tolerance
        data = _load_json(self.json_path)
        self._images = _index_images(self.json_path, data["images"])
        categories = _sorted_categories(self.json_path, data["categories"])
        self.category_ids: tuple[int, ...] = tuple(int(c["id"]) for c in categories)
        self.class_names: tuple[str, ...] = ("background", *(str(c["name"]) for c in categories))
        if len(self.class_names) > IGNORE_INDEX:
            raise DataError(self.json_path, f"{len(self.class_names) - 1} categories do not fit uint8 label maps")
        self._label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self._anns: dict[str, list[dict]] = {key: [] for key in self._images}
        for ann in data["annotations"]:
            if not isinstance(ann, Mapping) or "image_id" not in ann or "id" not in ann:
                raise DataError(self.json_path, f"annotation without id/image_id: {str(ann)[:80]}")
            key = str(ann["image_id"])
            if key not in self._anns:
                raise DataError(self.json_path, f"annotation {ann['id']}: unknown image_id {ann['image_id']!r}")
            self._anns[key].append(ann)
        for anns in self._anns.values():
            anns.sort(key=lambda a: _sort_key(a["id"]))
        keys = sorted(self._images, key=lambda k: _sort_key(self._images[k]["id"]))
        if skip_empty:
            keys = [k for k in keys if any(not a.get("iscrowd", 0) for a in self._anns[k])]
        if not keys:
            raise DataError(self.json_path, "no images")
        self.ids: list[str] = keys

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def _record(self, image_id: str) -> Mapping[str, Any]:
        try:
            return self._images[str(image_id)]
        except KeyError:
            raise DataError(self.json_path, f"no image with id {image_id!r}") from None

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / str(self._record(image_id)["file_name"])

    def image(self, image_id: str) -> np.ndarray:
        """RGB image (H, W, 3) uint8, checked against the JSON's width and height."""
        rec = self._record(image_id)
        path = self.image_path(image_id)
        img = read_image(path)
        if img.shape[:2] != (rec["height"], rec["width"]):
            raise DataError(
                path,
                f"image is {img.shape[1]}x{img.shape[0]} but {self.json_path.name} says {rec['width']}x{rec['height']}",
            )
        return img

    def _objects(self, image_id: str) -> list[Mapping[str, Any]]:
        """Non-crowd annotations of an image in annotation-id order; none -> DataError."""
        self._record(image_id)
        objects = [a for a in self._anns[str(image_id)] if not a.get("iscrowd", 0)]
        if not objects:
            raise DataError(self.json_path, f"image {image_id}: no (non-crowd) annotations")
        return objects

    def annotation(self, image_id: str) -> Annotation:
        """Image size and the boxes of its objects (crowd regions excluded), in annotation-id order."""
        rec = self._record(image_id)
        boxes = tuple(self._box(ann, rec) for ann in self._objects(image_id))
        return Annotation(str(image_id), int(rec["width"]), int(rec["height"]), boxes)

    def _box(self, ann: Mapping[str, Any], rec: Mapping[str, Any]) -> Box:
        where = f"annotation {ann['id']} (image {rec['id']})"
        cid = ann.get("category_id")
        if cid not in self._label_of:
            raise DataError(self.json_path, f"{where}: unknown category id {cid!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DataError(self.json_path, f"{where}: bbox must be [x, y, w, h] numbers, got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        width, height = rec["width"], rec["height"]
        if w <= 0 or h <= 0:
            raise DataError(self.json_path, f"{where}: zero-area box {list(bbox)}")
        tol = self.box_tolerance
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise DataError(self.json_path, f"{where}: box {list(bbox)} outside the {width}x{height} image")
        x1 = max(0, math.floor(x + _FLOAT_SLACK))
        y1 = max(0, math.floor(y + _FLOAT_SLACK))
        x2 = min(width, math.ceil(x + w - _FLOAT_SLACK))
        y2 = min(height, math.ceil(y + h - _FLOAT_SLACK))
        if x2 <= x1 or y2 <= y1:
            raise DataError(self.json_path, f"{where}: box {list(bbox)} covers no pixel of the image")
        return Box(x1, y1, x2, y2, self._label_of[cid])

    def missing_ground_truth(self, kind: str = "semantic") -> str | None:
        """Why the split has no ground-truth masks (``kind``: semantic or instance, the same for COCO), or None.

        Boxes alone are a complete input for the method: a JSON whose objects carry no ``segmentation`` runs every
        stage that does not evaluate, and the evaluations report their figures as not available."""
        if not hasattr(self, "_missing"):
            objects = [a for key in self.ids for a in self._anns[key] if not a.get("iscrowd", 0)]
            bare = sum(1 for a in objects if not a.get("segmentation"))
            self._missing = (f"{self.json_path}: {bare} of {len(objects)} objects have no segmentation (boxes only)"
                             if bare else None)
        return self._missing

    def _require_masks(self) -> None:
        reason = self.missing_ground_truth()
        if reason is not None:
            raise DataError(self.json_path, f"no ground-truth masks: {reason.split(': ', 1)[1]}")

    def instance_masks(self, image_id: str) -> np.ndarray:
        """(K, H, W) bool masks of the K objects, in the order of :meth:`annotation`'s boxes."""
        self._require_masks()
        rec = self._record(image_id)
        objects = self._objects(image_id)
        masks = [self._decode(ann, rec) for ann in objects]
        return np.stack(masks) if masks else np.zeros((0, rec["height"], rec["width"]), dtype=bool)

    def _decode(self, ann: Mapping[str, Any], rec: Mapping[str, Any]) -> np.ndarray:
        height, width = int(rec["height"]), int(rec["width"])
        where = f"annotation {ann['id']} (image {rec['id']})"
        seg = ann.get("segmentation")
        try:
            if isinstance(seg, list):
                if not seg or not all(
                    isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p)
                    for p in seg
                ):
                    raise DataError(self.json_path, f"{where}: polygons must be lists of >= 3 (x, y) points")
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
            elif isinstance(seg, Mapping) and "counts" in seg and "size" in seg:
                if [int(s) for s in seg["size"]] != [height, width]:
                    raise DataError(self.json_path, f"{where}: RLE size {seg['size']} != image {height}x{width}")
                counts = seg["counts"]
                if isinstance(counts, list):
                    rle = mask_utils.frPyObjects(dict(seg), height, width)
                else:
                    rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
            else:
                raise DataError(self.json_path, f"{where}: missing or unknown segmentation {str(seg)[:60]!r}")
            return mask_utils.decode(rle).astype(bool)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(self.json_path, f"{where}: cannot decode segmentation ({exc})") from exc

    def semantic_gt(self, image_id: str) -> np.ndarray:
        """Class map (H, W) uint8: 0 background, 255 on crowd regions not covered by an object.

        Overlapping objects (rare in COCO) are resolved in favour of the smaller one: masks are
        painted in order of decreasing area (ties: annotation order).
        """
        self._require_masks()
        rec = self._record(image_id)
        out = np.zeros((rec["height"], rec["width"]), dtype=np.uint8)
        for ann in self._anns[str(image_id)]:
            if ann.get("iscrowd", 0):
                out[self._decode(ann, rec)] = IGNORE_INDEX
        boxes = self.annotation(image_id).boxes
        masks = self.instance_masks(image_id)
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        for k in sorted(range(len(masks)), key=lambda k: (-areas[k], k)):
            out[masks[k]] = boxes[k].label
        return out

    def validate(self) -> None:
        """Decode every image and every annotation (masks when there are any) of ``ids`` (fails on the first bad one)."""
        masks = self.missing_ground_truth() is None
        for image_id in self.ids:
            self.image(image_id)
            self.annotation(image_id)
            if masks:
                self.instance_masks(image_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sort_key(value: Any) -> tuple:
    return (0, int(value), "") if isinstance(value, int) and not isinstance(value, bool) else (1, 0, str(value))


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(path, "annotation file is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot parse JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing list {key!r}")
    return data


def _index_images(path: Path, images: list) -> dict[str, Mapping[str, Any]]:
    index: dict[str, Mapping[str, Any]] = {}
    for rec in images:
        if not isinstance(rec, Mapping) or not all(k in rec for k in ("id", "file_name", "width", "height")):
            raise DataError(path, f"image record needs id, file_name, width, height: {str(rec)[:80]}")
        if not all(isinstance(rec[k], int) and rec[k] > 0 for k in ("width", "height")):
            raise DataError(path, f"image {rec['id']}: invalid size {rec['width']}x{rec['height']}")
        key = str(rec["id"])
        if key in index:
            raise DataError(path, f"duplicate image id {rec['id']!r}")
        index[key] = rec
    return index


def _sorted_categories(path: Path, categories: list) -> list[Mapping[str, Any]]:
    if not categories:
        raise DataError(path, "no categories")
    for cat in categories:
        if not isinstance(cat, Mapping) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise DataError(path, f"category needs an integer id and a name: {str(cat)[:80]}")
    ids = [c["id"] for c in categories]
    names = [str(c["name"]) for c in categories]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names) or "background" in names:
        raise DataError(path, "category ids and names must be unique (and no category may be called background)")
    return sorted(categories, key=lambda c: c["id"])


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CocoImage:
    """One ``images`` record: integer id, file name relative to the image folder, size."""

    id: int
    file_name: str
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class CocoInstance:
    """One object: its image, its a2gnn class index (1.., written as category_id), its (H, W) bool mask.

    ``score`` (a detector's or pseudo label's confidence) is written when given; ``iscrowd`` marks an
    ignore region (VOC "difficult" objects in :func:`voc_to_coco`).
    """

    image_id: int
    label: int
    mask: np.ndarray
    score: float | None = None
    iscrowd: bool = False


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def write_coco_instances(
    path: os.PathLike | str,
    images: Sequence[CocoImage],
    categories: Sequence[str],
    instances: Iterable[CocoInstance],
) -> None:
    """Write a COCO instances JSON (atomically) with RLE masks.

    ``categories`` is an a2gnn class list, background first; class ``i >= 1`` becomes category id
    ``i``, so labels round-trip through :class:`COCODataset`. Annotation ids count from 1 in the
    order of ``instances``; ``bbox`` is the mask's tight box and ``area`` its pixel count.
    Raises ValueError for an unknown image id or label, a mask of the wrong size, or an empty mask
    (callers must drop those: an empty object has no box).
    """
    if len(categories) < 2 or categories[0] != "background":
        raise ValueError("categories must list background first and at least one foreground class")
    by_id: dict[int, CocoImage] = {}
    for img in images:
        if img.id in by_id:
            raise ValueError(f"duplicate image id {img.id}")
        by_id[img.id] = img
    anns = []
    for inst in instances:
        img = by_id.get(inst.image_id)
        if img is None:
            raise ValueError(f"instance of unknown image id {inst.image_id}")
        if not 1 <= inst.label < len(categories):
            raise ValueError(f"image {inst.image_id}: label {inst.label} outside 1..{len(categories) - 1}")
        if inst.mask.shape != (img.height, img.width):
            raise ValueError(f"image {inst.image_id}: mask {inst.mask.shape} != image {(img.height, img.width)}")
        if not inst.mask.any():
            raise ValueError(f"image {inst.image_id}: empty mask")
        rows = np.flatnonzero(inst.mask.any(axis=1))
        cols = np.flatnonzero(inst.mask.any(axis=0))
        x, y = float(cols[0]), float(rows[0])
        w, h = float(cols[-1] + 1) - x, float(rows[-1] + 1) - y
        rle = encode_mask(inst.mask)
        ann = {
            "id": len(anns) + 1,
            "image_id": img.id,
            "category_id": inst.label,
            "segmentation": rle,
            "area": float(inst.mask.sum()),
            "bbox": [x, y, w, h],
            "iscrowd": int(inst.iscrowd),
        }
        if inst.score is not None:
            ann["score"] = float(inst.score)
        anns.append(ann)
    data = {
        "info": {"description": PRODUCER, "version": "1.0"},
        "licenses": [],
        "images": [dataclasses.asdict(by_id[k]) for k in sorted(by_id)],
        "categories": [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(categories) if i],
        "annotations": anns,
    }
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def voc_to_coco(dataset: VOCDataset, path: os.PathLike | str) -> dict[str, int]:
    """Convert a VOC-layout split's instance GT (SegmentationObject + XML) into a COCO JSON.

    Image ``i`` of ``dataset.ids`` gets COCO id ``i + 1`` and ``file_name`` = its file name under
    ``JPEGImages``; object ``k`` of the XML (all objects, ``use_difficult`` notwithstanding, since
    the instance PNG numbers them all) becomes the mask ``instance_png == k`` (the 255 band is
    left out of every mask), with ``iscrowd = difficult`` so COCO evaluation ignores difficult
    objects as VOC's does. Objects with no pixel in the instance PNG are skipped.
    Returns ``{voc id: coco id}``.
    """
    images, instances, mapping = [], [], {}
    for n, image_id in enumerate(dataset.ids, start=1):
        xml = dataset.root / "Annotations" / f"{image_id}.xml"
        ann = parse_voc_xml(xml, dataset.class_names, use_difficult=True)
        png = dataset.root / "SegmentationObject" / f"{image_id}.png"
        inst = read_label(png)
        if inst.shape != (ann.height, ann.width):
            raise DataError(
                png, f"instance map is {inst.shape[1]}x{inst.shape[0]}, {xml.name} says {ann.width}x{ann.height}"
            )
        values = np.unique(inst)
        extra = values[(values > len(ann.boxes)) & (values != IGNORE_INDEX)]
        if extra.size:
            raise DataError(png, f"instance values {extra.tolist()} but {xml.name} has {len(ann.boxes)} objects")
        images.append(CocoImage(n, dataset.image_path(image_id).name, ann.width, ann.height))
        mapping[image_id] = n
        for k, box in enumerate(ann.boxes, start=1):
            mask = inst == k
            if mask.any():
                instances.append(CocoInstance(n, box.label, mask, iscrowd=box.difficult))
    write_coco_instances(path, images, dataset.class_names, instances)
    return mapping
