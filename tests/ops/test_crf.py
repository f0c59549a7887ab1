"""Dense CRF wrapper: shapes, normalisation, edge-aware sharpening, determinism, worker, config."""

import pickle

import numpy as np
import pytest

from a2gnn.core.config import ConfigError
from a2gnn.ops.crf import CRFConfig, crf_job, crf_labels, crf_labels_job, dense_crf
from a2gnn.core.parallel import parallel_map

H, W, EDGE = 32, 40, 13  # the image's true boundary is the column EDGE, off the noisy map's centre


def two_region_case(seed: int = 0):
    """Image: dark left [0, EDGE), bright right; probs: a blurry boundary at W/2 plus heavy pixel noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((H, W), dtype=np.int64)
    truth[:, EDGE:] = 1
    image = np.where(truth[..., None] == 1, 200, 40) + rng.integers(-10, 11, size=(H, W, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    cols = np.arange(W)[None, :].repeat(H, axis=0)
    p1 = 1 / (1 + np.exp(-(cols - W / 2) / 4.0))  # soft ramp centred at the wrong column
    p1 = np.clip(p1 + rng.normal(0, 0.25, size=(H, W)), 0.02, 0.98)
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    return image, probs, truth


def iou_fg(pred, truth):
    return ((pred == 1) & (truth == 1)).sum() / ((pred == 1) | (truth == 1)).sum()


def test_shapes_and_normalised():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(12, 17, 3), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(4), size=(12, 17)).transpose(2, 0, 1).astype(np.float32)
    q = dense_crf(image, probs, CRFConfig())
    assert q.shape == (4, 12, 17) and q.dtype == np.float32
    assert np.all(q >= 0) and np.all(q <= 1)
    np.testing.assert_allclose(q.sum(axis=0), 1.0, atol=1e-5)
    labels = crf_labels(image, probs, CRFConfig())
    assert labels.shape == (12, 17) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, q.argmax(axis=0))


def test_zero_probabilities_are_clipped_not_infinite():
    image = np.full((6, 7, 3), 100, dtype=np.uint8)
    probs = np.zeros((3, 6, 7), dtype=np.float32)
    probs[2] = 1.0  # classes 0 and 1 have probability exactly 0
    q = dense_crf(image, probs, CRFConfig())
    assert np.isfinite(q).all()
    assert (q.argmax(axis=0) == 2).all()


def test_sharpens_noisy_map_along_image_edge():
    image, probs, truth = two_region_case()
    noisy = probs.argmax(axis=0)
    refined = crf_labels(image, probs, CRFConfig())
    assert iou_fg(noisy, truth) < 0.8  # the test case really is noisy
    assert iou_fg(refined, truth) > 0.95
    assert iou_fg(refined, truth) > iou_fg(noisy, truth) + 0.15
    # it is the colour (bilateral) kernel that moves the boundary onto the image edge
    smoothed_only = crf_labels(image, probs, CRFConfig(bilateral_compat=0.0))
    assert iou_fg(smoothed_only, truth) < 0.85


def test_deterministic():
    image, probs, _ = two_region_case(seed=3)
    np.testing.assert_array_equal(dense_crf(image, probs, CRFConfig()), dense_crf(image, probs, CRFConfig()))


def test_single_class_is_certain():
    image = np.zeros((5, 4, 3), dtype=np.uint8)
    q = dense_crf(image, np.full((1, 5, 4), 0.3, dtype=np.float32), CRFConfig())
    np.testing.assert_array_equal(q, np.ones((1, 5, 4), dtype=np.float32))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        dense_crf(np.zeros((5, 4, 3), np.uint8), np.ones((2, 4, 5), np.float32), CRFConfig())
    with pytest.raises(ValueError):
        dense_crf(np.zeros((5, 4, 3), np.float32), np.ones((2, 5, 4), np.float32), CRFConfig())


def test_parallel_workers_match_direct_call():
    cases = [two_region_case(seed) for seed in (4, 5)]
    cfg = pickle.loads(pickle.dumps(CRFConfig()))
    jobs = [(image, probs, cfg) for image, probs, _ in cases]
    direct = [dense_crf(*job) for job in jobs]
    pooled = parallel_map(crf_job, jobs, workers=2)
    for a, b in zip(direct, pooled):
        np.testing.assert_array_equal(a, b)
    labels = parallel_map(crf_labels_job, jobs, workers=0)
    for a, b in zip(direct, labels):
        np.testing.assert_array_equal(a.argmax(axis=0), b)


def test_scale_with_image():
    assert CRFConfig().spatial_scale(160, 120) == 1.0
    cfg = CRFConfig(scale_with_image=True, reference_size=500)
    assert cfg.spatial_scale(160, 250) == pytest.approx(0.5)


@pytest.mark.parametrize("key,value", [("iterations", 0), ("gaussian_sxy", 0.0), ("bilateral_srgb", -1.0),
                                       ("prob_clip", 0.0), ("bilateral_compat", -1.0), ("reference_size", 0)])
def test_config_rejects_out_of_range(key, value):
    with pytest.raises(ConfigError, match=key):
        CRFConfig.from_params({key: value})


def test_config_rejects_unknown_key():
    with pytest.raises(ConfigError, match="sxy"):
        CRFConfig.from_params({"sxy": 3})
