"""a2gnn.reporting.figures (Fig. 6-style qualitative grid) on tiny synthetic arrays, and stages/figure.py on the tiny dataset."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from a2gnn.core.cli import run_stage
from a2gnn.data.formats import open_dataset
from a2gnn.data.formats import DatasetConfig
from a2gnn.reporting.figures import assemble_grid, colourise, instance_colours, mask_outline, overlay_instances, write_png
from a2gnn.core.io import read_image, voc_palette, write_label
from helpers import load_stage



def test_colourise_uses_the_label_png_palette():
    label = np.array([[0, 1, 15], [255, 2, 0]], np.uint8)
    rgb = colourise(label)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 0)  # background
    assert tuple(rgb[0, 1]) == (128, 0, 0)  # aeroplane
    assert tuple(rgb[1, 1]) == (0, 128, 0)  # bicycle
    assert tuple(rgb[0, 2]) == (192, 128, 128)  # person
    assert tuple(rgb[1, 0]) == (224, 224, 192)  # ignore
    # exactly the colours write_label's palette PNG decodes to
    with pytest.raises(ValueError):
        colourise(np.zeros((2, 2, 2), np.uint8))


def test_colourise_matches_write_label(tmp_path):
    label = np.arange(24, dtype=np.uint8).reshape(4, 6)
    write_label(tmp_path / "l.png", label)
    assert np.array_equal(colourise(label), read_image(tmp_path / "l.png"))
    assert np.array_equal(colourise(label), voc_palette()[label])


def test_instance_colours_distinct_and_stable():
    cols = instance_colours(12)
    assert cols.shape == (12, 3) and len({tuple(c) for c in cols}) == 12
    assert np.array_equal(cols, instance_colours(12)) and np.array_equal(cols[:5], instance_colours(5))


def test_outline_is_inner_boundary():
    mask = np.zeros((6, 7), bool)
    mask[1:5, 2:6] = True
    edge = mask_outline(mask)
    assert not (edge & ~mask).any()
    assert edge.sum() == 4 * 4 - 2 * 2 and not edge[2:4, 3:5].any()
    full = np.ones((3, 3), bool)
    assert mask_outline(full).sum() == 8  # image border counts as outside


def test_overlay_changes_only_masked_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    a = np.zeros((10, 12), bool)
    a[1:5, 1:6] = True
    b = np.zeros((10, 12), bool)
    b[4:9, 5:11] = True
    out = overlay_instances(image, [a, b])
    assert out.shape == image.shape and out.dtype == np.uint8
    outside = ~(a | b)
    assert np.array_equal(out[outside], image[outside])
    assert (out[a | b] != image[a | b]).any(axis=-1).mean() > 0.9
    cols = instance_colours(2)
    assert (out[mask_outline(b)] == cols[1]).all()  # later instance on top, outlined in its colour
    only_a_edge = mask_outline(a) & ~b
    assert (out[only_a_edge] == cols[0]).all()
    assert np.array_equal(overlay_instances(image, []), image)
    with pytest.raises(ValueError):
        overlay_instances(image, [np.zeros((3, 3), bool)])


def test_grid_shape_and_placement():
    red = np.zeros((20, 40, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((30, 30, 3), np.uint8)
    blue[..., 2] = 255
    grid = assemble_grid([[red, blue], [blue, red]], ["a", "b"], cell=(32, 48), captions=["x", None], margin=2,
                         header=10)
    assert grid.shape == (10 + 2 * (32 + 2) + 2, 2 * (48 + 2) + 2, 3)
    # row 1 col 1 (red, 20x40 -> 24x48) centred in its 32x48 cell: cell centre red, cell top row white
    y0, x0 = 10 + 34, 2 + 50
    assert tuple(grid[y0 + 16, x0 + 24]) == (255, 0, 0) and tuple(grid[y0, x0 + 24]) == (255, 255, 255)
    assert tuple(grid[10 + 16, 2 + 50 + 24]) == (0, 0, 255)
    with pytest.raises(ValueError):
        assemble_grid([[red]], ["a", "b"])


def test_png_bytes_are_deterministic(tmp_path):
    label = np.arange(64, dtype=np.uint8).reshape(8, 8) % 21
    rows = [[np.full((8, 8, 3), 90, np.uint8), colourise(label)]] * 2
    write_png(tmp_path / "a.png", assemble_grid(rows, ["image", "label"], captions=["1", "2"]))
    write_png(tmp_path / "b.png", assemble_grid(rows, ["image", "label"], captions=["1", "2"]))
    data = (tmp_path / "a.png").read_bytes()
    assert data == (tmp_path / "b.png").read_bytes()
    assert b"tEXt" not in data and b"tIME" not in data and b"iTXt" not in data
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stage_labels_and_deeplab_columns(tiny_voc, tmp_path):
    import torch

    from a2gnn.segmentation.deeplab import DeepLabConfig, build_deeplab, save_deeplab

    torch.set_num_threads(1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}}))
    train = open_dataset(DatasetConfig(), "train", tiny_voc)
    labels = tmp_path / "labels"
    for image_id in train.ids:
        write_label(labels / f"{image_id}.png", train.semantic_gt(image_id))
    torch.manual_seed(0)
    cfg = DeepLabConfig.from_params({"backbone": {"width": 4}})
    model_path = tmp_path / "deeplab.pt"
    save_deeplab(model_path, build_deeplab(cfg, train.num_classes), cfg, train.class_names)
    stage = load_stage("figure")
    common = [str(tiny_voc), "--params", str(params), "--n", "3", "--cell", "64"]
    out = tmp_path / "fig" / "q.png"
    stage.main(common + ["--labels", str(labels), "--deeplab", str(model_path), "--out", str(out)])
    first = out.read_bytes()
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (4 * (64 + 4) + 4, 20 + 3 * (64 + 4) + 4)
        grid = np.asarray(im)
    stage.main(common + ["--labels", str(labels), "--deeplab", str(model_path), "--out", str(out)])
    assert out.read_bytes() == first
    # the pseudo-label column equals the ground-truth column here (labels = GT)
    gt_col, label_col = grid[20:, 4 + 68: 4 + 68 + 64], grid[20:, 4 + 2 * 68: 4 + 2 * 68 + 64]
    assert np.array_equal(gt_col, label_col)
    # image + GT only; missing label file -> one-line error, no output
    small = tmp_path / "small.png"
    stage.main(common + ["--n", "1", "--out", str(small)])
    with Image.open(small) as im:
        assert im.size == (2 * 68 + 4, 20 + 68 + 4)
    (labels / f"{train.ids[0]}.png").unlink()
    bad = tmp_path / "bad.png"
    with pytest.raises(SystemExit):
        run_stage(stage.main, common + ["--labels", str(labels), "--out", str(bad)])
    assert not bad.exists()
