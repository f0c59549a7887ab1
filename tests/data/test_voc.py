"""Tests of the VOC-layout reader (a2gnn.data.voc) on hand-written fixtures."""

from __future__ import annotations

import shutil

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2gnn.data.voc import VOC_CLASSES, Box, VOCDataset, load_class_names, parse_voc_xml
from a2gnn.core.io import DataError, write_label

W, H = 12, 8


def _xml(objects: list[tuple[str, int, int, int, int, int]], width: int = W, height: int = H) -> str:
    """VOC XML text; objects are (name, xmin, ymin, xmax, ymax, difficult) with 1-based inclusive corners."""
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
        for n, a, b, c, e, d in objects
    )
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation>{size}{body}</annotation>"


def _make_voc(root: Path, classes: tuple[str, ...] | None = ("background", "cat", "dog")) -> Path:
    """Two images: 'a' (a cat spanning the whole image + a difficult dog) and 'b' (one dog)."""
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(0)
    for image_id, objects in {
        "a": [("cat", 1, 1, W, H, 0), ("dog", 3, 2, 5, 4, 1)],
        "b": [("dog", 2, 3, 7, 8, 0)],
    }.items():
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(objects))
        label = np.zeros((H, W), dtype=np.uint8)
        label[1:3, 2:4] = 2
        label[0, 0] = 255
        write_label(root / "SegmentationClass" / f"{image_id}.png", label)
        write_label(root / "SegmentationObject" / f"{image_id}.png", (label > 0).astype(np.uint8))
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    return root


def test_xml_corners_become_half_open_boxes(tmp_path):
    root = _make_voc(tmp_path / "voc")
    names = load_class_names(root)
    ann = parse_voc_xml(root / "Annotations/a.xml", names)
    assert (ann.width, ann.height) == (W, H)
    # xmin=1 -> x1=0, xmax=W -> x2=W: the full-image box covers every pixel exactly once
    assert ann.boxes == (Box(0, 0, W, H, 1, False), Box(2, 1, 5, 4, 2, True))
    assert ann.boxes[0].area == W * H and ann.boxes[1].width == 3 and ann.boxes[1].height == 3
    assert ann.image_labels == (1, 2)
    assert parse_voc_xml(root / "Annotations/a.xml", names, use_difficult=False).boxes == (Box(0, 0, W, H, 1),)


def test_dataset_reads_images_and_labels(tmp_path):
    root = _make_voc(tmp_path / "voc")
    ds = VOCDataset(root, "train")
    assert ds.ids == ["a", "b"] and len(ds) == 2 and ds.num_classes == 3
    assert ds.class_names == ("background", "cat", "dog")
    assert ds.image("a").shape == (H, W, 3) and ds.image("a").dtype == np.uint8
    gt = ds.semantic_gt("b")
    assert gt[0, 0] == 255 and gt[1, 2] == 2 and gt[5, 5] == 0
    assert ds.instance_gt("b")[1, 2] == 1
    assert ds.annotation("b").boxes == (Box(1, 2, 7, 8, 2),)
    ds.validate()


def test_png_image_is_accepted(tmp_path):
    root = _make_voc(tmp_path / "voc")
    jpg = root / "JPEGImages/b.jpg"
    Image.open(jpg).save(root / "JPEGImages/b.png")
    jpg.unlink()
    assert VOCDataset(root).image_path("b").suffix == ".png"
    assert VOCDataset(root).image("b").shape == (H, W, 3)


@pytest.mark.parametrize(
    "objects, size, fragment",
    [
        ([("horse", 1, 1, 4, 4, 0)], (W, H), "unknown class"),
        ([("background", 1, 1, 4, 4, 0)], (W, H), "unknown class"),
        ([("cat", 5, 1, 4, 4, 0)], (W, H), "zero-area"),
        ([("cat", 1, 1, W + 1, 4, 0)], (W, H), "outside"),
        ([("cat", 0, 1, 4, 4, 0)], (W, H), "outside"),
        ([], (W, H), "no <object>"),
        ([("cat", 1, 1, 4, 4, 0)], (0, H), "invalid image size"),
    ],
)
def test_bad_annotations_raise_data_error_naming_the_file(tmp_path, objects, size, fragment):
    root = _make_voc(tmp_path / "voc")
    path = root / "Annotations/b.xml"
    path.write_text(_xml(objects, *size))
    with pytest.raises(DataError, match=fragment) as err:
        VOCDataset(root).annotation("b")
    assert err.value.path == str(path) and "b.xml" in str(err.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("<annotation><size><width>12</width>", "cannot parse XML"),
        ("<annotation><object><name>cat</name></object></annotation>", "missing <size>"),
        (_xml([("cat", 1, 1, 4, 4, 0)]).replace("<xmax>4</xmax>", "<xmax>four</xmax>"), "not a number"),
        (_xml([("cat", 1, 1, 4, 4, 0)]).replace("<ymin>1</ymin>", ""), "missing <ymin>"),
    ],
)
def test_malformed_xml_raises_data_error(tmp_path, text, fragment):
    root = _make_voc(tmp_path / "voc")
    (root / "Annotations/a.xml").write_text(text)
    with pytest.raises(DataError, match=fragment) as err:
        VOCDataset(root).annotation("a")
    assert "a.xml" in str(err.value)


def test_missing_annotation_raises(tmp_path):
    root = _make_voc(tmp_path / "voc")
    (root / "Annotations/a.xml").unlink()
    with pytest.raises(DataError, match="missing") as err:
        VOCDataset(root).annotation("a")
    assert "a.xml" in str(err.value)


def test_missing_corrupt_or_wrong_size_image_raises(tmp_path):
    root = _make_voc(tmp_path / "voc")
    (root / "JPEGImages/a.jpg").unlink()
    with pytest.raises(DataError, match="missing") as err:
        VOCDataset(root).image("a")
    assert "a.jpg" in str(err.value)
    (root / "JPEGImages/b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode") as err:
        VOCDataset(root).image("b")
    assert "b.jpg" in str(err.value)
    Image.fromarray(np.zeros((H + 1, W, 3), dtype=np.uint8)).save(root / "JPEGImages/b.jpg")
    with pytest.raises(DataError, match="annotation says") as err:
        VOCDataset(root).image("b")
    assert "b.jpg" in str(err.value)
    with pytest.raises(DataError, match="missing"):
        VOCDataset(root).validate()  # validate stops at the first bad image


def test_missing_label_png_raises(tmp_path):
    root = _make_voc(tmp_path / "voc")
    (root / "SegmentationClass/a.png").unlink()
    with pytest.raises(DataError) as err:
        VOCDataset(root).semantic_gt("a")
    assert "a.png" in str(err.value)


def test_classes_txt_handling(tmp_path):
    assert load_class_names(_make_voc(tmp_path / "none", classes=None)) == VOC_CLASSES
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    # blank lines and surrounding spaces are ignored
    root = _make_voc(tmp_path / "custom")
    (root / "classes.txt").write_text("background\n\n  cat \ndog\n")
    assert load_class_names(root) == ("background", "cat", "dog")
    for bad, fragment in (("background\n", "at least one"), ("background\ncat\ncat\n", "unique")):
        (root / "classes.txt").write_text(bad)
        with pytest.raises(DataError, match=fragment) as err:
            VOCDataset(root)
        assert "classes.txt" in str(err.value)
    # a class list without "dog" turns the dog boxes into unknown classes
    (root / "classes.txt").write_text("background\ncat\n")
    with pytest.raises(DataError, match="unknown class name 'dog'"):
        VOCDataset(root).annotation("b")


def test_image_sets_missing_or_empty(tmp_path):
    root = _make_voc(tmp_path / "voc")
    split = root / "ImageSets/Segmentation/train.txt"
    split.write_text("\n  \n")
    with pytest.raises(DataError, match="empty") as err:
        VOCDataset(root, "train")
    assert "train.txt" in str(err.value)
    with pytest.raises(DataError, match="missing") as err:
        VOCDataset(root, "val")
    assert "val.txt" in str(err.value)


def test_missing_ground_truth_folders(tiny_voc_copy):
    ds = VOCDataset(tiny_voc_copy, "train")
    assert ds.missing_ground_truth("semantic") is None and ds.missing_ground_truth("instance") is None
    shutil.rmtree(tiny_voc_copy / "SegmentationObject")
    assert ds.missing_ground_truth("semantic") is None
    assert ds.missing_ground_truth("instance") == f"{tiny_voc_copy / 'SegmentationObject'}: no such folder (boxes only)"
    assert "SegmentationClassAug" in VOCDataset(tiny_voc_copy, "train", "SegmentationClassAug").missing_ground_truth()
