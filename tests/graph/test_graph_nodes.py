"""Table 4(c) graph variants: L1-distance edges on feature-map nodes (graph.edges) and superpixel graphs."""

import math

import numpy as np
import pytest
import torch

from a2gnn.affinity.model import AffinityNet
from a2gnn.data.transforms import normalize_image
from a2gnn.core.config import ConfigError
from a2gnn.data.voc import Annotation, Box
from a2gnn.graph.build import boxes_to_grid, build_image_graph
from a2gnn.graph.edges import affinity_edges, l1_edges, regulariser_pairs
from a2gnn.graph.features import normalize_node_features
from a2gnn.graph.types import EDGE_SOURCES, GraphConfig
from a2gnn.ops.grid import GridMap
from a2gnn.graph.superpixels import (
    grid_nodes,
    pool_features,
    slic,
    superpixel_adjacency,
    superpixel_edges,
    superpixel_graph,
    superpixel_labels,
    superpixels_to_pixels,
)
from test_graph import dummy_model, synthetic_image


# ---------------------------------------------------------------------------------------------- l1 edges
def _l1_reference(x_map, radius, sigma, scale):
    """Explicit loop over nodes and their radius-r neighbours: {(i, j): E_ij}."""
    D, h, w = x_map.shape
    flat = x_map.reshape(D, h * w)
    pairs = [(i, j) for i in range(h * w) for j in range(h * w)
             if (i // w - j // w) ** 2 + (i % w - j % w) ** 2 <= radius * radius]
    dist = {(i, j): (flat[:, i] - flat[:, j]).abs().sum().item() for i, j in pairs}
    off_diagonal = [d for (i, j), d in dist.items() if i != j]
    mean = sum(off_diagonal) / len(off_diagonal)
    expected = {}
    for (i, j), d in dist.items():
        weight = 1.0 if i == j else (math.exp(-d / (scale * mean)) if mean > 0 else 1.0)
        if i == j or weight > sigma:
            expected[(i, j)] = weight
    return expected


@pytest.mark.parametrize("radius, sigma, scale", [(1, 0.0, 1.0), (2, 0.4, 0.5)])
def test_l1_edges_match_a_loop_over_nodes_and_neighbours(radius, sigma, scale):
    # a tiny hand-made 3 x 4 map: two flat regions (left, right) and one odd pixel
    x = torch.zeros(3, 3, 4)
    x[0, :, :2] = 1.0
    x[1, :, 2:] = 1.0
    x[:, 1, 3] = torch.tensor([0.2, 0.3, 0.5])
    x[2] += 0.05 * torch.arange(12.0).view(3, 4)
    index, weight = l1_edges(x, radius, sigma, scale)
    assert index.dtype == torch.int64 and weight.dtype == torch.float32
    got = dict(zip(map(tuple, index.t().tolist()), weight.tolist()))
    assert len(got) == index.shape[1]
    expected = _l1_reference(x, radius, sigma, scale)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    keys = index[0] * 12 + index[1]
    assert torch.equal(keys, torch.sort(keys).values)  # sorted by (i, j), like affinity_edges
    if sigma > 0:
        assert len(expected) < len(_l1_reference(x, radius, 0.0, scale))  # the cut drops some pairs
    # same neighbourhoods as Eq. 14 (sigma = 0 keeps every in-radius pair)
    assert torch.equal(l1_edges(x, radius, 0.0, scale)[0], affinity_edges(torch.zeros(1, 3, 4), radius, 0.0)[0])


def test_l1_edges_scale_invariant_and_constant_features():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 4, 6, generator=g)
    i1, w1 = l1_edges(x, 2, 0.0)
    i2, w2 = l1_edges(7.0 * x, 2, 0.0)
    assert torch.equal(i1, i2) and torch.allclose(w1, w2)  # the per-image mean distance absorbs the scale
    index, weight = l1_edges(torch.ones(3, 3, 3), 1, 0.5)
    assert index.shape[1] == 9 + 2 * 12 and torch.all(weight == 1)  # equal features: every edge 1


def test_edge_source_registry_and_config():
    assert set(EDGE_SOURCES) == {"affinity", "l1"}
    assert GraphConfig().edges == "affinity" and GraphConfig().l1_scale == 1.0
    with pytest.raises(ConfigError, match="edges"):
        GraphConfig.from_params({"edges": "superpixel"})
    with pytest.raises(ConfigError, match="l1_scale"):
        GraphConfig.from_params({"l1_scale": 0})


def _reference_graph_fields(model, image, m_g, ann, cfg):
    """The graph as built before graph.edges existed: Eq. 14 on F_A, Eq. 15 on the taps (same calls, same order)."""
    model.eval()
    with torch.no_grad():
        f_a, taps = model(normalize_image(image)[None])
    feats = AffinityNet.node_features(taps)[0]
    f_a = f_a[0]
    h, w = f_a.shape[-2:]
    mapping = GridMap.from_sizes(image.shape[:2], (h, w))
    edge_index, edge_weight = affinity_edges(f_a, cfg.radius, cfg.sigma)
    colours = mapping.downsample_image(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0))
    pair_index, pair_weight = regulariser_pairs(colours, cfg.reg_radius, cfg.reg_sigma_xy, cfg.reg_sigma_rgb,
                                                cfg.reg_squared_distance)
    x = normalize_node_features(feats.reshape(feats.shape[0], h * w).t().float())
    return dict(x=x, edge_index=edge_index, edge_weight=edge_weight,
                labels=mapping.downsample_labels(m_g, cfg.label_downsample).reshape(-1),
                boxes=boxes_to_grid(ann, (h, w), cfg.box_cells), pair_index=pair_index, pair_weight=pair_weight,
                image=colours)


def test_default_affinity_edges_give_the_graph_as_before_and_l1_only_changes_edges():
    model = dummy_model()
    image, m_g = synthetic_image()
    ann = Annotation("img", 56, 40, (Box(20, 5, 56, 30, 2),))
    cfg = GraphConfig.from_params({"radius": 2, "reg_radius": 3})
    assert cfg.edges == "affinity"
    graph = build_image_graph(model, image, m_g, ann, cfg)
    reference = _reference_graph_fields(model, image, m_g, ann, cfg)
    for name, value in reference.items():
        assert torch.equal(getattr(graph, name), value), name  # bit-identical
    l1 = build_image_graph(model, image, m_g, ann, GraphConfig.from_params({"radius": 2, "reg_radius": 3,
                                                                            "edges": "l1"}))
    for name in ("x", "labels", "boxes", "pair_index", "pair_weight", "image"):
        assert torch.equal(getattr(l1, name), reference[name]), name
    h, w = graph.grid
    ei, ew = l1_edges(reference["x"].t().reshape(-1, h, w), 2, cfg.sigma, 1.0)
    assert torch.equal(l1.edge_index, ei) and torch.equal(l1.edge_weight, ew)
    assert not (l1.edge_weight.shape == graph.edge_weight.shape and torch.equal(l1.edge_weight, graph.edge_weight))


# ---------------------------------------------------------------------------------------------- superpixels
def blocks_image(seed=0):
    """48 x 64 image of four flat colour blocks plus mild noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((48, 64, 3), np.float64)
    image[:24, :32] = (200, 40, 40)
    image[:24, 32:] = (40, 200, 40)
    image[24:, :40] = (40, 40, 200)
    image[24:, 40:] = (220, 220, 60)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def _components(mask):
    """Number of 4-connected components of a boolean mask (flood fill)."""
    seen, count = np.zeros_like(mask), 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            a, b = stack.pop()
            for c, d in ((a - 1, b), (a + 1, b), (a, b - 1), (a, b + 1)):
                if 0 <= c < mask.shape[0] and 0 <= d < mask.shape[1] and mask[c, d] and not seen[c, d]:
                    seen[c, d] = True
                    stack.append((c, d))
    return count


def test_slic_labels_cover_the_image_connected_deterministic():
    image = blocks_image()
    labels = slic(image, n_segments=12)
    assert labels.shape == (48, 64) and labels.dtype == np.int64
    K = int(labels.max()) + 1
    assert labels.min() == 0 and set(np.unique(labels)) == set(range(K)) and 4 <= K <= 20
    assert all(_components(labels == k) == 1 for k in range(K))  # every superpixel is one connected piece
    _, first = np.unique(labels, return_index=True)
    assert np.all(np.diff(first) > 0)  # numbered in raster order of their first pixel
    assert np.array_equal(slic(image.copy(), n_segments=12), labels)  # deterministic
    # superpixels follow the colour edges: almost no superpixel straddles two blocks
    block = np.zeros((48, 64), int)
    block[:24, 32:], block[24:, :40], block[24:, 40:] = 1, 2, 3
    purity = sum(np.bincount(block[labels == k]).max() for k in range(K)) / labels.size
    assert purity > 0.95


def test_superpixel_adjacency_matches_a_pixel_loop():
    labels = slic(blocks_image(1), n_segments=16)
    H, W = labels.shape
    for connectivity, steps in ((4, ((0, 1), (1, 0))), (8, ((0, 1), (1, 0), (1, 1), (1, -1)))):
        expected = set()
        for y in range(H):
            for x in range(W):
                for dy, dx in steps:
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < H and 0 <= xx < W and labels[y, x] != labels[yy, xx]:
                        expected |= {(int(labels[y, x]), int(labels[yy, xx])), (int(labels[yy, xx]), int(labels[y, x]))}
        adj = superpixel_adjacency(labels, connectivity)
        got = list(map(tuple, adj.t().tolist()))
        assert got == sorted(expected)  # symmetric, no self pairs, sorted by (a, b)
    with pytest.raises(ValueError):
        superpixel_adjacency(labels, 6)


def test_pool_features_equal_a_loop_over_pixels():
    labels = slic(blocks_image(2), n_segments=10)
    g = torch.Generator().manual_seed(0)
    # features on the stride-8 grid of the 48 x 64 image (6 x 8) and at full resolution
    for feats, stride in ((torch.rand(5, 6, 8, generator=g), 8), (torch.rand(3, 48, 64, generator=g), 1)):
        got = pool_features(feats, labels, normalize=False)
        K = int(labels.max()) + 1
        assert got.shape == (K, feats.shape[0])
        for k in range(K):
            ys, xs = np.nonzero(labels == k)
            mean = torch.stack([feats[:, y // stride, x // stride] for y, x in zip(ys, xs)]).mean(0)
            assert torch.allclose(got[k], mean, atol=1e-6)
        assert torch.allclose(pool_features(feats, labels), normalize_node_features(got))


def test_superpixel_edges_labels_and_mappings():
    labels = slic(blocks_image(3), n_segments=12)
    K = int(labels.max()) + 1
    g = torch.Generator().manual_seed(1)
    x = torch.rand(K, 4, generator=g)
    adj = superpixel_adjacency(labels)
    index, weight = superpixel_edges(x, adj, sigma=0.3, scale=0.8)
    dists = {(a, b): (x[a] - x[b]).abs().sum().item() for a, b in adj.t().tolist()}
    mean = sum(dists.values()) / len(dists)
    expected = {(k, k): 1.0 for k in range(K)}
    for key, d in dists.items():
        if math.exp(-d / (0.8 * mean)) > 0.3:
            expected[key] = math.exp(-d / (0.8 * mean))
    got = dict(zip(map(tuple, index.t().tolist()), weight.tolist()))
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(v, rel=1e-5) for k, v in expected.items())
    assert all((b, a) in got for a, b in got)  # symmetric
    # node labels: majority of the labelled pixels, 255 where none is labelled
    m_g = np.full(labels.shape, 255, np.uint8)
    m_g[:, :20] = 3
    m_g[:10, :5] = 1
    node = superpixel_labels(m_g, labels)
    for k in range(K):
        seeds = m_g[labels == k]
        seeds = seeds[seeds != 255]
        assert node[k].item() == (np.bincount(seeds).argmax() if seeds.size else 255)
    # back to pixels and to the feature grid
    values = torch.arange(K) * 10
    assert torch.equal(superpixels_to_pixels(values, labels), torch.from_numpy(labels) * 10)
    cell = grid_nodes(labels, (6, 8))
    assert cell.shape == (48,) and torch.equal(cell.view(6, 8), torch.from_numpy(labels[4::8, 4::8]))


def test_superpixel_graph_end_to_end():
    image = blocks_image(4)
    feats = torch.rand(6, 6, 8, generator=torch.Generator().manual_seed(2))
    graph = superpixel_graph(image, feats, n_segments=12)
    K = int(graph["superpixels"].max()) + 1
    assert graph["x"].shape == (K, 6) and graph["labels"].tolist() == [255] * K
    assert int((graph["edge_index"][0] == graph["edge_index"][1]).sum()) == K
    assert graph["cell_node"].shape == (48,) and int(graph["cell_node"].max()) < K
