"""Tests of the embedded default dataset generator (a2gnn.data.embedded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import tiny_embedded_config

from a2gnn.core.config import ConfigError
from a2gnn.data.embedded import (
    STAMP_NAME,
    EmbeddedConfig,
    _visible_instances,
    generate,
    main,
    render_image,
)
from a2gnn.data.voc import VOCDataset, load_class_names


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _samples(ds: VOCDataset):
    for image_id in ds.ids:
        yield image_id, ds.annotation(image_id), ds.semantic_gt(image_id), ds.instance_gt(image_id)


def test_same_config_gives_byte_identical_files(tmp_path):
    cfg = tiny_embedded_config()
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    a, b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert len(a) == 1 + 1 + 2 + 4 * (cfg.n_train + cfg.n_val)  # classes, stamp, 2 splits, 4 files per image
    assert a == b


def test_different_seed_gives_different_images(tmp_path):
    generate(tiny_embedded_config(seed=0), tmp_path / "a")
    generate(tiny_embedded_config(seed=1), tmp_path / "b")
    a, b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert a.keys() == b.keys()
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert jpgs and all(a[k] != b[k] for k in jpgs)


def test_image_depends_only_on_seed_split_index():
    small, large = tiny_embedded_config(n_train=2), tiny_embedded_config(n_train=6)
    s, t = render_image(small, "train", 1), render_image(large, "train", 1)
    assert np.array_equal(s.image, t.image) and s.boxes == t.boxes
    assert not np.array_equal(render_image(small, "val", 1).image, s.image)  # splits draw independently


def test_layout_classes_and_splits(tiny_voc):
    cfg = tiny_embedded_config()
    assert load_class_names(tiny_voc) == ("background", "disc", "triangle", "ring", "star", "cross")
    train, val = VOCDataset(tiny_voc, "train"), VOCDataset(tiny_voc, "val")
    assert len(train) == cfg.n_train and len(val) == cfg.n_val
    assert not set(train.ids) & set(val.ids)
    train.validate()
    val.validate()
    for ds in (train, val):
        for image_id in ds.ids:
            h, w = ds.image(image_id).shape[:2]
            assert cfg.min_size <= h <= cfg.max_size and cfg.min_size <= w <= cfg.max_size


def test_files_match_rendered_sample(tiny_voc):
    cfg = tiny_embedded_config()
    ds = VOCDataset(tiny_voc, "train")
    for index, image_id in enumerate(ds.ids):
        sample = render_image(cfg, "train", index)
        assert ds.annotation(image_id).boxes == sample.boxes  # XML 1-based inclusive <-> half-open
        assert np.array_equal(ds.semantic_gt(image_id), sample.class_map)
        assert np.array_equal(ds.instance_gt(image_id), sample.instance_map)
        jpeg_error = np.abs(ds.image(image_id).astype(int) - sample.image.astype(int)).mean()
        assert jpeg_error < 8.0


def test_dataset_properties(tiny_voc):
    ds = VOCDataset(tiny_voc, "train")
    classes, fills, overlapping = set(), [], 0
    for _, ann, gt, inst in _samples(ds):
        boxes = ann.boxes
        assert 1 <= len(boxes)
        classes |= {b.label for b in boxes}
        # instance map <-> XML order; boxes are the tight boxes of the visible parts
        assert set(np.unique(inst)) <= set(range(len(boxes) + 1))
        for k, box in enumerate(boxes, start=1):
            ys, xs = np.nonzero(inst == k)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (box.x1, box.y1, box.x2, box.y2)
            assert (gt[inst == k] == box.label).all()
            fills.append((inst[box.y1:box.y2, box.x1:box.x2] == k).mean())
        # class map: every foreground pixel lies in a box of its class; background exactly where inst == 0
        covered = np.zeros_like(gt, dtype=bool)
        for box in boxes:
            window = gt[box.y1:box.y2, box.x1:box.x2] == box.label
            covered[box.y1:box.y2, box.x1:box.x2] |= window
        assert np.array_equal(gt > 0, covered & (gt > 0))
        assert np.array_equal(gt == 0, inst == 0)
        overlapping += any(
            min(p.x2, q.x2) > max(p.x1, q.x1) and min(p.y2, q.y2) > max(p.y1, q.y1)
            for i, p in enumerate(boxes) for q in boxes[i + 1:]
        )
    assert len(classes) >= 4
    assert overlapping >= 1
    assert np.mean(fills) < 0.9
    assert min(fills) > 0  # every box holds part of its object


def test_occlusion_drops_hidden_objects_and_renumbers():
    masks = [np.zeros((6, 8), dtype=bool) for _ in range(3)]
    masks[0][0:4, 0:4] = True  # 16 px, 4 hidden by masks 1 and 2 -> 12 px = 75 % visible: kept
    masks[1][2:4, 2:8] = True  # 12 px, 10 hidden by mask 2 -> 17 % visible: dropped
    masks[2][2:5, 3:8] = True  # 15 px, on top: kept
    cfg = EmbeddedConfig(min_visible_fraction=0.5, min_visible_pixels=2)
    inst, kept = _visible_instances(masks, cfg)
    assert kept == [0, 2]
    expected = np.zeros((6, 8), dtype=np.uint8)
    expected[masks[0]] = 1
    expected[masks[2]] = 2
    assert np.array_equal(inst, expected)
    # the absolute pixel floor drops an object whatever its fraction
    _, kept = _visible_instances(masks, EmbeddedConfig(min_visible_fraction=0.0, min_visible_pixels=12))
    assert kept == [0, 2]
    _, kept = _visible_instances(masks, EmbeddedConfig(min_visible_fraction=0.0, min_visible_pixels=13))
    assert kept == [2]


def test_boundary_ignore_band_only_near_boundaries():
    exact = render_image(tiny_embedded_config(), "train", 0)
    banded = render_image(tiny_embedded_config(boundary_ignore=1), "train", 0)
    assert np.array_equal(exact.image, banded.image)
    band = banded.class_map == 255
    assert band.any() and np.array_equal(band, banded.instance_map == 255)
    assert np.array_equal(banded.class_map[~band], exact.class_map[~band])
    # every band pixel has a differently labelled pixel in its 3x3 neighbourhood (in the exact map)
    padded = np.pad(exact.instance_map.astype(int), 1, mode="edge")
    h, w = exact.instance_map.shape
    neighbours = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    assert np.array_equal(band, (neighbours != exact.instance_map[None]).any(axis=0))


def _write_params(path: Path, section: dict) -> Path:
    path.write_text(yaml.safe_dump({"embedded": section}))
    return path


def test_cli_stamp_skip_force_and_change(tmp_path, capsys):
    params = _write_params(tmp_path / "params.yaml", {"n_train": 2, "n_val": 1, "min_size": 48, "max_size": 64})
    out = tmp_path / "data"
    main(["--params", str(params), "--out", str(out)])
    stamp = (out / STAMP_NAME).read_text()
    assert '"n_train": 2' in stamp
    marker = out / "marker"
    marker.write_text("x")
    capsys.readouterr()
    main(["--params", str(params), "--out", str(out)])
    assert "up to date" in capsys.readouterr().err
    assert marker.exists()  # nothing was rewritten
    main(["--params", str(params), "--out", str(out), "--force"])
    assert not marker.exists() and (out / STAMP_NAME).read_text() == stamp
    marker.write_text("x")
    _write_params(params, {"n_train": 3, "n_val": 1, "min_size": 48, "max_size": 64})
    main(["--params", str(params), "--out", str(out)])
    assert not marker.exists()
    assert len(VOCDataset(out, "train")) == 3


def test_config_defaults_and_validation():
    assert EmbeddedConfig.from_params(None) == EmbeddedConfig()
    cfg = EmbeddedConfig()
    assert (cfg.n_train, cfg.n_val, cfg.min_size, cfg.max_size) == (200, 60, 128, 192)
    assert len(cfg.classes) >= 4
    for bad in ({"classes": ["disc", "square"]}, {"min_size": 100, "max_size": 90}, {"texture_period": [3.0]},
                {"min_objects": 0}, {"jpeg_quality": 101}):
        with pytest.raises(ConfigError):
            EmbeddedConfig.from_params(bad)


def test_impossible_visibility_floor_fails_clearly():
    cfg = tiny_embedded_config(min_size=16, max_size=16, min_object_scale=0.1, max_object_scale=0.1,
                               min_visible_pixels=10_000)
    with pytest.raises(ConfigError, match="min_visible_pixels"):
        render_image(cfg, "train", 0)
