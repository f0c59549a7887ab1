"""A²GNN layers and network (Eq. 16-19): sparse attention vs a dense loop reference, gradients, shapes."""

import math

import pytest
import torch

from a2gnn.core.config import ConfigError
from a2gnn.gnn.layers import (AffinityAttentionLayer, EdgeCSR, affinity_attention, affinity_attention_composed,
                              edge_dot, propagate)
from a2gnn.gnn.model import A2GNN, BatchedA2GNN, GNNConfig, embedding, init_parameters, output_log_probs
from a2gnn.ops.neighbours import grid_pairs, radius_offsets


pytestmark = pytest.mark.usefixtures("one_thread")


def five_node_graph():
    """5 nodes; node 4 is connected only to itself; features of mixed sign so some cosines are < 0."""
    h = torch.tensor([[1.0, 0.5, -0.2],
                      [0.9, 0.4, 0.1],
                      [-1.0, -0.3, 0.2],   # opposite to nodes 0/1: cos < 0
                      [0.1, 1.0, 0.0],
                      [0.3, -0.7, 0.5]], dtype=torch.float64)
    edges = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 0), (1, 3), (2, 2), (2, 0), (2, 3), (3, 3), (3, 1), (3, 2), (4, 4)]
    edge_index = torch.tensor(edges).t()
    edge_weight = torch.tensor([1.0, 0.8, 0.6, 1.0, 0.8, 0.3, 1.0, 0.6, 0.2, 1.0, 0.3, 0.2, 1.0], dtype=torch.float64)
    return h, edge_index, edge_weight


def dense_eq18(h, edge_index, edge_weight, w, beta, gate=True, use_cos=True, use_edge=True):
    """Eq. (17)-(18) with explicit loops over i and j in S(i)."""
    n = h.shape[0]
    out = torch.zeros_like(h)
    for i in range(n):
        nbrs = [(int(j), float(e)) for (ii, j), e in zip(edge_index.t().tolist(), edge_weight) if ii == i]
        scores = []
        for j, e in nbrs:
            cos = float(torch.dot(h[i], h[j]) / (h[i].norm() * h[j].norm()))
            score = (w * cos if use_cos else 0.0)
            if use_edge:
                score += beta * (float(cos > 0) if (gate and use_cos) else 1.0) * e
            scores.append(score)
        z = sum(math.exp(s) for s in scores)
        for (j, _), s in zip(nbrs, scores):
            out[i] += math.exp(s) / z * h[j]
    return out


@pytest.mark.parametrize("use_cos,use_edge", [(True, True), (True, False), (False, True)])
def test_eq18_sparse_matches_dense(use_cos, use_edge):
    h, ei, e = five_node_graph()
    got = affinity_attention(h, ei, e, torch.tensor(0.7, dtype=torch.float64), 2.5, use_cos, use_edge)
    want = dense_eq18(h, ei, e, 0.7, 2.5, use_cos=use_cos, use_edge=use_edge)
    assert torch.allclose(got, want, atol=1e-12)
    # the isolated node only attends to itself
    assert torch.allclose(got[4], h[4])


def test_eq18_gate_matters_for_negative_cosine():
    h, ei, e = five_node_graph()
    got = affinity_attention(h, ei, e, 0.7, 2.5)
    no_gate = dense_eq18(h, ei, e, 0.7, 2.5, gate=False)
    assert torch.allclose(got, dense_eq18(h, ei, e, 0.7, 2.5, gate=True), atol=1e-12)
    # nodes 0 and 2 have a negative-cosine edge: the gate removes its affinity term and changes their output
    assert not torch.allclose(got[0], no_gate[0], atol=1e-6)
    assert not torch.allclose(got[2], no_gate[2], atol=1e-6)
    # node 1's neighbours (1, 0, 3) all have positive cosine: unaffected
    assert torch.allclose(got[1], no_gate[1], atol=1e-12)


def test_edge_order_does_not_matter():
    h, ei, e = five_node_graph()
    perm = torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(3))
    a = affinity_attention(h, ei, e, 0.4, 10.0)
    b = affinity_attention(h, ei[:, perm], e[perm], 0.4, 10.0)
    assert torch.allclose(a, b, atol=1e-12)


def test_edge_csr_order_and_symmetry():
    h, ei, e = five_node_graph()
    csr, order = EdgeCSR.from_edge_index(ei, 5)
    assert torch.equal(csr.row, ei[0, order]) and torch.equal(csr.col, ei[1, order])
    assert torch.all(csr.row[1:] * 5 + csr.col[1:] > csr.row[:-1] * 5 + csr.col[:-1])
    assert csr.symmetric  # every (i, j) of five_node_graph has its (j, i)
    asym, _ = EdgeCSR.from_edge_index(torch.tensor([[0, 0, 1], [0, 1, 1]]), 2)
    assert not asym.symmetric
    with pytest.raises(ValueError):
        EdgeCSR.from_edge_index(torch.tensor([[0, 5], [0, 0]]), 5)


def test_edge_dot_and_propagate_match_loops():
    h, ei, _ = five_node_graph()
    csr, _ = EdgeCSR.from_edge_index(ei, 5)
    g = torch.arange(15, dtype=torch.float64).view(5, 3) / 7
    dots = edge_dot(csr, h, g)
    want = torch.stack([torch.dot(h[i], g[j]) for i, j in zip(csr.row.tolist(), csr.col.tolist())])
    assert torch.allclose(dots, want)
    vals = torch.linspace(0.1, 1.3, csr.num_edges, dtype=torch.float64)
    out = propagate(csr, vals, g)
    ref = torch.zeros_like(g)
    for v, i, j in zip(vals, csr.row.tolist(), csr.col.tolist()):
        ref[i] += v * g[j]
    assert torch.allclose(out, ref)


@pytest.mark.parametrize("symmetric", [True, False])
def test_gradients_match_composition_and_finite_differences(symmetric):
    ei = grid_pairs(3, 4, radius_offsets(1, include_self=True))
    if not symmetric:
        keep = torch.rand(ei.shape[1], generator=torch.Generator().manual_seed(0)) < 0.7
        ei = torch.cat([ei[:, keep], torch.arange(12).repeat(2, 1)], dim=1).unique(dim=1)
    csr, _ = EdgeCSR.from_edge_index(ei, 12)
    assert csr.symmetric == symmetric
    gen = torch.Generator().manual_seed(1)
    ew = torch.rand(csr.num_edges, generator=gen, dtype=torch.float64)
    h = torch.randn(12, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    fused = affinity_attention(h, csr, ew, w, 3.0)
    composed = affinity_attention_composed(h, csr, ew, w, 3.0)
    gf = torch.autograd.grad(fused.square().sum(), (h, w))
    gc = torch.autograd.grad(composed.square().sum(), (h, w))
    assert torch.allclose(fused, composed) and all(torch.allclose(a, b) for a, b in zip(gf, gc))
    assert torch.autograd.gradcheck(lambda h, w: affinity_attention(h, csr, ew, w, 3.0), (h, w))
    assert torch.autograd.gradcheck(lambda a, b: edge_dot(csr, a, b), (h, h.detach().flip(0).requires_grad_()))
    assert torch.autograd.gradcheck(lambda a: edge_dot(csr, a), (h,))


def test_zero_feature_node_has_zero_cosine_and_finite_gradients():
    h, ei, e = five_node_graph()
    h = h.clone()
    h[1] = 0.0  # e.g. a node whose embedding is all zero after ReLU and dropout
    h.requires_grad_()
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    out = affinity_attention(h, ei, e, w, 2.5)
    # cos(h_0, h_1) = 0, so the gate removes the edge term: node 0 attends to 1 with logit 0
    assert torch.allclose(out, dense_eq18_zero_safe(h.detach(), ei, e, 0.7, 2.5), atol=1e-12)
    gh, gw = torch.autograd.grad(out.square().sum(), (h, w))
    assert torch.isfinite(gh).all() and torch.isfinite(gw)
    csr, order = EdgeCSR.from_edge_index(ei, 5)
    ref = affinity_attention_composed(h, csr, e[order], w, 2.5)
    assert torch.allclose(gh, torch.autograd.grad(ref.square().sum(), h)[0])


def dense_eq18_zero_safe(h, ei, e, w, beta):
    """dense_eq18 with cos = 0 for zero vectors."""
    zero = h.norm(dim=1) == 0
    out = torch.zeros_like(h)
    for i in range(h.shape[0]):
        nbrs = [(int(j), float(x)) for (ii, j), x in zip(ei.t().tolist(), e) if ii == i]
        scores = []
        for j, x in nbrs:
            cos = 0.0 if (zero[i] or zero[j]) else float(torch.cosine_similarity(h[i], h[j], dim=0))
            scores.append(w * cos + beta * float(cos > 0) * x)
        z = sum(math.exp(v) for v in scores)
        for (j, _), v in zip(nbrs, scores):
            out[i] += math.exp(v) / z * h[j]
    return out


def test_layer_parameter_init_and_repr():
    layer = AffinityAttentionLayer(beta=10.0, generator=torch.Generator().manual_seed(0))
    again = AffinityAttentionLayer(beta=10.0, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= layer.w.item() <= 1.0 and layer.w.item() == again.w.item()
    assert "beta=10.0" in repr(layer)
    h, ei, e = five_node_graph()
    csr, order = EdgeCSR.from_edge_index(ei, 5)
    out = layer(h.float(), csr, e[order].float())
    out.sum().backward()
    assert out.shape == (5, 3) and layer.w.grad is not None


def small_graph(h, w, d, seed):
    gen = torch.Generator().manual_seed(seed)
    ei = grid_pairs(h, w, radius_offsets(2, include_self=True))
    csr, order = EdgeCSR.from_edge_index(ei, h * w)
    return torch.rand(h * w, d, generator=gen), csr, torch.rand(ei.shape[1], generator=gen)[order]


@pytest.mark.parametrize("layer_type", ["a2gnn", "agnn", "gcn"])
def test_network_shapes_and_output_distribution(layer_type):
    cfg = GNNConfig(hidden=8, layer_type=layer_type)
    x, csr, ew = small_graph(3, 5, 6, 0)
    model = A2GNN(6, 4, cfg, torch.Generator().manual_seed(0))
    mask = torch.tensor([True, False, True, False])
    log_probs, h = model(x, csr, ew, class_mask=mask)
    assert log_probs.shape == (15, 4) and h.shape == (15, 8)
    probs = log_probs.exp()
    assert torch.allclose(probs.sum(1), torch.ones(15)) and torch.all(probs[:, ~mask] == 0)
    assert torch.all(h >= 0)  # ReLU embedding + convex mixing (or ReLU for gcn) keeps features non-negative


def loop_embedding(x, W0):
    """Eq. (16) with explicit loops: H1[i, f] = max(0, sum_d x[i, d] W0[d, f])."""
    n, d = x.shape
    out = [[max(0.0, sum(float(x[i, k]) * float(W0[k, f]) for k in range(d))) for f in range(W0.shape[1])]
           for i in range(n)]
    return torch.tensor(out, dtype=x.dtype)


def test_eq16_embedding_matches_loops():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    W0 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    got = embedding(x, W0)
    assert torch.allclose(got, loop_embedding(x, W0), atol=1e-12)
    assert (got == 0).any() and (got > 0).any()  # the ReLU is exercised
    hand = embedding(torch.tensor([[1.0, -2.0], [0.5, 0.5]]), torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, 2.0]]))
    assert hand.tolist() == [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]  # rows (1 - 2, -1 - 2, -4), (1, 0, 1)
    lp = output_log_probs(torch.ones(2, 3), torch.eye(3))
    assert torch.allclose(lp.exp(), torch.full((2, 3), 1 / 3))


def test_network_forward_matches_loops_over_windows():
    """Eq. (16)-(19) end to end against loops: embedding + ReLU per node, then per layer and node i the softmax
    over the window S(i) = {j : |Pos(i) - Pos(j)|_2 <= r} of w^l cos + beta [cos > 0] E_ij (E_ij from a table
    keyed by positions), then per node the output softmax."""
    h_grid, w_grid, r, d, f, c = 3, 4, 1.5, 5, 4, 3
    n = h_grid * w_grid
    gen = torch.Generator().manual_seed(8)
    pos = [(a, b) for a in range(h_grid) for b in range(w_grid)]
    window = {i: [j for j in range(n) if (pos[i][0] - pos[j][0]) ** 2 + (pos[i][1] - pos[j][1]) ** 2 <= r * r]
              for i in range(n)}
    weight = {}
    for i in range(n):
        for j in window[i]:
            weight[(i, j)] = weight.get((j, i), 1.0 if i == j else float(torch.rand((), generator=gen)))
    edges = sorted(weight)
    edge_index = torch.tensor(edges).t()
    edge_weight = torch.tensor([weight[e] for e in edges])
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    cfg = GNNConfig(hidden=f, layers=2, beta=2.0)
    model = A2GNN(d, c, cfg, torch.Generator().manual_seed(9)).double()
    csr, order = EdgeCSR.from_edge_index(edge_index, n)
    log_o, h_out = model(x, csr, edge_weight[order].double())

    h = loop_embedding(x, model.W0.detach())
    for layer in range(cfg.layers):
        w_l = float(model.w[layer].detach())
        new = torch.zeros_like(h)
        for i in range(n):
            scores = []
            for j in window[i]:
                ni, nj = float(h[i].norm()), float(h[j].norm())
                cos = float(h[i] @ h[j]) / (ni * nj) if ni > 0 and nj > 0 else 0.0
                scores.append(w_l * cos + cfg.beta * (1.0 if cos > 0 else 0.0) * weight[(i, j)])
            z = sum(math.exp(v) for v in scores)
            for j, v in zip(window[i], scores):
                new[i] += math.exp(v) / z * h[j]
        h = new
    assert torch.allclose(h_out, h, atol=1e-10)
    W_out = model.W_out.detach()
    for i in range(n):
        logits = [float(h[i] @ W_out[:, k]) for k in range(c)]
        z = sum(math.exp(v) for v in logits)
        assert [math.exp(v) / z for v in logits] == pytest.approx(log_o[i].exp().tolist(), abs=1e-10)


def batched_small_graphs(sizes, dim):
    """``small_graph`` per (h, w) in ``sizes``, laid out as BatchedA2GNN takes them: nodes padded to n_max, the
    graphs joined block-diagonally. -> (graphs, x (B, n_max, dim), csr, edge_weight, edge_image, n_max)."""
    graphs = [small_graph(h, w, dim, i) for i, (h, w) in enumerate(sizes)]
    n_max = max(h * w for h, w in sizes)
    x = torch.zeros(len(sizes), n_max, dim)
    rows, cols, ews, imgs = [], [], [], []
    for b, (xb, csr, ew) in enumerate(graphs):
        x[b, : xb.shape[0]] = xb
        rows.append(csr.row + b * n_max), cols.append(csr.col + b * n_max), ews.append(ew)
        imgs.append(torch.full_like(csr.row, b))
    bcsr, order = EdgeCSR.from_edge_index(torch.stack([torch.cat(rows), torch.cat(cols)]), len(sizes) * n_max)
    return graphs, x, bcsr, torch.cat(ews)[order], torch.cat(imgs)[order], n_max


@pytest.mark.parametrize("layer_type", ["a2gnn", "gcn"])
def test_batched_network_equals_per_image_networks(layer_type):
    cfg = GNNConfig(hidden=8, layer_type=layer_type)
    sizes = [(3, 5), (4, 4), (2, 3)]
    graphs, x, bcsr, edge_weight, edge_image, n_max = batched_small_graphs(sizes, 6)
    masks = torch.rand(3, n_max, 8, generator=torch.Generator().manual_seed(9)) * 2
    batched = BatchedA2GNN(6, 4, cfg, [torch.Generator().manual_seed(10 + b) for b in range(3)])
    lp, hb = batched(x, bcsr, edge_weight, edge_image, masks)
    for b, (xb, csr, ew) in enumerate(graphs):
        single = A2GNN(6, 4, cfg, torch.Generator().manual_seed(10 + b))
        n = xb.shape[0]
        lps, hs = single(xb, csr, ew, masks[b, :n])
        assert torch.allclose(lp[b * n_max: b * n_max + n], lps, atol=1e-5)
        assert torch.allclose(hb[b * n_max: b * n_max + n], hs, atol=1e-5)


def test_init_parameters_deterministic_and_ranges():
    cfg = GNNConfig(hidden=16, layers=3)
    a = init_parameters(32, 5, cfg, torch.Generator().manual_seed(4))
    b = init_parameters(32, 5, cfg, torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["W0"].shape == (32, 16) and a["W_out"].shape == (16, 5) and a["w"].shape == (3,)
    assert a["W0"].abs().max() <= math.sqrt(6 / 48) and torch.all((a["w"] >= 0) & (a["w"] <= 1))


@pytest.mark.parametrize("params", [{"layer_type": "gin"}, {"dropout": 1.0}, {"first_phase_epochs": 200},
                                    {"use_cos_term": False, "use_edge_term": False}, {"unknown": 1}])
def test_config_rejects_bad_values(params):
    with pytest.raises(ConfigError):
        GNNConfig.from_params(params)


def test_agnn_is_attention_without_edge_term():
    assert GNNConfig(layer_type="agnn").attention_terms == (True, False)
    assert GNNConfig(use_edge_term=False).attention_terms == (True, False)
    assert GNNConfig().attention_terms == (True, True)


def test_symmetric_self_product_is_computed_once_per_pair_and_equals_the_full_product():
    """On a symmetric pattern <h_i, h_j> is computed over the half row <= col and mirrored: the same values,
    bit for bit, as the full SDDMM and as a per-edge dot product."""
    from a2gnn.gnn.layers import _sddmm
    from a2gnn.ops.neighbours import grid_pairs, radius_offsets

    edge_index = grid_pairs(5, 4, radius_offsets(2, include_self=True))
    csr, _ = EdgeCSR.from_edge_index(edge_index, 20)
    assert csr.symmetric and csr.half.numel() == (csr.num_edges + 20) // 2  # self-edges once, the rest halved
    assert torch.equal(csr.row[csr.half_mirror], csr.col[csr.half]) and torch.equal(csr.col[csr.half_mirror], csr.row[csr.half])
    h = torch.randn(20, 7, generator=torch.Generator().manual_seed(0))
    once = _sddmm(csr, h, h)
    full = _sddmm(csr, h, h.clone())  # b is not a: the full pattern
    assert torch.equal(once, full)
    loop = torch.stack([h[i] @ h[j] for i, j in zip(csr.row.tolist(), csr.col.tolist())])
    torch.testing.assert_close(once, loop)
