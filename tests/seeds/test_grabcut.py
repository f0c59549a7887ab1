"""Box seeds M_B, Eq. (2)-(3): GrabCut per box, SDI fallbacks, overlap rule."""

import numpy as np
import pytest

from a2gnn.core.config import ConfigError
from a2gnn.data.voc import Annotation, Box
from a2gnn.seeds import grabcut as gc
from a2gnn.data.boxes import box_owner_map, box_union_mask
from a2gnn.seeds.grabcut import (GrabCutConfig, box_seeds, compose_box_seeds, grabcut_box_mask, run_grabcut,
                                 zoom_window)

CFG = GrabCutConfig()


def disc_image(size=80, centre=(40, 36), radius=18, noise=12, seed=0):
    """A red disc on a green background with pixel noise; returns (image, disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    img = np.empty((size, size, 3), dtype=np.int64)
    img[:] = (40, 130, 50)
    img[disc] = (210, 40, 40)
    img += rng.integers(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), disc


def test_grabcut_recovers_disc():
    img, disc = disc_image()
    box = Box(36 - 24, 40 - 24, 36 + 24, 40 + 24, label=3)  # disc plus a margin of background
    mask = grabcut_box_mask(img, box, CFG, seed=0)
    assert mask.shape == disc.shape and mask.dtype == bool
    inter = (mask & disc).sum()
    assert inter / disc.sum() > 0.95  # recall of the object
    assert inter / (mask | disc).sum() > 0.9  # IoU with the object, not the whole box
    assert not mask[~gc.box_mask(box, disc.shape)].any()  # never outside the box


def test_grabcut_is_deterministic():
    img, _ = disc_image(noise=60)
    box = Box(10, 12, 64, 70, label=1)
    assert np.array_equal(grabcut_box_mask(img, box, CFG, 7), grabcut_box_mask(img, box, CFG, 7))


def test_no_foreground_falls_back_to_whole_box():
    img = np.full((40, 40, 3), 100, dtype=np.uint8)  # nothing distinguishes the box from the rest
    box = Box(10, 5, 30, 25, label=2)
    assert run_grabcut(img, box, CFG.iterations, 0).sum() == 0
    assert np.array_equal(grabcut_box_mask(img, box, CFG), gc.box_mask(box, (40, 40)))


def test_low_iou_falls_back_to_whole_box():
    img, disc = disc_image(size=80, radius=4, noise=0)  # small object in a big box
    box = Box(4, 4, 76, 76, label=2)
    raw = run_grabcut(img, box, CFG.iterations, 0)
    assert 0 < raw.sum() < CFG.min_box_iou * box.area  # GrabCut found something, but too little
    assert np.array_equal(grabcut_box_mask(img, box, CFG), gc.box_mask(box, (80, 80)))
    loose = GrabCutConfig(min_box_iou=0.0)
    assert np.array_equal(grabcut_box_mask(img, box, loose), raw)


@pytest.mark.parametrize("box", [Box(5, 5, 8, 30, 1), Box(5, 5, 30, 7, 1), Box(0, 0, 40, 40, 1)])
def test_tiny_or_whole_image_box_skips_grabcut(box, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("GrabCut must not run on a degenerate box")

    monkeypatch.setattr(gc, "run_grabcut", fail)
    img, _ = disc_image(size=40, centre=(20, 20), radius=8)
    assert np.array_equal(grabcut_box_mask(img, box, CFG), gc.box_mask(box, (40, 40)))


def test_whole_image_box_through_box_seeds():
    img, _ = disc_image(size=40, centre=(20, 20), radius=8)
    ann = Annotation("x", 40, 40, (Box(0, 0, 40, 40, 5),))
    assert (box_seeds(img, ann, CFG) == 5).all()


def test_compose_overlap_smaller_box_wins():
    shape = (10, 12)
    big, small = Box(1, 1, 11, 9, label=1), Box(4, 3, 8, 7, label=2)
    m_big = gc.box_mask(big, shape) & ~gc.box_mask(Box(1, 1, 3, 9, 0), shape)  # big claims all but 2 columns
    m_small = gc.box_mask(Box(5, 4, 7, 6, 0), shape)  # small claims its centre only
    for order in ((big, small), (small, big)):  # annotation order must not matter
        masks = (m_big, m_small) if order[0] is big else (m_small, m_big)
        m_b = compose_box_seeds(masks, order, shape)
        assert (m_b[4:6, 5:7] == 2).all()  # both claim: the smaller box wins
        assert m_b[3, 4] == 1  # in the small box but only the big box claims it
        assert (m_b[1:9, 1:3] == 255).all()  # inside a box, claimed by none -> unknown
        assert (m_b[~box_union_mask(order, shape)] == 0).all()  # Eq. 3: outside every box -> c_0
        assert m_b.dtype == np.uint8


def test_compose_matches_pixel_loop_reference():
    rng = np.random.default_rng(3)
    shape = (9, 11)
    for _ in range(20):
        boxes = []
        for label in rng.integers(1, 6, size=rng.integers(1, 5)):
            x1, y1 = rng.integers(0, 9), rng.integers(0, 7)
            x2, y2 = rng.integers(x1 + 1, 12), rng.integers(y1 + 1, 10)
            boxes.append(Box(int(x1), int(y1), int(x2), int(y2), int(label)))
        masks = [gc.box_mask(b, shape) & (rng.random(shape) < 0.6) for b in boxes]
        expected = np.zeros(shape, dtype=np.uint8)
        owner = np.full(shape, -1)
        for y in range(shape[0]):
            for x in range(shape[1]):
                inside = [k for k, b in enumerate(boxes) if b.x1 <= x < b.x2 and b.y1 <= y < b.y2]
                if inside:  # the smallest box (latest on ties) containing / claiming the pixel
                    owner[y, x] = min(inside, key=lambda k: (boxes[k].area, -k))
                    claims = [k for k in inside if masks[k][y, x]]
                    best = min(claims, key=lambda k: (boxes[k].area, -k)) if claims else None
                    expected[y, x] = boxes[best].label if claims else 255
        assert np.array_equal(compose_box_seeds(masks, boxes, shape), expected)
        assert np.array_equal(box_owner_map(boxes, shape), owner)


def test_box_seeds_eq3_outside_zero_inside_unknown():
    img, disc = disc_image()
    img2, disc2 = disc_image(size=80, centre=(60, 62), radius=8, seed=1)
    img[disc2] = (40, 40, 220)  # a second, blue object
    ann = Annotation("x", 80, 80, (Box(12, 16, 60, 64, 3), Box(50, 48, 75, 73, 7)))
    m_b = box_seeds(img, ann, CFG, seed=0)
    inside = box_union_mask(ann.boxes, (80, 80))
    assert (m_b[~inside] == 0).all()
    assert set(np.unique(m_b[inside]).tolist()) == {3, 7, 255}
    assert (m_b[disc & inside] == 3).mean() > 0.95 and (m_b[disc2] == 7).mean() > 0.9
    background_in_boxes = inside & ~disc & ~disc2
    assert (m_b[background_in_boxes] == 255).mean() > 0.9
    assert np.array_equal(m_b, box_seeds(img, ann, CFG, seed=0))


def test_zoom_window_geometry():
    shape = (100, 120)  # (H, W)
    box = Box(50, 40, 70, 50, 3)  # 20 x 10: longer side 20
    crop, scale = zoom_window(box, shape, side=80, margin=0.5)
    assert crop == Box(40, 30, 80, 60, 3) and scale == 4.0  # 10 px of context on each side, 20 -> 80 px
    crop, _ = zoom_window(Box(2, 95, 22, 100, 1), shape, side=80, margin=0.5)
    assert crop == Box(0, 85, 32, 100, 1)  # clipped to the image
    assert zoom_window(box, shape, side=20, margin=0.5) is None  # already that large
    assert zoom_window(Box(0, 0, 20, 10, 1), (10, 20), side=80, margin=0.5) is None  # no pixel outside the box


def test_zoom_off_or_large_box_is_plain_grabcut(monkeypatch):
    img, disc = disc_image()
    box = Box(36 - 24, 40 - 24, 36 + 24, 40 + 24, label=3)
    plain = grabcut_box_mask(img, box, CFG, seed=4)
    assert np.array_equal(grabcut_box_mask(img, box, GrabCutConfig(zoom_side=48), seed=4), plain)  # side 48: no zoom
    calls = []
    monkeypatch.setattr(gc, "zoomed_grabcut", lambda *a: calls.append(a) or plain)
    grabcut_box_mask(img, box, GrabCutConfig(zoom_side=49), seed=4)
    assert len(calls) == 1 and calls[0][3] == 49 / 48  # the scale enlarges the 48-px side to 49


@pytest.mark.parametrize("radius", [4, 6, 8])
def test_zoomed_grabcut_recovers_a_small_disc(radius):
    """A disc a few pixels wide (the small COCO objects' regime): the zoomed mask is the disc, not the box."""
    ious = []
    for seed in range(3):
        img, disc = disc_image(size=64, centre=(30, 33), radius=radius, noise=30, seed=seed)
        box = Box(33 - radius - 2, 30 - radius - 2, 33 + radius + 2, 30 + radius + 2, 1)
        mask = grabcut_box_mask(img, box, GrabCutConfig(zoom_side=96), seed=seed)
        assert not mask[~gc.box_mask(box, disc.shape)].any()  # never outside the box
        ious.append((mask & disc).sum() / (mask | disc).sum())
        box_iou = disc.sum() / box.area
    assert np.mean(ious) > 0.8 > box_iou + 0.2  # the box alone: 0.31 / 0.43 / 0.48


def test_config_validation():
    with pytest.raises(ConfigError, match="min_box_iou"):
        GrabCutConfig.from_params({"min_box_iou": 1.5})
    with pytest.raises(ConfigError, match="iterations"):
        GrabCutConfig.from_params({"iterations": 0})
    with pytest.raises(ConfigError, match="zoom_side"):
        GrabCutConfig.from_params({"zoom_side": -1})
    with pytest.raises(ConfigError, match="zoom_margin"):
        GrabCutConfig.from_params({"zoom_margin": 0})
    assert GrabCutConfig.from_params({}) == GrabCutConfig(iterations=5, min_box_iou=0.15)


def test_job_on_a_large_photo_works_at_the_size_the_stages_see(tmp_path):
    """dataset.max_side: the worker reads the full photo and shrinks it to the (resized) annotation's size, so
    M_B lines up with the CAM and the graphs; same result as GrabCut on the shrunk image directly."""
    from PIL import Image

    from a2gnn.data.resize import resize_image
    from a2gnn.core.io import read_label

    big, disc = disc_image(size=160, centre=(80, 72), radius=36)
    Image.fromarray(big).save(tmp_path / "photo.png")
    ann = Annotation("a", 80, 80, (Box(20, 22, 58, 60, label=1),))  # the box of the 2x-shrunk image
    gc.run_box_seed_job(gc.BoxSeedJob(tmp_path / "photo.png", ann, seed=3), CFG, tmp_path / "out")
    m_b = read_label(tmp_path / "out" / "a.png")
    expected = box_seeds(resize_image(big, (80, 80)), ann, CFG, 3)
    assert m_b.shape == (80, 80) and np.array_equal(m_b, expected)
    assert (m_b[disc[::2, ::2]] == 1).mean() > 0.8
