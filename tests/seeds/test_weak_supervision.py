"""§7 / Table 5: synthetic scribbles and points, superpixel expansion, per-supervision seeds, the weak_seeds stage,
the A²GNN + random-walk fusion and the guard against box-only switches."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from a2gnn.core.cli import run_stage
from a2gnn.core.config import ConfigError
from a2gnn.data.voc import VOCDataset
from a2gnn.gnn.model import GNNConfig
from a2gnn.core.io import DataError, read_label, write_json, write_label
from a2gnn.pseudo_labels.postprocess import PostprocessConfig, fuse_scores
from a2gnn.seeds import weak
from a2gnn.seeds.weak import ImageInputs
from a2gnn.data.supervision import (
    SUPERVISION_FORMS,
    SupervisionRecord,
    WeakConfig,
    check_supervision,
    read_supervision_record,
    supervision_record,
)
from a2gnn.data.weak_labels import (expand_by_superpixels, image_rng, merge_seeds, synthetic_points,
                               synthetic_scribbles)

ROOT = Path(__file__).resolve().parents[2]
N = 255


def two_objects():
    """40x40 GT: class 3 disc (instance 1), class 5 square (instance 2), background elsewhere."""
    yy, xx = np.mgrid[:40, :40]
    semantic = np.zeros((40, 40), np.uint8)
    instance = np.zeros((40, 40), np.uint8)
    disc = (yy - 12) ** 2 + (xx - 12) ** 2 < 64
    semantic[disc], instance[disc] = 3, 1
    semantic[22:36, 20:38], instance[22:36, 20:38] = 5, 2
    return semantic, instance


def test_points_one_click_per_object_inside_it_near_the_middle_and_reproducible():
    semantic, instance = two_objects()
    points = synthetic_points(semantic, instance, image_rng(0, "img"), centre=0.5)
    ys, xs = np.nonzero(points != N)
    assert len(ys) == 2 and sorted(points[ys, xs].tolist()) == [3, 5]  # one per instance, no background
    assert (points[ys, xs] == semantic[ys, xs]).all()
    disc = np.argwhere(points == 3)[0]
    assert np.hypot(disc[0] - 12, disc[1] - 12) <= 4  # inner distance >= half of the disc's radius 8
    assert np.array_equal(points, synthetic_points(semantic, instance, image_rng(0, "img"), 0.5))
    assert not np.array_equal(points, synthetic_points(semantic, instance, image_rng(1, "img"), 0.5))


def test_scribbles_lie_inside_their_regions_and_cover_every_object_and_background():
    semantic, instance = two_objects()
    scribbles = synthetic_scribbles(semantic, instance, image_rng(0, "x"), points=4, width=3, margin=2.0,
                                    min_background_area=64)
    labelled = scribbles != N
    assert (scribbles[labelled] == semantic[labelled]).all()  # every scribble pixel has its region's class
    assert set(np.unique(scribbles[labelled]).tolist()) == {0, 3, 5}
    assert 0 < labelled.mean() < 0.3  # strokes, not regions
    again = synthetic_scribbles(semantic, instance, image_rng(0, "x"), 4, 3, 2.0, 64)
    assert np.array_equal(scribbles, again)


def test_small_background_regions_get_no_scribble():
    semantic = np.full((30, 30), 2, np.uint8)
    semantic[1:4, 1:4] = 0  # a 9 px background hole
    instance = (semantic == 2).astype(np.uint8)
    scribbles = synthetic_scribbles(semantic, instance, image_rng(0, "y"), 4, 1, 1.0, min_background_area=10)
    assert 0 not in scribbles


def test_superpixel_expansion_against_a_loop():
    superpixels = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 3, axis=0), 3, axis=1)  # four 3x3 blocks
    ann = np.full((6, 6), N, np.uint8)
    ann[0, 0] = 2  # block 0: class 2 only
    ann[1, 4], ann[2, 5] = 1, 1  # block 1: class 1 twice
    ann[4, 0], ann[5, 2] = 3, 4  # block 2: two classes -> only the annotated pixels
    expected = np.full((6, 6), N, np.uint8)  # block 3 untouched
    for sp in range(4):
        classes = {int(c) for c in ann[(superpixels == sp) & (ann != N)]}
        if len(classes) == 1:
            expected[superpixels == sp] = classes.pop()
    expected[ann != N] = ann[ann != N]
    assert np.array_equal(expand_by_superpixels(ann, superpixels), expected)
    assert (expected[:3, :3] == 2).all() and (expected[:3, 3:] == 1).all() and expected[3:, 3:].max() == N


def test_merge_rule():
    primary = np.array([[1, N], [N, 0]], np.uint8)
    fallback = np.array([[2, 3], [N, 4]], np.uint8)
    assert merge_seeds(primary, fallback).tolist() == [[1, 3], [N, 0]]


def test_each_supervision_gives_the_seeds_of_section_7_1(monkeypatch):
    superpixels = np.repeat(np.arange(2), 4)[None].repeat(2, axis=0)  # 2x8: left / right halves
    monkeypatch.setattr(weak, "slic", lambda image, n, m: superpixels)
    m_i_top = np.array([[0, 0, N, N, N, 7, 7, N]] * 2, np.uint8)
    ann = np.full((2, 8), N, np.uint8)
    ann[0, 1] = 4  # one click / stroke pixel in the left half
    inputs = ImageInputs(np.zeros((2, 8, 3), np.uint8), m_i_top, ann)
    expanded = np.array([[4, 4, 4, 4, N, N, N, N]] * 2, np.uint8)
    cfg = WeakConfig()
    affinity, node = weak.WEAK_SEEDS["scribble"](inputs, cfg)
    assert np.array_equal(node, expanded) and np.array_equal(affinity, merge_seeds(expanded, m_i_top))
    affinity, node = weak.WEAK_SEEDS["point"](inputs, cfg)
    assert np.array_equal(affinity, m_i_top) and np.array_equal(node, merge_seeds(expanded, m_i_top))
    affinity, node = weak.WEAK_SEEDS["image"](ImageInputs(inputs.image, m_i_top, None), cfg)
    assert np.array_equal(affinity, m_i_top) and np.array_equal(node, m_i_top)


def test_every_supervision_but_box_has_a_seed_maker():
    assert ("box", *weak.WEAK_SEEDS) == SUPERVISION_FORMS.names()


def test_box_only_switches_are_refused_without_boxes():
    scribble = WeakConfig(supervision="scribble")
    post_off = PostprocessConfig(box_constraint=False)
    ok = GNNConfig(use_mp=False, use_consistency=False, seeds="weak/gnn")
    check_supervision(scribble, ok, post_off)
    check_supervision(WeakConfig(), GNNConfig(), PostprocessConfig())  # the box default
    with pytest.raises(ConfigError, match="gnn.use_mp"):
        check_supervision(scribble, GNNConfig(use_consistency=False, seeds="weak/gnn"), post_off)
    with pytest.raises(ConfigError, match="box_constraint"):
        check_supervision(scribble, ok, PostprocessConfig())
    with pytest.raises(ConfigError, match="weak/gnn"):
        check_supervision(scribble, GNNConfig(use_mp=False, use_consistency=False), post_off)
    with pytest.raises(ConfigError, match="weak.supervision"):
        check_supervision(WeakConfig(), GNNConfig(seeds="weak/gnn"), PostprocessConfig())
    with pytest.raises(ConfigError, match="supervision"):
        WeakConfig.from_params({"supervision": "polygon"})


def test_fusion_is_the_weighted_mean_of_the_two_distributions():
    a = np.array([[[2.0]], [[2.0]]])  # -> 0.5 / 0.5
    b = np.array([[[0.0]], [[4.0]]])  # -> 0 / 1
    fused = fuse_scores(a, b, 0.75)
    np.testing.assert_allclose(fused[:, 0, 0], [0.25 * 0.5, 0.25 * 0.5 + 0.75])


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_cams(dataset: VOCDataset, cam_dir: Path) -> None:
    """CAM outputs that know the truth: M_I = GT, scores rising left to right on each class."""
    for image_id in dataset.ids:
        gt = dataset.semantic_gt(image_id)
        labels = np.array(dataset.annotation(image_id).image_labels)
        ramp = np.linspace(0.2, 1.0, gt.size).reshape(gt.shape)
        cams = np.stack([(gt == c) * ramp for c in labels]).astype(np.float16)
        (cam_dir / "scores").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cam_dir / "scores" / f"{image_id}.npz", cams=cams, labels=labels)
        write_label(cam_dir / "M_I" / f"{image_id}.png", np.where(gt == 255, 0, gt).astype(np.uint8))


@pytest.mark.parametrize("supervision", ["box", "scribble", "point", "image"])
def test_weak_seeds_stage(tiny_voc, tmp_path, supervision):
    dataset = VOCDataset(tiny_voc, "train")
    cam_dir, out = tmp_path / "cam", tmp_path / "seeds" / "weak"
    fake_cams(dataset, cam_dir)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "runtime": {"workers": 0}, "dataset": {},
                                      "seeds": {}, "weak": {"supervision": supervision, "sp_segments": 60}}))
    record = tmp_path / "record.json"
    run_stage(load_stage("weak_seeds").main, [str(tiny_voc), str(cam_dir), str(out), str(record),
                                              "--params", str(params)])
    written = {d: sorted(p.name for p in (out / d).iterdir()) for d in ("affinity", "gnn", "annotations")}
    assert read_supervision_record(record) == SupervisionRecord(supervision)
    if supervision == "box":
        assert written == {"affinity": [], "gnn": [], "annotations": []}
        return
    assert written["gnn"] == sorted(f"{i}.png" for i in dataset.ids) == written["affinity"]
    assert bool(written["annotations"]) == (supervision != "image")
    for image_id in dataset.ids:
        gt = dataset.semantic_gt(image_id)
        for folder in ("affinity", "gnn"):
            seeds = read_label(out / folder / f"{image_id}.png")
            known = (seeds != N) & (gt != N)
            assert known.any() and (seeds[known] == gt[known]).mean() > 0.8
        if supervision == "scribble":  # the expanded scribbles label more than the strokes
            ann = read_label(out / "annotations" / f"{image_id}.png")
            assert (read_label(out / "gnn" / f"{image_id}.png") != N).sum() > (ann != N).sum()


def test_a_users_annotation_maps_are_read_and_bad_ones_named(tiny_voc_copy, tmp_path):
    dataset = VOCDataset(tiny_voc_copy, "train")
    cam_dir = tmp_path / "cam"
    fake_cams(dataset, cam_dir)
    first = dataset.ids[0]
    gt = dataset.semantic_gt(first)
    mine = np.full(gt.shape, N, np.uint8)
    mine[gt.shape[0] // 2, :] = gt[gt.shape[0] // 2, :]  # one horizontal stroke across the image
    write_label(tiny_voc_copy / "mine" / f"{first}.png", mine)
    cfg = WeakConfig(supervision="scribble", annotation_dir="mine", sp_segments=60)
    annotation, _, _ = weak.image_weak_seeds(dataset, first, cam_dir, tiny_voc_copy, cfg, weak.SeedsConfig(), 0)
    assert np.array_equal(annotation, mine)
    with pytest.raises(weak.DataError, match="annotation map is missing"):
        weak.image_weak_seeds(dataset, dataset.ids[1], cam_dir, tiny_voc_copy, cfg, weak.SeedsConfig(), 0)
    write_label(tiny_voc_copy / "mine" / f"{first}.png", mine[:-1])
    with pytest.raises(weak.DataError, match=f"{first}.png"):
        weak.image_weak_seeds(dataset, first, cam_dir, tiny_voc_copy, cfg, weak.SeedsConfig(), 0)


def test_the_supervision_record_carries_the_random_walk_only_with_the_fusion(tmp_path):
    walk = {"logt": 3, "beta": 8.0, "bg_alpha": 6.0}
    path = tmp_path / "record.json"
    for cfg, expected in ((WeakConfig(), SupervisionRecord("box")),
                          (WeakConfig(supervision="image", rw_fusion=0.75),
                           SupervisionRecord("image", 0.75, walk))):
        write_json(path, supervision_record(cfg, walk, 3), ndigits=12)
        assert read_supervision_record(path) == expected
    # a random-walk knob leaves the record of a run without fusion byte-identical (pseudo_labels is not rerun)
    assert supervision_record(WeakConfig(), walk, 3) == supervision_record(WeakConfig(), {**walk, "logt": 4}, 3)
    path.write_text('{"supervision": "boxes", "rw_fusion": 0, "random_walk": null}')
    with pytest.raises(DataError, match="record.json.*boxes"):
        read_supervision_record(path)
    with pytest.raises(DataError, match="missing.*record.json|record.json.*missing"):
        read_supervision_record(tmp_path / "record.json.gone")
