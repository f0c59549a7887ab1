"""Image -> graph: Eq. 14-15 vs direct, L_reg pairs vs a double loop, boxes on the grid, graph building."""

import math

import numpy as np
import pytest
import torch

from a2gnn.affinity.losses import downsample_labels
from a2gnn.affinity.model import AffinityNet
from a2gnn.data.transforms import normalize_image
from a2gnn.core.config import ConfigError
from a2gnn.data.embedded import generate
from a2gnn.data.voc import Annotation, Box, VOCDataset
from a2gnn.graph.build import boxes_to_grid, build_graphs, build_image_graph
from a2gnn.graph.edges import affinity_edges, regulariser_pairs
from a2gnn.graph.features import normalize_node_features
from a2gnn.graph.types import GraphConfig, ImageGraph
from a2gnn.core.io import DataError, read_label, write_label
from helpers import tiny_embedded_config
from helpers import DummyBackbone


def dummy_model() -> AffinityNet:
    torch.manual_seed(0)
    return AffinityNet(DummyBackbone(), (3, 3, 3), 5)


# ---------------------------------------------------------------------------------------------- Eq. 15
def test_eq15_rows_divided_by_their_sum_with_zero_guard():
    x = torch.tensor([[1.0, 3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    got = normalize_node_features(x)
    for n in (0, 2):
        assert torch.allclose(got[n], x[n] / x[n].sum())
    assert torch.equal(got[1], torch.zeros(4))
    assert torch.isfinite(got).all()


# ---------------------------------------------------------------------------------------------- Eq. 14
def test_eq14_edges_match_dense_reference():
    g = torch.Generator().manual_seed(0)
    C, h, w, r = 6, 4, 5, 2
    f = torch.randn(C, h, w, generator=g) * 3
    flat = f.flatten(1)
    D = torch.exp(-(flat[:, :, None] - flat[:, None, :]).abs().sum(0) / C)  # (N, N) Eq. 8
    sigma = float(D.median())  # drops about half the in-radius pairs
    expected = {}
    for i in range(h * w):
        for j in range(h * w):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            if (yi - yj) ** 2 + (xi - xj) ** 2 > r * r:
                continue
            if i == j:
                expected[(i, j)] = 1.0
            elif D[i, j] > sigma:
                expected[(i, j)] = D[i, j].item()
    index, weight = affinity_edges(f, r, sigma)
    assert index.dtype == torch.int64 and weight.dtype == torch.float32
    got = dict(zip(map(tuple, index.t().tolist()), weight.tolist()))
    assert len(got) == index.shape[1]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    keys = index[0] * h * w + index[1]
    assert torch.equal(keys, torch.sort(keys).values)  # sorted by (i, j)
    assert len(expected) < sum(1 for i in range(h * w) for j in range(h * w)
                               if sum((a - b) ** 2 for a, b in zip(divmod(i, w), divmod(j, w))) <= r * r)


def test_eq14_sigma_zero_keeps_every_in_radius_pair():
    f = torch.zeros(2, 3, 3)
    index, weight = affinity_edges(f, 1, 0.0)
    assert index.shape[1] == 9 + 2 * 12  # self loops + both directions of the 12 grid neighbours
    assert torch.all(weight == 1.0)


# ---------------------------------------------------------------------------------------------- L_reg pairs
@pytest.mark.parametrize("squared", [True, False])
def test_regulariser_pairs_match_double_loop(squared):
    g = torch.Generator().manual_seed(1)
    img = torch.rand(3, 3, 4, generator=g)
    r, sxy, srgb = 2, 2.0, 0.4
    index, weight = regulariser_pairs(img, r, sxy, srgb, squared)
    got = dict(zip(map(tuple, index.t().tolist()), weight.tolist()))
    flat = img.flatten(1)
    expected = {}
    for a in range(12):
        for b in range(12):
            (ya, xa), (yb, xb) = divmod(a, 4), divmod(b, 4)
            dxy = (ya - yb) ** 2 + (xa - xb) ** 2
            if a == b or dxy > r * r:
                continue
            drgb = ((flat[:, a] - flat[:, b]) ** 2).sum().item()
            if not squared:
                dxy, drgb = math.sqrt(dxy), math.sqrt(drgb)
            expected[(a, b)] = math.exp(-dxy / (2 * sxy**2) - drgb / (2 * srgb**2))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)


# ---------------------------------------------------------------------------------------------- boxes
def test_boxes_to_grid_hand_examples():
    # 64 x 40 image, stride 8 -> 5 x 8 grid: floor(x1 / 8), ceil(x2 / 8)
    boxes = (Box(9, 0, 17, 40, 3), Box(8, 8, 16, 16, 1), Box(63, 39, 64, 40, 2))
    ann = Annotation("a", width=64, height=40, boxes=boxes)
    assert boxes_to_grid(ann, (5, 8)).tolist() == [[1, 0, 3, 5, 3], [1, 1, 2, 2, 1], [7, 4, 8, 5, 2]]
    # 50 x 37 image -> 7 x 5 grid, stride 8 (cells are 8 x 8 pixel blocks, the last ones cut by the border):
    # x1 = floor(9 / 8) = 1, x2 = ceil(17 / 8) = 3; box x [41, 50) touches cells 5 and 6 (pixels [40, 50))
    ann = Annotation("b", width=50, height=37, boxes=(Box(9, 0, 17, 37, 4), Box(41, 33, 50, 37, 1)))
    assert boxes_to_grid(ann, (5, 7)).tolist() == [[1, 0, 3, 5, 4], [5, 4, 7, 5, 1]]
    # "centre": cells whose centre (a + 1/2) 8 lies in the box: x in [9, 17) holds the centre 12 of cell 1 only
    assert boxes_to_grid(ann, (5, 7), "centre").tolist() == [[1, 0, 2, 5, 4], [5, 4, 6, 5, 1]]


def test_boxes_to_grid_covers_exactly_the_touched_cells():
    rng = np.random.default_rng(0)
    H, W, h, w = 45, 70, 6, 9
    boxes = []
    for _ in range(40):
        x1, y1 = int(rng.integers(0, W - 1)), int(rng.integers(0, H - 1))
        boxes.append(Box(x1, y1, int(rng.integers(x1 + 1, W + 1)), int(rng.integers(y1 + 1, H + 1)), 1))
    got = boxes_to_grid(Annotation("r", W, H, tuple(boxes)), (h, w))
    for box, row in zip(boxes, got.tolist()):
        # stride 8: cell b spans columns [8 b, min(8 (b + 1), W)); it is touched iff that span meets [x1, x2)
        cols = [b for b in range(w) if 8 * b < box.x2 and min(8 * (b + 1), W) > box.x1]
        rows = [a for a in range(h) if 8 * a < box.y2 and min(8 * (a + 1), H) > box.y1]
        assert row == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, 1]


# ---------------------------------------------------------------------------------------------- building
def synthetic_image(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    m_g = np.full((h, w), 255, np.uint8)
    m_g[:, : w // 3] = 0
    m_g[h // 4 : h // 2, w // 2 :] = 2
    return image, m_g


def test_build_image_graph_fields():
    model = dummy_model().train()
    image, m_g = synthetic_image()
    ann = Annotation("img", 56, 40, (Box(20, 5, 56, 30, 2),))
    cfg = GraphConfig.from_params({"radius": 2, "reg_radius": 3, "sigma": 0.0})
    graph = build_image_graph(model, image, m_g, ann, cfg)
    assert model.training  # mode restored
    assert isinstance(graph, ImageGraph) and graph.grid == (5, 7) and graph.image_size == (40, 56)
    N = 35
    assert graph.x.shape == (N, 4 + 6 + 8) and graph.x.dtype == torch.float32
    nonzero = graph.x.sum(1) > 0
    assert torch.allclose(graph.x.sum(1)[nonzero], torch.ones(int(nonzero.sum())))
    assert torch.equal(graph.labels, downsample_labels(m_g, (5, 7)).reshape(-1))
    # the cell centre pixels (8 a + 4, 8 b + 4) give the node labels; the full-size seeds are kept as uint8
    assert torch.equal(graph.labels.view(5, 7), torch.from_numpy(m_g[4::8, 4::8]).long())
    assert graph.seeds.dtype == torch.uint8 and torch.equal(graph.seeds, torch.from_numpy(m_g))
    assert set(graph.labels.tolist()) <= {0, 2, 255}
    assert graph.boxes.tolist() == [[2, 0, 7, 4, 2]]  # floor(20/8), floor(5/8), ceil(56/8), ceil(30/8)
    assert graph.image.shape == (3, 5, 7) and 0 <= graph.image.min() and graph.image.max() <= 1
    # edges: self loops with weight 1, symmetric, and equal to Eq. 14 on the model's F_A
    model.eval()
    with torch.no_grad():
        f_a, taps = model(normalize_image(image)[None])
    ei, ew = affinity_edges(f_a[0], 2, 0.0)
    assert torch.equal(graph.edge_index, ei) and torch.allclose(graph.edge_weight, ew)
    self_loop = graph.edge_index[0] == graph.edge_index[1]
    assert int(self_loop.sum()) == N and torch.all(graph.edge_weight[self_loop] == 1)
    fwd = dict(zip(map(tuple, graph.edge_index.t().tolist()), graph.edge_weight.tolist()))
    assert all(fwd[(j, i)] == pytest.approx(v) for (i, j), v in fwd.items())
    x = AffinityNet.node_features(taps)[0].flatten(1).t()
    assert torch.allclose(graph.x, normalize_node_features(x))
    assert graph.pair_index.shape[1] == graph.pair_weight.shape[0] > 0
    with pytest.raises(ValueError):
        build_image_graph(model, image, m_g[:-1], ann, cfg)


def write_seeds(ds: VOCDataset, seed_dir):
    for image_id in ds.ids:
        gt = ds.semantic_gt(image_id).copy()
        gt[::3] = 255
        write_label(seed_dir / f"{image_id}.png", gt)


def test_build_graphs_batched_matches_single_images(tmp_path):
    root = tmp_path / "same_size"
    generate(tiny_embedded_config(n_train=5, n_val=1, min_size=64, max_size=64), root)  # one size: real batches
    ds = VOCDataset(root, "train")
    seed_dir = tmp_path / "M_g"
    write_seeds(ds, seed_dir)
    model = dummy_model()
    cfg = GraphConfig.from_params({"radius": 2, "reg_radius": 2, "batch_size": 3})
    graphs = build_graphs(model, ds, seed_dir, cfg)
    assert [g.image_id for g in graphs] == ds.ids
    for g in graphs:
        single = build_image_graph(model, ds.image(g.image_id), read_label(seed_dir / f"{g.image_id}.png"),
                                   ds.annotation(g.image_id), cfg)
        assert torch.allclose(g.x, single.x, atol=1e-6) and torch.equal(g.edge_index, single.edge_index)
        assert torch.equal(g.labels, single.labels) and torch.equal(g.boxes, single.boxes)
        assert g.boxes.shape == (len(ds.annotation(g.image_id).boxes), 5)


def test_build_graphs_bad_seed_names_the_file(tiny_voc, tmp_path):
    ds = VOCDataset(tiny_voc, "train")
    seed_dir = tmp_path / "M_g"
    write_seeds(ds, seed_dir)
    bad = seed_dir / f"{ds.ids[1]}.png"
    write_label(bad, np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=ds.ids[1]):
        build_graphs(dummy_model(), ds, seed_dir, GraphConfig())
    bad.unlink()
    with pytest.raises(DataError, match=ds.ids[1]):
        build_graphs(dummy_model(), ds, seed_dir, GraphConfig())


def test_graph_config_validation():
    with pytest.raises(ConfigError, match="sigma"):
        GraphConfig.from_params({"sigma": 1.5})
    with pytest.raises(ConfigError, match="label_downsample"):
        GraphConfig.from_params({"label_downsample": "mean"})
    assert GraphConfig.from_params({}).radius == 5


def test_node_feature_projection_keeps_the_gram_matrix_of_a_low_rank_x():
    """project_node_features against an exact reference: for rank(X) <= k the k principal coordinates have the
    same Gram matrix X X^T (all inner products, hence all cosines, between nodes); k = 0 or k >= D_g is X."""
    from a2gnn.graph.features import project_node_features

    g = torch.Generator().manual_seed(3)
    x = torch.rand(60, 6, generator=g) @ torch.rand(6, 40, generator=g)  # rank 6, non-negative like Eq. 15's X
    z = project_node_features(x, 8)
    assert z.shape == (60, 8)
    torch.testing.assert_close(z @ z.t(), x @ x.t(), rtol=1e-4, atol=1e-4)
    assert torch.equal(project_node_features(x, 0), x) and torch.equal(project_node_features(x, 40), x)
    assert torch.equal(project_node_features(x, 8), z)  # deterministic
    few = x[:5]  # fewer nodes than k (a small or elongated image): all 5 coordinates, zero-padded to k
    z5 = project_node_features(few, 8)
    assert z5.shape == (5, 8) and not z5[:, 5:].any()
    torch.testing.assert_close(z5 @ z5.t(), few @ few.t(), rtol=1e-4, atol=1e-4)
    full = torch.rand(60, 40, generator=g)
    svals = torch.linalg.svdvals(full)
    z3 = project_node_features(full, 3)
    # the captured energy is that of the top-3 singular values (randomized SVD: within 1 %)
    assert abs(float(z3.square().sum()) - float(svals[:3].square().sum())) < 0.01 * float(svals[:3].square().sum())
