"""Tests of the COCO instances reader/writer (a2gnn.data.coco)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from a2gnn.data.coco import COCODataset, CocoImage, CocoInstance, voc_to_coco, write_coco_instances
from a2gnn.data.voc import Box, VOCDataset
from a2gnn.core.io import DataError

W, H = 10, 8


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """Reference RLE encoder: column-major runs, starting with a (possibly empty) run of zeros."""
    flat = mask.flatten(order="F").astype(int)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def _fixture(tmp_path: Path, **edit) -> tuple[Path, Path, dict]:
    """Images 10 and 2 (ids chosen to test numeric sorting), categories 7 'dog' and 3 'cat'.

    Image 10: a polygon cat (pixels [2,6) x [1,5)), an uncompressed-RLE dog overlapping it, a crowd region.
    Image 2: one compressed-RLE dog.
    """
    image_dir = tmp_path / "images"
    image_dir.mkdir(exist_ok=True)
    for name in ("ten.png", "two.jpg"):
        Image.fromarray(np.full((H, W, 3), 100, dtype=np.uint8)).save(image_dir / name)
    dog = np.zeros((H, W), dtype=bool)
    dog[3:7, 4:9] = True
    crowd = np.zeros((H, W), dtype=bool)
    crowd[6:8, 0:3] = True
    crowd[4, 4] = True  # under the dog: the object wins over the crowd
    small = np.zeros((H, W), dtype=bool)
    small[0:2, 7:10] = True
    compressed = mask_utils.encode(np.asfortranarray(small.astype(np.uint8)))
    data = {
        "images": [
            {"id": 10, "file_name": "ten.png", "width": W, "height": H},
            {"id": 2, "file_name": "two.jpg", "width": W, "height": H},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            # listed out of id order on purpose: the reader orders objects by annotation id
            {"id": 5, "image_id": 10, "category_id": 7, "bbox": [4.0, 3.0, 5.0, 4.0], "iscrowd": 0,
             "segmentation": _uncompressed_rle(dog)},
            {"id": 4, "image_id": 10, "category_id": 3, "bbox": [1.5, 0.5, 2.75, 4.25], "iscrowd": 0,
             "segmentation": [[2, 1, 6, 1, 6, 5, 2, 5]]},
            {"id": 6, "image_id": 10, "category_id": 3, "bbox": [0, 4, 5, 4], "iscrowd": 1,
             "segmentation": _uncompressed_rle(crowd)},
            {"id": 1, "image_id": 2, "category_id": 7, "bbox": [7, 0, 3, 2], "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": compressed["counts"].decode()}},
        ],
    }
    for key, fn in edit.items():
        fn(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, image_dir, {"dog": dog, "crowd": crowd, "small": small}


def test_ids_classes_and_box_rounding(tmp_path):
    path, image_dir, _ = _fixture(tmp_path)
    ds = COCODataset(path, image_dir)
    assert ds.ids == ["2", "10"] and len(ds) == 2
    assert ds.class_names == ("background", "cat", "dog") and ds.category_ids == (3, 7)
    ann = ds.annotation("10")
    assert (ann.width, ann.height) == (W, H)
    # [1.5, 0.5, 2.75, 4.25] -> floor(1.5)=1, floor(0.5)=0, ceil(4.25)=5, ceil(4.75)=5; crowd excluded; id order
    assert ann.boxes == (Box(1, 0, 5, 5, 1), Box(4, 3, 9, 7, 2))
    assert ds.annotation("2").boxes == (Box(7, 0, 10, 2, 2),)
    assert ds.image("10").shape == (H, W, 3)
    ds.validate()


def test_polygon_and_rle_masks_and_semantic_gt(tmp_path):
    path, image_dir, m = _fixture(tmp_path)
    ds = COCODataset(path, image_dir)
    masks = ds.instance_masks("10")
    cat = np.zeros((H, W), dtype=bool)
    cat[1:5, 2:6] = True
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert np.array_equal(masks[0], cat) and np.array_equal(masks[1], m["dog"])
    assert np.array_equal(ds.instance_masks("2")[0], m["small"])
    gt = ds.semantic_gt("10")
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[m["crowd"]] = 255
    expected[m["dog"]] = 2  # dog (20 px) is larger than cat (16 px): painted first
    expected[cat] = 1  # the smaller object wins the overlap
    assert np.array_equal(gt, expected)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    images, instances = [], []
    for image_id, (h, w) in enumerate([(9, 13), (16, 7)], start=1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image_dir / f"{image_id}.png")
        images.append(CocoImage(image_id, f"{image_id}.png", w, h))
        for label in (2, 1, 3):
            mask = rng.random((h, w)) < 0.3  # scattered pixels: many RLE runs, holes
            instances.append(CocoInstance(image_id, label, mask, score=0.5 + label / 10))
    path = tmp_path / "out" / "pseudo.json"
    write_coco_instances(path, images, ("background", "a", "b", "c"), instances)
    data = json.loads(path.read_text())
    assert [a["score"] for a in data["annotations"]][:3] == [0.7, 0.6, 0.8]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])
    assert [a["area"] for a in data["annotations"]] == [float(i.mask.sum()) for i in instances]
    ds = COCODataset(path, image_dir)
    assert ds.class_names == ("background", "a", "b", "c") and ds.ids == ["1", "2"]
    for image_id, chunk in (("1", instances[:3]), ("2", instances[3:])):
        masks = ds.instance_masks(image_id)
        boxes = ds.annotation(image_id).boxes
        for inst, mask, box in zip(chunk, masks, boxes, strict=True):
            assert np.array_equal(mask, inst.mask)
            ys, xs = np.nonzero(inst.mask)
            assert box == Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, inst.label)
    before = path.read_bytes()
    write_coco_instances(path, images, ("background", "a", "b", "c"), instances)
    assert path.read_bytes() == before


def test_writer_rejects_bad_instances(tmp_path):
    img = CocoImage(1, "x.png", 4, 3)
    good = np.ones((3, 4), dtype=bool)
    cases = [
        (CocoInstance(1, 1, np.zeros((3, 4), dtype=bool)), "empty"),
        (CocoInstance(1, 1, np.ones((4, 3), dtype=bool)), "mask"),
        (CocoInstance(1, 2, good), "label"),
        (CocoInstance(1, 0, good), "label"),
        (CocoInstance(9, 1, good), "unknown image"),
    ]
    for inst, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            write_coco_instances(tmp_path / "x.json", [img], ("background", "a"), [inst])
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ValueError, match="background"):
        write_coco_instances(tmp_path / "x.json", [img], ("a",), [])


def test_voc_to_coco_matches_voc_ground_truth(tiny_voc, tmp_path):
    voc = VOCDataset(tiny_voc, "train")
    path = tmp_path / "gt.json"
    mapping = voc_to_coco(voc, path)
    assert sorted(mapping) == sorted(voc.ids)
    coco = COCODataset(path, tiny_voc / "JPEGImages")
    assert coco.class_names == voc.class_names
    for image_id in voc.ids:
        key = str(mapping[image_id])
        inst = voc.instance_gt(image_id)
        masks = coco.instance_masks(key)
        assert coco.annotation(key).boxes == voc.annotation(image_id).boxes
        assert len(masks) == inst.max()
        for k, mask in enumerate(masks, start=1):
            assert np.array_equal(mask, inst == k)
        assert np.array_equal(coco.semantic_gt(key), voc.semantic_gt(image_id))
        assert np.array_equal(coco.image(key), voc.image(image_id))


def _set(path: list, value):
    """An edit for _fixture: set data[path[0]][path[1]]...[path[-1]] = value."""

    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    "edit, image_id, fragment",
    [
        (_set(["annotations", 0, "category_id"], 99), "10", "unknown category id 99"),
        (_set(["annotations", 0, "bbox"], [4.0, 3.0, 0.0, 4.0]), "10", "zero-area"),
        (_set(["annotations", 3, "bbox"], [7, 0, 5, 2]), "2", "outside"),
        (_set(["annotations", 3, "bbox"], [-3, 0, 5, 2]), "2", "outside"),
        (_set(["annotations", 3, "bbox"], [7, 0, 3]), "2", "bbox must be"),
        (_set(["annotations", 3, "iscrowd"], 1), "2", r"no \(non-crowd\) annotations"),
        (_set(["annotations"], []), "2", r"no \(non-crowd\) annotations"),
    ],
)
def test_bad_annotations_raise_data_error_naming_the_json(tmp_path, edit, image_id, fragment):
    path, image_dir, _ = _fixture(tmp_path, e=edit)
    ds = COCODataset(path, image_dir)
    with pytest.raises(DataError, match=fragment) as err:
        ds.annotation(image_id)
    assert err.value.path == str(path) and "instances.json" in str(err.value)


def test_bad_segmentations_raise(tmp_path):
    path, image_dir, _ = _fixture(tmp_path, e=_set(["annotations", 1, "segmentation"], [[2, 1, 6, 1]]))
    with pytest.raises(DataError, match="polygons") as err:
        COCODataset(path, image_dir).instance_masks("10")
    assert "instances.json" in str(err.value)
    path, image_dir, _ = _fixture(tmp_path, e=_set(["annotations", 3, "segmentation", "size"], [H + 1, W]))
    with pytest.raises(DataError, match="RLE size"):
        COCODataset(path, image_dir).instance_masks("2")


def test_small_overshoot_is_clipped(tmp_path):
    path, image_dir, _ = _fixture(tmp_path, e=_set(["annotations", 3, "bbox"], [7, -0.4, 3.3, 2.4]))
    assert COCODataset(path, image_dir).annotation("2").boxes == (Box(7, 0, 10, 2, 2),)
    with pytest.raises(DataError, match="outside"):
        COCODataset(path, image_dir, box_tolerance=0.0).annotation("2")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (_set(["annotations", 0, "image_id"], 77), "unknown image_id 77"),
        (_set(["categories", 1, "id"], 7), "unique"),
        (_set(["images", 1, "id"], 10), "duplicate image id"),
        (_set(["images", 1, "width"], 0), "invalid size"),
        (_set(["categories"], []), "no categories"),
    ],
)
def test_bad_json_structure_raises_on_load(tmp_path, edit, fragment):
    path, image_dir, _ = _fixture(tmp_path, e=edit)
    with pytest.raises(DataError, match=fragment) as err:
        COCODataset(path, image_dir)
    assert "instances.json" in str(err.value)


def test_malformed_or_missing_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="cannot parse JSON") as err:
        COCODataset(path, tmp_path)
    assert "broken.json" in str(err.value)
    path.write_text('{"images": []}')
    with pytest.raises(DataError, match="annotations"):
        COCODataset(path, tmp_path)
    with pytest.raises(DataError, match="missing"):
        COCODataset(tmp_path / "nope.json", tmp_path)


def test_missing_corrupt_or_wrong_size_image(tmp_path):
    path, image_dir, _ = _fixture(tmp_path)
    ds = COCODataset(path, image_dir)
    (image_dir / "ten.png").unlink()
    with pytest.raises(DataError, match="missing") as err:
        ds.image("10")
    assert "ten.png" in str(err.value)
    (image_dir / "two.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode") as err:
        ds.image("2")
    assert "two.jpg" in str(err.value)
    Image.fromarray(np.zeros((H, W + 2, 3), dtype=np.uint8)).save(image_dir / "two.jpg")
    with pytest.raises(DataError, match="says") as err:
        ds.image("2")
    assert "two.jpg" in str(err.value)


def test_skip_empty(tmp_path):
    path, image_dir, _ = _fixture(tmp_path, e=_set(["annotations", 3, "iscrowd"], 1))
    assert COCODataset(path, image_dir).ids == ["2", "10"]
    assert COCODataset(path, image_dir, skip_empty=True).ids == ["10"]


def test_boxes_only_json_has_no_ground_truth_but_reads_its_boxes(tmp_path):
    def strip(keep: int):
        def fn(data):
            for ann in data["annotations"][keep:]:
                ann.pop("segmentation")
        return fn

    path, image_dir, _ = _fixture(tmp_path, e=strip(0))
    ds = COCODataset(path, image_dir)
    assert ds.missing_ground_truth() == f"{path}: 3 of 3 objects have no segmentation (boxes only)"
    assert ds.missing_ground_truth("instance") == ds.missing_ground_truth()
    assert [b.label for b in ds.annotation("10").boxes] == [1, 2]  # boxes and classes as with masks (cat, dog)
    ds.validate()  # images and boxes checked; no mask to decode
    with pytest.raises(DataError, match="no ground-truth masks: 3 of 3 objects"):
        ds.semantic_gt("10")
    with pytest.raises(DataError, match="no ground-truth masks"):
        ds.instance_masks("2")
    # one object without a mask is enough to leave the split without ground truth (the crowd one does not count)
    path, image_dir, _ = _fixture(tmp_path, e=strip(3))
    assert "1 of 3 objects" in COCODataset(path, image_dir).missing_ground_truth()
    path, image_dir, _ = _fixture(tmp_path)
    assert COCODataset(path, image_dir).missing_ground_truth() is None
