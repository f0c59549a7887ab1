#!/usr/bin/env python
"""Convert polygon annotations (VIA 1.x/2.x JSON or a labelme folder) into a COCO instances JSON.

Usage::

    python scripts/via_to_coco.py via  data/balloon/train/via_region_data.json out/train.json --category balloon
    python scripts/via_to_coco.py via  regions.json out.json --attribute type      # classes from a region attribute
    python scripts/via_to_coco.py labelme my_labelme_folder/ out.json              # classes from each shape's label

Input formats:

* **VIA** (VGG Image Annotator): a JSON object ``{key: {"filename", "regions", ...}}`` (VIA 1.x) or a
  VIA 2.x project with that object under ``_via_img_metadata``. ``regions`` is a dict (VIA 1.x,
  ordered by its numeric keys) or a list; each region has ``shape_attributes`` (``polygon`` /
  ``polyline`` with ``all_points_x`` / ``all_points_y``, or ``rect`` with ``x, y, width, height``)
  and ``region_attributes``. Images lie next to the JSON unless ``--image-dir`` says otherwise;
  their size is read from the file header (VIA 1.x does not store it).
* **labelme**: a folder of ``*.json`` files, each with ``imagePath``, ``imageWidth``,
  ``imageHeight`` and ``shapes`` (``polygon`` or ``rectangle``, ``points`` ``[[x, y], ...]``,
  ``label``). Images are found at ``imagePath`` relative to the JSON file (or ``--image-dir``).

Classes: ``--category NAME`` puts every region in the one category ``NAME``; ``--attribute KEY``
takes the category from ``region_attributes[KEY]`` (VIA); for labelme the shape's ``label`` is the
category unless ``--category`` is given. Categories get ids 1.. in sorted name order
(``background`` is reserved). A region without the attribute is an error (``--skip-unlabelled``
drops it instead).

Output (the conventions of :mod:`a2gnn.data.coco`): images get ids 1.. in sorted ``file_name``
order with ``file_name`` relative to the image folder; each region becomes one annotation (ids
1.. in image order, then region order) whose ``segmentation`` keeps the polygon as one ring
``[[x1, y1, x2, y2, ...]]`` (a rectangle becomes its four corners); ``bbox`` and ``area`` come from the
polygon rasterised by pycocotools (the tight box of its pixels, 0-based and half-open, and the
pixel count), so :class:`a2gnn.data.coco.COCODataset` maps each box back exactly onto the
mask's pixel box. Polygons with fewer than 3 points raise an error; polygons that cover no pixel
are skipped with a warning. Bad input raises :class:`a2gnn.core.io.DataError` naming the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from a2gnn.core.io import DataError, atomic_file

Region = tuple[list[float], str | None, str]  # (flat polygon [x1, y1, ...], category or None, where)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; DataError naming a missing or unreadable file."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # PIL raises several types for corrupt files
        raise DataError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(path, "annotation file is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc


def _via_polygon(path: Path, shape: Mapping[str, Any], where: str) -> list[float]:
    kind = shape.get("name")
    if kind in ("polygon", "polyline"):
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise DataError(path, f"{where}: all_points_x / all_points_y must be lists of equal length")
        return [float(v) for xy in zip(xs, ys) for v in xy]
    if kind == "rect":
        try:
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(path, f"{where}: rect needs numeric x, y, width, height") from exc
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    raise DataError(path, f"{where}: unsupported shape {kind!r} (polygon, polyline or rect)")


def read_via(
    path: Path, attribute: str | None, category: str | None
) -> list[tuple[str, list[Region]]]:
    """VIA JSON -> [(file name, regions)] in the file's order."""
    data = _load_json(path)
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise DataError(path, "expected a VIA JSON object of images")
    records = []
    for key, entry in data.items():
        if not isinstance(entry, Mapping) or "filename" not in entry:
            raise DataError(path, f"image entry {key!r} has no filename")
        regions = entry.get("regions") or {}
        if isinstance(regions, Mapping):
            regions = [regions[k] for k in sorted(regions, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))]
        out = []
        for k, region in enumerate(regions):
            where = f"{entry['filename']} region {k}"
            polygon = _via_polygon(path, region.get("shape_attributes") or {}, where)
            attrs = region.get("region_attributes") or {}
            if category is not None:
                name = category
            else:
                value = attrs.get(attribute)
                name = str(value).strip() if isinstance(value, (str, int)) and str(value).strip() else None
            out.append((polygon, name, where))
        records.append((str(entry["filename"]), out))
    return records


def read_labelme(folder: Path, category: str | None) -> list[tuple[str, list[Region], Path, tuple[int, int]]]:
    """labelme folder -> [(image path relative to the folder, regions, json path, (width, height))]."""
    if not folder.is_dir():
        raise DataError(folder, "labelme folder is missing")
    records = []
    for path in sorted(folder.glob("*.json")):
        data = _load_json(path)
        if not isinstance(data, Mapping) or "imagePath" not in data or "shapes" not in data:
            raise DataError(path, "not a labelme file (needs imagePath and shapes)")
        out = []
        for k, shape in enumerate(data["shapes"]):
            where = f"shape {k}"
            points = shape.get("points")
            if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
                raise DataError(path, f"{where}: points must be [[x, y], ...]")
            kind = shape.get("shape_type", "polygon")
            if kind == "rectangle" and len(points) == 2:
                (x1, y1), (x2, y2) = points
                points = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
            elif kind != "polygon":
                raise DataError(path, f"{where}: unsupported shape_type {kind!r} (polygon or rectangle)")
            label = category if category is not None else (str(shape.get("label", "")).strip() or None)
            out.append(([float(v) for p in points for v in p], label, f"{path.name} {where}"))
        size = (int(data.get("imageWidth", 0)), int(data.get("imageHeight", 0)))
        records.append((str(data["imagePath"]), out, path, size))
    if not records:
        raise DataError(folder, "no labelme *.json files")
    return records


def polygon_mask(polygon: Sequence[float], width: int, height: int) -> np.ndarray:
    """(H, W) bool mask of one polygon ring ``[x1, y1, x2, y2, ...]`` as pycocotools rasterises it."""
    rles = mask_utils.frPyObjects([list(polygon)], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def build_coco(
    images: Iterable[tuple[str, tuple[int, int], list[Region]]],
    source: Path,
    skip_unlabelled: bool = False,
) -> dict[str, Any]:
    """[(file name, (width, height), regions)] -> COCO instances dict (see the module docstring)."""
    images = sorted(images, key=lambda item: item[0])
    names = sorted({name for _, _, regions in images for _, name, _ in regions if name is not None})
    if "background" in names:
        raise DataError(source, "no category may be called 'background'")
    if not names:
        raise DataError(source, "no labelled region (give --category, or --attribute naming a region attribute)")
    category_id = {name: i for i, name in enumerate(names, start=1)}
    coco_images, annotations, skipped = [], [], 0
    for image_id, (file_name, (width, height), regions) in enumerate(images, start=1):
        coco_images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for polygon, name, where in regions:
            if name is None:
                if skip_unlabelled:
                    continue
                raise DataError(source, f"{where}: no category (missing region attribute; or --skip-unlabelled)")
            if len(polygon) < 6:
                raise DataError(source, f"{where}: a polygon needs at least 3 points, got {len(polygon) // 2}")
            mask = polygon_mask(polygon, width, height)
            if not mask.any():
                skipped += 1
                print(f"warning: {source}: {where}: polygon covers no pixel, skipped", file=sys.stderr)
                continue
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            x, y = float(cols[0]), float(rows[0])
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id[name],
                "segmentation": [[round(v, 3) for v in polygon]],
                "area": float(mask.sum()),
                "bbox": [x, y, float(cols[-1] + 1) - x, float(rows[-1] + 1) - y],
                "iscrowd": 0,
            })
    return {
        "info": {"description": f"converted from {source.name} by scripts/via_to_coco.py", "version": "1.0"},
        "licenses": [],
        "images": coco_images,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in category_id.items()],
        "annotations": annotations,
    }


def convert(
    fmt: str,
    source: Path,
    out: Path,
    image_dir: Path | None = None,
    category: str | None = None,
    attribute: str | None = None,
    skip_unlabelled: bool = False,
) -> dict[str, int]:
    """Read ``source`` (``fmt`` = "via" | "labelme"), write the COCO JSON ``out`` atomically.

    Returns counts ``{"images", "annotations", "categories"}``.
    """
    if fmt == "via":
        if category is None and attribute is None:
            raise ValueError("VIA input needs --category NAME or --attribute KEY")
        root = image_dir or source.parent
        images = [
            (name, _image_size(root / name), regions) for name, regions in read_via(source, attribute, category)
        ]
    elif fmt == "labelme":
        images = []
        for image_path, regions, json_path, size in read_labelme(source, category):
            full = (image_dir / Path(image_path).name) if image_dir else (json_path.parent / image_path)
            actual = _image_size(full)
            if size != (0, 0) and size != actual:
                raise DataError(json_path, f"imageWidth x imageHeight {size} but {full.name} is {actual}")
            name = os.path.relpath(full, image_dir or source)  # file_name relative to the image folder
            images.append((name, actual, regions))
    else:
        raise ValueError(f"unknown format {fmt!r} (via or labelme)")
    data = build_coco(images, source, skip_unlabelled)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
    return {k: len(data[k]) for k in ("images", "annotations", "categories")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("format", choices=("via", "labelme"))
    parser.add_argument("source", type=Path, help="VIA JSON file or labelme folder")
    parser.add_argument("out", type=Path, help="COCO instances JSON to write")
    parser.add_argument("--image-dir", type=Path, default=None, help="image folder (default: next to the JSON)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--category", default=None, help="one category for every region")
    group.add_argument("--attribute", default=None, help="VIA region attribute that names the category")
    parser.add_argument("--skip-unlabelled", action="store_true", help="drop regions without a category")
    args = parser.parse_args(argv)
    try:
        counts = convert(
            args.format, args.source, args.out, args.image_dir, args.category, args.attribute, args.skip_unlabelled
        )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {counts['images']} images, {counts['annotations']} annotations, "
          f"{counts['categories']} categories", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
