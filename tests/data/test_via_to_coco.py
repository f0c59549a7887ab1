"""scripts/via_to_coco.py: VIA / labelme polygons -> COCO instances JSON, round-tripped through pycocotools."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from a2gnn.data.coco import COCODataset
from a2gnn.core.io import DataError

_SPEC = importlib.util.spec_from_file_location(
    "via_to_coco", Path(__file__).resolve().parents[2] / "scripts" / "via_to_coco.py"
)
via_to_coco = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(via_to_coco)

SQUARE = {"name": "polygon", "all_points_x": [2, 8, 8, 2], "all_points_y": [2, 2, 6, 6]}  # pixels x 2..7, y 2..5
TRIANGLE = {"name": "polygon", "all_points_x": [1, 9, 1], "all_points_y": [1, 1, 9]}
RECT = {"name": "rect", "x": 3, "y": 1, "width": 4, "height": 3}  # pixels x 3..6, y 1..3


def _square_mask(h, w):
    mask = np.zeros((h, w), dtype=bool)
    mask[2:6, 2:8] = True
    return mask


def make_via(tmp_path: Path, wrap_v2: bool = False) -> Path:
    """Two images (12x10 and 16x14) with regions as VIA 1.x writes them (dict keyed '0', '1', ...)."""
    for name, (w, h) in {"b.png": (12, 10), "a.jpg": (16, 14)}.items():
        Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    data = {
        "b.png123": {"filename": "b.png", "size": 123, "file_attributes": {}, "regions": {
            "0": {"shape_attributes": SQUARE, "region_attributes": {"type": "dog"}},
            "1": {"shape_attributes": RECT, "region_attributes": {"type": "cat"}},
        }},
        "a.jpg456": {"filename": "a.jpg", "size": 456, "file_attributes": {}, "regions": {
            "0": {"shape_attributes": TRIANGLE, "region_attributes": {"type": "cat"}},
        }},
    }
    if wrap_v2:  # VIA 2.x project: regions are lists, images under _via_img_metadata
        for entry in data.values():
            entry["regions"] = [entry["regions"][k] for k in sorted(entry["regions"])]
        data = {"_via_settings": {}, "_via_img_metadata": data}
    path = tmp_path / "via_region_data.json"
    path.write_text(json.dumps(data))
    return path


def test_via_attribute_classes_round_trip_through_pycocotools(tmp_path):
    src = make_via(tmp_path)
    out = tmp_path / "coco.json"
    counts = via_to_coco.convert("via", src, out, attribute="type")
    assert counts == {"images": 2, "annotations": 3, "categories": 2}
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog"]  # ids 1.. sorted by name
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["a.jpg", "b.png"]
    b_id = 2
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[b_id]))
    square, rect = anns
    assert square["category_id"] == 2 and rect["category_id"] == 1
    assert square["segmentation"] == [[2, 2, 8, 2, 8, 6, 2, 6]]  # polygon kept
    assert np.array_equal(coco.annToMask(square).astype(bool), _square_mask(10, 12))
    assert square["bbox"] == [2.0, 2.0, 6.0, 4.0] and square["area"] == 24.0
    rect_mask = coco.annToMask(rect).astype(bool)
    assert rect["bbox"] == [3.0, 1.0, 4.0, 3.0] and rect_mask.sum() == 12 and rect_mask[1:4, 3:7].all()
    # the a2gnn reader: boxes (0-based, half-open) are exactly the masks' pixel boxes
    dataset = COCODataset(out, tmp_path)
    assert dataset.class_names == ("background", "cat", "dog")
    for image_id in dataset.ids:
        for box, mask in zip(dataset.annotation(image_id).boxes, dataset.instance_masks(image_id)):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert (box.x1, box.y1, box.x2, box.y2) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def test_via2_single_category_and_identical_bytes(tmp_path):
    src = make_via(tmp_path, wrap_v2=True)
    out1, out2 = tmp_path / "one.json", tmp_path / "two.json"
    via_to_coco.convert("via", src, out1, category="balloon")
    assert via_to_coco.main(["via", str(src), str(out2), "--category", "balloon"]) == 0
    assert out1.read_bytes() == out2.read_bytes()
    coco = COCO(str(out1))
    assert [c["name"] for c in coco.dataset["categories"]] == ["balloon"]
    assert {a["category_id"] for a in coco.dataset["annotations"]} == {1}
    assert len(coco.dataset["annotations"]) == 3


def test_labelme_folder(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    shapes = [
        {"label": "dog", "points": [[2, 2], [8, 2], [8, 6], [2, 6]], "shape_type": "polygon"},
        {"label": "cat", "points": [[3, 1], [7, 4]], "shape_type": "rectangle"},
    ]
    (tmp_path / "x.json").write_text(
        json.dumps({"imagePath": "x.png", "imageWidth": 12, "imageHeight": 10, "shapes": shapes})
    )
    out = tmp_path / "coco.json"
    assert via_to_coco.convert("labelme", tmp_path, out) == {"images": 1, "annotations": 2, "categories": 2}
    coco = COCO(str(out))
    square = coco.loadAnns(coco.getAnnIds(catIds=[2]))[0]
    assert np.array_equal(coco.annToMask(square).astype(bool), _square_mask(10, 12))
    assert coco.loadAnns(coco.getAnnIds(catIds=[1]))[0]["bbox"] == [3.0, 1.0, 4.0, 3.0]


def test_bad_input_names_the_file(tmp_path):
    src = make_via(tmp_path)
    out = tmp_path / "coco.json"
    with pytest.raises(DataError, match="via_region_data.json: no labelled region"):
        via_to_coco.convert("via", src, out, attribute="colour")
    data = json.loads(src.read_text())
    data["b.png123"]["regions"]["0"]["region_attributes"] = {"colour": "red"}
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match="via_region_data.json: b.png region 0: no category"):
        via_to_coco.convert("via", src, out, attribute="type")
    (tmp_path / "a.jpg").unlink()
    with pytest.raises(DataError, match="a.jpg: image file is missing"):
        via_to_coco.convert("via", src, out, category="x")
    data["b.png123"]["regions"]["0"]["shape_attributes"] = {"name": "circle", "cx": 1, "cy": 1, "r": 2}
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match="via_region_data.json.*unsupported shape 'circle'"):
        via_to_coco.convert("via", src, out, category="x")
    assert via_to_coco.main(["via", str(src), str(out), "--category", "x"]) == 1
    assert not out.exists()  # nothing written on error


def test_skip_unlabelled_and_degenerate_polygons(tmp_path):
    src = make_via(tmp_path)
    data = json.loads(src.read_text())
    data["b.png123"]["regions"]["1"]["region_attributes"] = {}
    data["a.jpg456"]["regions"]["1"] = {  # covers no pixel: skipped with a warning
        "shape_attributes": {"name": "polygon", "all_points_x": [3, 3.2, 3.1], "all_points_y": [3, 3, 3.1]},
        "region_attributes": {"type": "cat"},
    }
    src.write_text(json.dumps(data))
    out = tmp_path / "coco.json"
    counts = via_to_coco.convert("via", src, out, attribute="type", skip_unlabelled=True)
    assert counts == {"images": 2, "annotations": 2, "categories": 2}
    line = {"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}
    data["a.jpg456"]["regions"]["1"]["shape_attributes"] = line
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match="at least 3 points"):
        via_to_coco.convert("via", src, out, attribute="type", skip_unlabelled=True)
