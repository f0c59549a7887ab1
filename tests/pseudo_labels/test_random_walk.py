"""Random-walk baseline (PSA/SEAM): transition matrix, walk vs dense matrix power, pooling, full inference."""

import numpy as np
import pytest
import torch

from a2gnn.core.config import ConfigError
from a2gnn.ops.grid import infer_stride
from a2gnn.pseudo_labels.random_walk import (
    RandomWalkConfig,
    background_score,
    cam_to_grid,
    propagate_cams,
    random_walk,
    random_walk_labels,
    transition_matrix,
)


def dense_graph_edges(dense: torch.Tensor):
    """(N, N) affinity D[i, j] (target i, source j), zeros = no edge -> edge_index (2, E), affinity (E,)."""
    i, j = dense.nonzero(as_tuple=True)
    return torch.stack([i, j]), dense[i, j]


def six_node_affinity(symmetric: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.rand(6, 6, generator=g) * (torch.rand(6, 6, generator=g) > 0.4)
    if symmetric:
        d = torch.maximum(d, d.t())
    d.fill_diagonal_(1.0)
    return d


def grid_edges(h: int, w: int, weight_fn):
    """4-neighbour grid graph plus self loops; weight_fn(col_i, col_j) -> affinity per edge (vectorised)."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    edges = []
    for dr, dc in ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)):
        r2, c2 = rows + dr, cols + dc
        ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
        edges.append(torch.stack([rows[ok] * w + cols[ok], r2[ok] * w + c2[ok]]))
    edge_index = torch.cat(edges, dim=1)
    return edge_index, weight_fn(edge_index[0] % w, edge_index[1] % w)


def test_columns_sum_to_one():
    edge_index, aff = dense_graph_edges(six_node_affinity(symmetric=False))
    t = transition_matrix(edge_index, aff, 6, beta=8.0)
    assert t.is_sparse and t.shape == (6, 6)
    torch.testing.assert_close(t.to_dense().sum(dim=0), torch.ones(6))


@pytest.mark.parametrize("logt", [0, 1, 3])
def test_matches_psa_dense_reference(logt):
    beta = 8.0
    d = six_node_affinity(symmetric=True).double()
    edge_index, aff = dense_graph_edges(d)
    # PSA: T = D^beta / column sums, then logt squarings, s_rw = s @ T
    ref_t = d**beta / (d**beta).sum(dim=0, keepdim=True)
    power = ref_t.clone()
    for _ in range(logt):
        power = power @ power
    scores = torch.rand(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = transition_matrix(edge_index, aff, 6, beta)
    torch.testing.assert_close(t.to_dense().double(), ref_t, atol=1e-6, rtol=1e-5)
    out = random_walk(scores.float(), t, 2**logt)
    torch.testing.assert_close(out.double(), scores @ power, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.double(), scores @ torch.linalg.matrix_power(ref_t, 2**logt), atol=1e-5, rtol=1e-4)


def test_direction_on_asymmetric_affinity():
    """Node i collects from its sources j with weights D(i, j)^beta normalised over j."""
    d = six_node_affinity(symmetric=False).double()
    edge_index, aff = dense_graph_edges(d)
    w = d**2.0
    ref = (w / w.sum(dim=1, keepdim=True)).t()  # ref[j, i]
    t = transition_matrix(edge_index, aff, 6, beta=2.0).to_dense().double()
    torch.testing.assert_close(t, ref, atol=1e-6, rtol=1e-5)
    scores = torch.rand(2, 6, generator=torch.Generator().manual_seed(2))
    loop = torch.stack([(w[i] * scores).sum(dim=1) / w[i].sum() for i in range(6)], dim=1)  # one step, per node
    torch.testing.assert_close(random_walk(scores, transition_matrix(edge_index, aff, 6, 2.0), 1).double(),
                               loop.double(), atol=1e-6, rtol=1e-5)


def test_propagates_along_strong_edges_not_across_weak():
    # chain 0-1-2 =weak= 3-4-5, self loops 1
    i = torch.tensor([0, 1, 1, 2, 2, 3, 3, 4, 4, 5])
    j = torch.tensor([1, 0, 2, 1, 3, 2, 4, 3, 5, 4])
    strong, weak = 0.95, 0.05
    aff = torch.full((10,), strong)
    aff[((i == 2) & (j == 3)) | ((i == 3) & (j == 2))] = weak
    loops = torch.arange(6)
    edge_index = torch.cat([torch.stack([i, j]), torch.stack([loops, loops])], dim=1)
    aff = torch.cat([aff, torch.ones(6)])
    scores = torch.zeros(2, 6)
    scores[0, 0] = 1.0  # class A seeded at node 0
    scores[1, 5] = 1.0  # class B seeded at node 5
    out = random_walk(scores, transition_matrix(edge_index, aff, 6, beta=8.0), 64)
    assert (out[0, :3] > 0.2).all() and (out[1, 3:] > 0.2).all()  # reached the far end of its own chain
    assert (out[0, 3:] < 1e-6).all() and (out[1, :3] < 1e-6).all()  # nothing leaked across the weak edge
    assert out.argmax(dim=0).tolist() == [0, 0, 0, 1, 1, 1]


def test_isolated_node_raises():
    edge_index = torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="node 2"):
        transition_matrix(edge_index, torch.ones(2), 3, beta=8.0)


def test_cam_to_grid_matches_loop_reference():
    cams = torch.rand(2, 10, 13, generator=torch.Generator().manual_seed(3))
    out = cam_to_grid(cams, (3, 4), stride=4)
    ref = torch.zeros(2, 3, 4)
    for r in range(3):
        for c in range(4):
            ref[:, r, c] = cams[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean(dim=(1, 2))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(cam_to_grid(cams, (3, 4)), ref)  # stride inferred


def test_infer_stride():
    assert infer_stride((375, 500), (47, 63)) == 8
    assert infer_stride((160, 160), (20, 20)) == 8
    with pytest.raises(ValueError):
        infer_stride((160, 160), (20, 7))


def test_background_score():
    cams = torch.tensor([[[0.0, 0.5]], [[0.2, 0.9]]])
    torch.testing.assert_close(background_score(cams, 2.0), torch.tensor([[0.64, 0.01]]))
    torch.testing.assert_close(background_score(torch.zeros(0, 2, 3), 6.0), torch.ones(2, 3))


def test_rw_fills_hole_inside_strongly_connected_region():
    """24x24 image, 6x6 grid (stride 4); grid columns 0-3 and 4-5 are joined only by weak edges."""
    edge_index, aff = grid_edges(6, 6, lambda ci, cj: torch.where((ci < 4) == (cj < 4), 0.95, 0.02))
    cams = np.zeros((1, 24, 24), dtype=np.float32)
    cams[0, :, :16] = 0.9  # the object covers grid columns 0-3 ...
    cams[0, 4:12, 0:8] = 0.0  # ... but its CAM has a 2x2-cell hole (grid rows 1-2, columns 0-1)
    cfg = RandomWalkConfig()
    labels = random_walk_labels(cams, [7], edge_index, aff, (6, 6), cfg)
    assert labels.shape == (24, 24) and labels.dtype == np.uint8
    assert (labels[:, :14] == 7).all()  # hole filled from its strongly connected neighbours
    assert (labels[:, 18:] == 0).all()  # background stays background across the weak edges
    one_step = random_walk_labels(cams, [7], edge_index, aff, (6, 6), RandomWalkConfig(logt=0))
    assert (one_step[6:10, 2:6] == 0).all()  # a single step does not reach the hole's centre
    scores = propagate_cams(cams, edge_index, aff, (6, 6), cfg)
    assert scores.shape == (2, 24, 24)
    torch.testing.assert_close(scores, propagate_cams(torch.from_numpy(cams), edge_index, aff, (6, 6), cfg, stride=4))


def test_steps_and_config():
    assert RandomWalkConfig(logt=6).steps == 64 and RandomWalkConfig().steps == 2 ** RandomWalkConfig().logt
    assert RandomWalkConfig(logt=8).steps == 256
    with pytest.raises(ConfigError, match="beta"):
        RandomWalkConfig.from_params({"beta": 0})
    with pytest.raises(ConfigError, match="logt"):
        RandomWalkConfig.from_params({"logt": -1})
