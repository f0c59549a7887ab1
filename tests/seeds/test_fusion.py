"""Seed fusion: M_F (Eq. 4), top-ratio M'_I (section 4.2), M_g (Eq. 5)."""

import numpy as np
import pytest

from a2gnn.core.config import ConfigError
from a2gnn.data.voc import Box
from a2gnn.core.io import DataError
from a2gnn.seeds.fusion import (
    SeedsConfig,
    box_class_predicted,
    fuse_seeds,
    read_cam_scores,
    seed_labels,
    select_confident_seeds,
    top_confident_labels,
)

U = 255


def eq4_reference(m_i, m_b, boxes):
    """Eq. (4) evaluated pixel by pixel, cases in order; M_{B_k}(i) = L_{B_k} if M_B(i) = L_{B_k}."""
    m_f = np.full(m_b.shape, U, dtype=np.uint8)
    for y in range(m_b.shape[0]):
        for x in range(m_b.shape[1]):
            inside = [b for b in boxes if b.x1 <= x < b.x2 and b.y1 <= y < b.y2]
            if not inside:
                m_f[y, x] = m_b[y, x]
            elif m_b[y, x] == m_i[y, x]:
                m_f[y, x] = m_i[y, x]
            else:
                for b in inside:
                    predicted = {int(v) for v in m_i[b.y1 : b.y2, b.x1 : b.x2].ravel()}
                    m_bk = b.label if m_b[y, x] == b.label else U
                    if b.label not in predicted and m_bk != U:
                        m_f[y, x] = m_bk
    return m_f


def test_eq4_single_box_cases():
    box = Box(1, 1, 5, 4, label=1)  # x 1..4, y 1..3
    m_b = np.zeros((5, 6), np.uint8)
    m_b[1:4, 1:5] = [[1, 1, U, U], [1, 1, 1, U], [U, 1, 1, 1]]
    m_i = np.zeros((5, 6), np.uint8)
    m_i[1:4, 1:5] = [[1, 0, 0, U], [1, 1, 0, 0], [0, 1, 1, 1]]
    m_i[0, 0] = 1  # outside boxes M_I is ignored
    m_f = fuse_seeds(m_i, m_b, [box])
    expected = np.zeros((5, 6), np.uint8)
    expected[1:4, 1:5] = [[1, U, U, U], [1, 1, U, U], [U, 1, 1, 1]]
    assert np.array_equal(m_f, expected)
    assert np.array_equal(m_f, eq4_reference(m_i, m_b, [box]))


def test_in_box_background_reads_grabcut_background_as_c0():
    """``seeds.in_box_background``: in-box pixels GrabCut (255 in M_B) and the CAM (0) both call background become
    c_0 in M_F, and enter M_g only where M'_I is confident background; off, the paper's M_F has no such label."""
    box = Box(1, 1, 5, 4, label=1)
    m_b = np.zeros((5, 6), np.uint8)
    m_b[1:4, 1:5] = [[1, 1, U, U], [1, 1, 1, U], [U, 1, 1, 1]]
    m_i = np.zeros((5, 6), np.uint8)
    m_i[1:4, 1:5] = [[1, 0, 0, U], [1, 1, 0, 0], [0, 1, 1, 1]]
    paper = fuse_seeds(m_i, m_b, [box])
    ours = fuse_seeds(m_i, m_b, [box], in_box_background=True)
    agree_bg = np.zeros((5, 6), bool)
    agree_bg[1, 3] = agree_bg[2, 4] = agree_bg[3, 1] = True  # M_B 255 and M_I 0 inside the box, by hand
    assert not (paper[agree_bg] == 0).any()
    assert (ours[agree_bg] == 0).all() and np.array_equal(ours[~agree_bg], paper[~agree_bg])
    assert ours[1, 4] == U  # M_I 255 there: no agreement
    cams = np.full((1, 5, 6), 0.5, np.float32)  # background score 1 - 0.5 on the 18 pixels outside the box
    cams[0, 1:4, 1:5] = 0.9
    cams[0, 2, 4] = 0.0  # the one in-box agreement the CAM is sure is background (score 1)
    # M'_I's background threshold over the 23 pixels with M_I = 0: the 0.96 quantile, 0.5 + 0.12 * 0.5 = 0.56
    cfg = SeedsConfig(top_ratio=0.04, in_box_background=True)
    _, m_g = seed_labels(m_i, cams, np.array([1]), m_b, [box], cfg)
    assert m_g[2, 4] == 0 and m_g[1, 3] == U and m_g[3, 1] == U
    _, m_g_paper = seed_labels(m_i, cams, np.array([1]), m_b, [box], SeedsConfig(top_ratio=0.04))
    assert m_g_paper[2, 4] == U


def test_eq4_box_class_missed_by_cam_uses_box_seeds():
    box = Box(0, 0, 4, 3, label=2)
    m_b = np.array([[2, 2, U, U, 0], [2, 2, 2, U, 0], [U, 2, 2, 2, 0]], np.uint8)
    m_i = np.array([[5, 5, 0, 0, 0], [5, 0, 0, 0, 0], [0, 0, 0, 0, 5]], np.uint8)  # CAM says 5, never 2, in B
    assert not box_class_predicted(m_i, [box])[0]
    m_f = fuse_seeds(m_i, m_b, [box])
    expected = m_b.copy()  # case 3 inside the box (2 / 255), case 1 outside
    assert np.array_equal(m_f, expected)
    m_i[2, 3] = 2  # now M_I predicts the box class once: case 3 is off, only agreements survive
    assert np.array_equal(fuse_seeds(m_i, m_b, [box])[:3, :4], np.where(m_b == m_i, m_b, U)[:3, :4])


def test_eq4_overlapping_boxes():
    big, small = Box(0, 0, 6, 4, label=1), Box(3, 1, 6, 4, label=2)  # CAM finds class 1, misses class 2
    m_b = np.array(
        [[1, 1, 1, 1, U, U], [1, 1, U, 2, 2, 1], [1, 1, U, 2, 1, U], [U, U, U, U, U, 1]], np.uint8
    )
    m_i = np.array(
        [[1, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], np.uint8
    )
    m_f = fuse_seeds(m_i, m_b, [big, small])
    assert m_f[1, 3] == 2 and m_f[1, 4] == 2  # small box's class, missed by the CAM: case 3 from M_B
    assert m_f[1, 5] == 1  # in both boxes, M_B = M_I = 1: case 2
    assert m_f[2, 4] == U  # in both boxes, M_B = 1 != M_I and M_{B_small} = 255: nothing applies
    assert m_f[2, 3] == 2  # M_I = 1 (big box's class) but M_B says 2 and class 2 is missed: case 3
    assert m_f[0, 2] == U  # M_B = 1 != M_I = 0 in the matched big box
    assert np.array_equal(m_f, eq4_reference(m_i, m_b, [big, small]))


def test_eq4_matches_pixel_loop_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(25):
        shape = (7, 9)
        boxes = []
        for label in rng.integers(1, 4, size=rng.integers(1, 4)):
            x1, y1 = rng.integers(0, 8), rng.integers(0, 6)
            boxes.append(Box(int(x1), int(y1), int(rng.integers(x1 + 1, 10)), int(rng.integers(y1 + 1, 8)), int(label)))
        m_b = rng.choice([0, 1, 2, 3, U], size=shape).astype(np.uint8)
        m_i = rng.choice([0, 1, 2, 3, U], size=shape, p=[0.4, 0.15, 0.15, 0.15, 0.15]).astype(np.uint8)
        assert np.array_equal(fuse_seeds(m_i, m_b, boxes), eq4_reference(m_i, m_b, boxes))


def top_reference(m_i, cams, labels, ratio, population):
    """M'_I with an explicit np.percentile per class and a pixel loop."""
    scores = {0: 1.0 - cams.max(axis=0)} | {int(c): cams[k] for k, c in enumerate(labels)}
    out = np.full(m_i.shape, U, np.uint8)
    for c, s in scores.items():
        pool = s[m_i == c] if population == "label" else s.ravel()
        if pool.size == 0:
            continue
        t = np.percentile(pool, 100 * (1 - ratio))
        for y in range(m_i.shape[0]):
            for x in range(m_i.shape[1]):
                if m_i[y, x] == c and s[y, x] >= t:
                    out[y, x] = c
    return out


@pytest.mark.parametrize("population", ["label", "image"])
@pytest.mark.parametrize("ratio", [0.4, 0.25, 1.0])
def test_top_ratio_matches_percentile(population, ratio):
    rng = np.random.default_rng(1)
    cams = rng.random((2, 8, 10)).astype(np.float16).astype(np.float32)
    labels = np.array([3, 7])
    m_i = rng.choice([0, 3, 7, 9, U], size=(8, 10)).astype(np.uint8)  # 9: no CAM channel -> never confident
    got = top_confident_labels(m_i, cams, labels, ratio, population)
    assert np.array_equal(got, top_reference(m_i, cams, labels, ratio, population))
    assert not np.isin(got, [9]).any() and (got[m_i == U] == U).all()
    assert ((got == m_i) | (got == U)).all()


def test_top_ratio_keeps_forty_percent_of_a_class():
    m_i = np.array([[1] * 10], np.uint8)
    cams = np.linspace(0.1, 1.0, 10, dtype=np.float32).reshape(1, 1, 10)
    got = top_confident_labels(m_i, cams, np.array([1]), 0.4, "label")
    assert np.array_equal(got[0], [U] * 6 + [1] * 4)


def test_eq5_selection():
    m_f = np.array([[0, 1, 1, 2, U]], np.uint8)
    m_b = np.array([[0, 1, U, U, U]], np.uint8)
    m_top = np.array([[U, U, 1, 3, U]], np.uint8)
    assert np.array_equal(select_confident_seeds(m_f, m_b, m_top), [[0, 1, 1, U, U]])
    trusted = np.array([[True, False, False, False, False]])
    assert np.array_equal(select_confident_seeds(m_f, m_b, m_top, trusted), [[0, U, 1, U, U]])


def _scene():
    """Two boxes: class 1 found by the CAM, class 2 missed."""
    boxes = [Box(0, 0, 4, 4, 1), Box(5, 0, 8, 3, 2)]
    m_b = np.zeros((5, 9), np.uint8)
    m_b[0:4, 0:4] = 1
    m_b[0:4, 3] = U
    m_b[0:3, 5:8] = 2
    m_i = np.zeros((5, 9), np.uint8)
    m_i[0:4, 0:4] = 1
    cams = np.zeros((1, 5, 9), np.float32)
    cams[0, 0:4, 0:4] = np.arange(16).reshape(4, 4) / 15.0
    return m_i, cams, np.array([1]), m_b, boxes


def test_seed_labels_literal_eq5_keeps_all_of_m_f():
    m_i, cams, labels, m_b, boxes = _scene()
    m_f, m_g = seed_labels(m_i, cams, labels, m_b, boxes, SeedsConfig(confirm_in_boxes=False))
    assert np.array_equal(m_g, m_f)  # the documented identity of literal Eq. (5) on Eq. (4)'s output


def test_seed_labels_confirm_in_boxes():
    m_i, cams, labels, m_b, boxes = _scene()
    m_f, m_g = seed_labels(m_i, cams, labels, m_b, boxes, SeedsConfig())
    assert (m_f[0:4, 0:3] == 1).all() and (m_f[0:3, 5:8] == 2).all()
    assert (m_g[0:3, 5:8] == 2).all()  # class missed by the CAM: box seeds kept (case 3)
    assert (m_g[4] == 0).all() and (m_g[:, 8] == 0).all()  # outside boxes: background kept
    kept = m_g[0:4, 0:3] == 1
    # case 2 (CAM = GrabCut = 1) needs M'_I: the top 40 % of the 16 CAM values of M_I = 1 are 9/15 .. 15/15
    assert np.array_equal(kept, (np.arange(16).reshape(4, 4) >= 9)[:, :3])
    assert (m_g[0:4, 3] == U).all()  # M_B = 255 there, M_I = 1: no case applies


def test_read_cam_scores_errors(tmp_path):
    with pytest.raises(DataError, match="a.npz"):
        read_cam_scores(tmp_path / "a.npz", (4, 5), 21)
    bad = tmp_path / "b.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="b.npz"):
        read_cam_scores(bad, (4, 5), 21)
    wrong = tmp_path / "c.npz"
    np.savez(wrong, cams=np.zeros((1, 4, 6), np.float16), labels=np.array([1]))
    with pytest.raises(DataError, match="c.npz"):
        read_cam_scores(wrong, (4, 5), 21)
    np.savez(wrong, cams=np.zeros((1, 4, 5), np.float16), labels=np.array([21]))
    with pytest.raises(DataError, match="labels"):
        read_cam_scores(wrong, (4, 5), 21)
    ok = tmp_path / "d.npz"
    np.savez(ok, cams=np.full((2, 4, 5), 0.5, np.float16), labels=np.array([3, 1]))
    cams, labels = read_cam_scores(ok, (4, 5), 21)
    assert cams.dtype == np.float32 and labels.tolist() == [3, 1]


def test_config_validation():
    with pytest.raises(ConfigError, match="top_ratio"):
        SeedsConfig.from_params({"top_ratio": 0})
    with pytest.raises(ConfigError, match="top_population"):
        SeedsConfig.from_params({"top_population": "box"})
