"""GAT layer type (Fig. 7): vectorised layer == explicit loops (values and gradients), batched == per image,
parameter draws, and a tiny training run."""

import math

import pytest
import torch

from a2gnn.gnn.gat import gat_attention, gat_layer, gat_scores, per_image_matmul
from a2gnn.gnn.layers import EdgeCSR
from a2gnn.gnn.model import A2GNN, BatchedA2GNN, GNNConfig, init_parameters
from a2gnn.gnn.train import train_a2gnn, train_a2gnn_single
from test_gnn_layers import batched_small_graphs, small_graph
from test_gnn_train import three_graphs


pytestmark = pytest.mark.usefixtures("one_thread")


# hand-built 5-node directed graph (target i, source j), self loops included; node 4 has only its self loop,
# node 3 has an in-edge from 4 but 4 none from 3 (asymmetric pattern, so the transposed kernels are exercised)
EDGES = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 3), (2, 2), (2, 0), (2, 1), (2, 3),
         (3, 3), (3, 1), (3, 4), (4, 4)]


def neighbours(i):
    return [j for t, j in EDGES if t == i]


def loop_gat(h, weight, a_src, a_dst, slope=0.2):
    """GAT (Veličković et al. 2018, Eq. 1-4, one head) node by node: z = h W, e_ij = LeakyReLU(a_dst.z_i +
    a_src.z_j), alpha_ij = exp(e_ij) / sum_k exp(e_ik) over S(i), out_i = ELU(sum_j alpha_ij z_j)."""
    n, f_out = h.shape[0], weight.shape[1]
    z = [sum(h[i, k] * weight[k] for k in range(h.shape[1])) for i in range(n)]  # row i of h W, as a sum
    rows = []
    for i in range(n):
        scores = []
        for j in neighbours(i):
            s = (a_dst * z[i]).sum() + (a_src * z[j]).sum()
            scores.append(s if s > 0 else slope * s)
        ex = [torch.exp(s) for s in scores]
        denom = sum(ex)
        acc = torch.zeros(f_out, dtype=h.dtype)
        for j, e in zip(neighbours(i), ex):
            acc = acc + e / denom * z[j]
        rows.append(torch.where(acc > 0, acc, torch.expm1(acc)))  # ELU
    return torch.stack(rows)


def five_node_inputs(seed=0, f_in=3, f_out=4):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(5, f_in, generator=gen, dtype=torch.float64)
    weight = torch.randn(f_in, f_out, generator=gen, dtype=torch.float64)
    a_src = torch.randn(f_out, generator=gen, dtype=torch.float64)
    a_dst = torch.randn(f_out, generator=gen, dtype=torch.float64)
    return h, weight, a_src, a_dst


def test_gat_layer_matches_node_loop_values_and_gradients():
    shuffled = torch.tensor(EDGES[::-1]).t()  # not in CSR order: from_edge_index sorts
    csr, _ = EdgeCSR.from_edge_index(shuffled, 5)
    assert not csr.symmetric
    inputs = [t.requires_grad_() for t in five_node_inputs()]
    got = gat_layer(inputs[0], csr, *inputs[1:])
    want = loop_gat(*inputs)
    assert got.shape == (5, 4)
    assert torch.allclose(got, want, atol=1e-12)
    assert (got < 0).any() and (got > 0).any()  # both branches of the ELU exercised
    # the LeakyReLU's negative branch is exercised too
    z = inputs[0] @ inputs[1]
    assert (gat_scores(z, csr, inputs[2], inputs[3]) < 0).any()
    # node 4 attends only to itself: alpha = 1, out = ELU(z_4)
    assert torch.allclose(got[4], torch.nn.functional.elu(z[4]), atol=1e-12)
    proj = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_got = torch.autograd.grad((got * proj).sum(), inputs)
    g_want = torch.autograd.grad((want * proj).sum(), inputs)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def test_gat_scores_and_attention_by_hand():
    """Edge e in CSR order is (row[e], col[e]) = (target i, source j); the attention sums to 1 per row."""
    csr, _ = EdgeCSR.from_edge_index(torch.tensor(EDGES).t(), 5)
    z = torch.arange(10, dtype=torch.float64).view(5, 2) / 10 - 0.4
    a_src, a_dst = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 3.0], dtype=torch.float64)
    e = gat_scores(z, csr, a_src, a_dst, slope=0.1)
    for k, (i, j) in enumerate(zip(csr.row.tolist(), csr.col.tolist())):
        s = float(a_dst @ z[i] + a_src @ z[j])
        assert float(e[k]) == pytest.approx(s if s > 0 else 0.1 * s, abs=1e-12)
    alpha = gat_attention(z, csr, a_src, a_dst)
    sums = torch.zeros(5, dtype=torch.float64).index_add(0, csr.row, alpha)
    assert torch.allclose(sums, torch.ones(5, dtype=torch.float64))
    # per-node attention vectors equal to the shared one give the same logits
    assert torch.equal(gat_scores(z, csr, a_src.expand(5, 2), a_dst.expand(5, 2), 0.1), e)


def test_per_image_matmul_uses_each_images_weight():
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2 * 3, 4, generator=gen)
    weight = torch.randn(2, 4, 5, generator=gen)
    out = per_image_matmul(h, weight)
    assert torch.allclose(out[:3], h[:3] @ weight[0]) and torch.allclose(out[3:], h[3:] @ weight[1])
    assert torch.equal(per_image_matmul(h, weight[0]), h @ weight[0])


def test_gat_parameters_drawn_after_the_others():
    """GAT draws come after W^0, w, W^{L+1} (so the other layer types keep their numbers), with GAT's shapes."""
    cfg = GNNConfig(hidden=8, layers=2, layer_type="gat")
    p = init_parameters(6, 4, cfg, torch.Generator().manual_seed(4))
    base = init_parameters(6, 4, GNNConfig(hidden=8, layers=2), torch.Generator().manual_seed(4))
    assert list(p) == ["W0", "w", "W_out", "gat_weight", "gat_att"] and list(base) == ["W0", "w", "W_out"]
    assert all(torch.equal(p[k], base[k]) for k in base)
    assert p["gat_weight"].shape == (2, 8, 8) and p["gat_att"].shape == (2, 2, 8)
    assert p["gat_weight"].abs().max() <= math.sqrt(6 / 16) and p["gat_att"].abs().max() <= math.sqrt(6 / 9)
    gcn = init_parameters(6, 4, GNNConfig(hidden=8, layers=2, layer_type="gcn"), torch.Generator().manual_seed(4))
    assert "gat_weight" not in gcn and "gcn_weight" not in p


def test_gat_network_ignores_edge_weights_and_gives_distributions():
    cfg = GNNConfig(hidden=8, layer_type="gat")
    x, csr, ew = small_graph(3, 5, 6, 0)
    model = A2GNN(6, 4, cfg, torch.Generator().manual_seed(0))
    mask = torch.tensor([True, False, True, False])
    log_probs, h = model(x, csr, ew, class_mask=mask)
    assert log_probs.shape == (15, 4) and h.shape == (15, 8)
    probs = log_probs.exp()
    assert torch.allclose(probs.sum(1), torch.ones(15)) and torch.all(probs[:, ~mask] == 0)
    assert torch.equal(model(x, csr, torch.rand_like(ew), class_mask=mask)[0], log_probs)  # E_ij unused
    log_probs.exp()[:, 0].sum().backward()
    assert model.gat_weight.grad.abs().sum() > 0 and model.gat_att.grad.abs().sum() > 0
    assert model.w.grad is None  # drawn for every type, unused by GAT


def test_batched_gat_equals_per_image_networks():
    """Same pattern as test_gnn_layers.test_batched_network_equals_per_image_networks, for "gat", with gradients."""
    cfg = GNNConfig(hidden=8, layers=2, layer_type="gat")
    sizes = [(3, 5), (4, 4)]
    graphs, x, bcsr, edge_weight, edge_image, n_max = batched_small_graphs(sizes, 6)
    masks = torch.rand(2, n_max, 8, generator=torch.Generator().manual_seed(9)) * 2
    batched = BatchedA2GNN(6, 4, cfg, [torch.Generator().manual_seed(10 + b) for b in range(2)])
    assert batched.gat_weight.shape == (2, 2, 8, 8) and batched.gat_att.shape == (2, 2, 2, 8)
    lp, hb = batched(x, bcsr, edge_weight, edge_image, masks)
    proj = torch.randn(hb.shape, generator=torch.Generator().manual_seed(11))
    (hb * proj).sum().backward()
    for b, (xb, csr, ew) in enumerate(graphs):
        single = A2GNN(6, 4, cfg, torch.Generator().manual_seed(10 + b))
        n = xb.shape[0]
        lps, hs = single(xb, csr, ew, masks[b, :n])
        assert torch.allclose(lp[b * n_max: b * n_max + n], lps, atol=1e-5)
        assert torch.allclose(hb[b * n_max: b * n_max + n], hs, atol=1e-5)
        assert torch.all(hb[b * n_max + n: (b + 1) * n_max] == 0)  # padding nodes: no edges, ELU(0) = 0
        (hs * proj[b * n_max: b * n_max + n]).sum().backward()
        for name in ("W0", "gat_weight", "gat_att"):
            assert torch.allclose(getattr(batched, name).grad[b], getattr(single, name).grad, atol=1e-5), name


def test_train_gat_tiny_run():
    """A tiny train_a2gnn run with layer_type "gat": finite probabilities summing to 1; batched == single."""
    graphs = three_graphs()[:2]
    cfg = GNNConfig(hidden=16, epochs=6, first_phase_epochs=3, layer_type="gat")
    probs = train_a2gnn(graphs, cfg, 4, seed=5, batch_images=2)
    for g, p in zip(graphs, probs):
        assert p.shape == (g.num_nodes, 4) and torch.isfinite(p).all()
        assert torch.allclose(p.sum(1), torch.ones(g.num_nodes), atol=1e-6)
    assert torch.allclose(probs[0], train_a2gnn_single(graphs[0], cfg, 4, seed=5), atol=2e-5)
