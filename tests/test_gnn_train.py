"""Training A²GNN: batched == per-image, determinism, a toy fit, consistency checking, input validation."""

import dataclasses

import pytest
import torch

from a2gnn.gnn.model import A2GNN, GNNConfig
from a2gnn.gnn.train import check_graph, collate, fit, image_seed, probs_to_grid, train_a2gnn, train_a2gnn_single
from a2gnn.graph import ImageGraph
from a2gnn.io import DataError
from a2gnn.neighbours import grid_pairs, radius_offsets


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add (large, on a busy machine) synchronisation costs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NUM_CLASSES = 4
FAST = GNNConfig(hidden=16, epochs=6, first_phase_epochs=3)


def toy_graph(image_id: str, h: int, w: int, obj_class: int = 2, seed: int = 0, seed_rate: float = 0.15,
              dim: int = 12, boxes=None) -> tuple[ImageGraph, torch.Tensor]:
    """Object = columns [0, w // 2) (class obj_class), background elsewhere; noisy cluster features."""
    gen = torch.Generator().manual_seed(seed)
    n = h * w
    truth = torch.where(torch.arange(n) % w < w // 2, obj_class, 0)
    fg = (truth > 0).float()[:, None]
    x = torch.rand(n, dim, generator=gen) * 0.6
    x[:, : dim // 2] += fg
    x[:, dim // 2:] += 1 - fg
    x = x / x.sum(1, keepdim=True)  # Eq. 15
    ei = grid_pairs(h, w, radius_offsets(2, include_self=True))
    same = (truth[ei[0]] == truth[ei[1]]).float()
    ew = torch.where(ei[0] == ei[1], 1.0, 0.9 * same + 0.05)
    pi = grid_pairs(h, w, radius_offsets(2))
    pw = 0.2 + 0.8 * (truth[pi[0]] == truth[pi[1]]).float()
    labels = torch.full((n,), 255)
    pick = torch.rand(n, generator=gen) < seed_rate
    labels[pick] = truth[pick]
    if boxes is None:
        boxes = torch.tensor([[0, 0, w // 2, h, obj_class]])
    graph = ImageGraph(image_id, x, ei, ew, labels, boxes, (h, w), (8 * h, 8 * w), pi, pw)
    return graph, truth


def three_graphs():
    return [toy_graph("a", 5, 6, 2, seed=0)[0], toy_graph("b", 7, 7, 1, seed=1)[0],
            toy_graph("c", 4, 9, 3, seed=2)[0]]


def test_batched_equals_per_image_training():
    graphs = three_graphs()
    assert FAST.dropout > 0 and FAST.use_mp and FAST.use_reg and FAST.use_consistency
    batched = train_a2gnn(graphs, dataclasses.replace(FAST, batch_images=3), NUM_CLASSES, seed=5)
    for g, got in zip(graphs, batched):
        want = train_a2gnn_single(g, FAST, NUM_CLASSES, seed=5)
        assert got.shape == (g.num_nodes, NUM_CLASSES)
        assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


def test_deterministic_and_independent_of_order_and_batch_size():
    graphs = three_graphs()
    cfg = dataclasses.replace(FAST, batch_images=2)
    first = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1)
    again = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    reordered = train_a2gnn(graphs[::-1], dataclasses.replace(FAST, batch_images=3), NUM_CLASSES, seed=1)[::-1]
    assert all(torch.allclose(a, b, atol=2e-5) for a, b in zip(first, reordered))
    in_workers, labels = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1, workers=2, return_labels=True)  # 2 processes
    assert all(torch.equal(a, b) for a, b in zip(first, in_workers))
    assert [lab.shape[0] for lab in labels] == [g.num_nodes for g in graphs]
    assert all(torch.all((lab == g.labels) | (lab == 255)) for lab, g in zip(labels, graphs))  # seeds only removed
    other_seed = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=2)
    assert not torch.allclose(first[0], other_seed[0])


def test_image_seed_depends_on_seed_and_id():
    assert image_seed(0, "a") == image_seed(0, "a") != image_seed(1, "a") != image_seed(0, "b")


@pytest.mark.parametrize("layer_type", ["a2gnn", "agnn"])
def test_fits_toy_graph_from_few_seeds(layer_type):
    graph, truth = toy_graph("toy", 8, 10, 2, seed=3, seed_rate=0.1)
    cfg = GNNConfig(hidden=32, epochs=60, first_phase_epochs=30, layer_type=layer_type)
    probs = train_a2gnn([graph], cfg, NUM_CLASSES)[0]
    assert torch.equal(probs.argmax(1), truth)
    assert torch.all(probs[:, [1, 3]] == 0)  # restricted to background + the box class


@pytest.mark.parametrize("params,removes", [
    ({"consistency_scale": "background", "consistency_threshold": 0.5}, True),
    ({"consistency_scale": "absolute", "consistency_threshold": 0.2}, True),
    ({"consistency_cumulative": True}, True),
    ({"use_consistency": False}, False),
])
def test_consistency_removes_noisy_box_seeds(params, removes):
    """Background nodes inside a loose box wrongly seeded with the box class are dropped in the second phase."""
    graph, truth = toy_graph("noisy", 10, 12, 2, seed=1, seed_rate=0.3, boxes=torch.tensor([[0, 0, 7, 10, 2]]))
    col = torch.arange(120) % 12
    noisy = (truth == 0) & (col < 7) & (torch.rand(120, generator=torch.Generator().manual_seed(10)) < 0.5)
    graph.labels[noisy] = 2
    good = (graph.labels == 2) & ~noisy
    assert noisy.sum() >= 3 and good.sum() >= 10
    cfg = GNNConfig(hidden=32, epochs=40, first_phase_epochs=20, **params)
    batch = collate([graph], NUM_CLASSES, cfg)
    gen = torch.Generator().manual_seed(0)
    model = A2GNN(batch.x.shape[2], NUM_CLASSES, cfg, gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    labels = fit(lambda m: model(batch.x[0], batch.csr, batch.edge_weight, None if m is None else m[0],
                                 batch.class_mask[0]), opt, batch, cfg, [gen])
    removed = labels == 255
    if removes:
        assert removed[noisy].float().mean() >= 0.8  # most noisy seeds dropped
        assert removed[good].float().mean() <= 0.2  # most correct seeds kept
    else:
        assert torch.equal(labels, graph.labels)
    assert torch.equal(labels[graph.labels == 0], graph.labels[graph.labels == 0])  # background seeds untouched


def test_graph_without_boxes_and_ablation_switches():
    graph, _ = toy_graph("nobox", 4, 5, boxes=torch.zeros(0, 5, dtype=torch.int64))
    for cfg in (FAST, dataclasses.replace(FAST, use_mp=False, use_reg=False, use_consistency=False, dropout=0.0,
                                          class_balanced_ce=True, restrict_to_image_labels=False)):
        probs = train_a2gnn([graph], cfg, NUM_CLASSES)[0]
        assert probs.shape == (20, NUM_CLASSES) and torch.allclose(probs.sum(1), torch.ones(20))
    assert probs_to_grid(probs, (4, 5)).shape == (NUM_CLASSES, 4, 5)
    assert torch.equal(probs_to_grid(probs, (4, 5))[:, 1, 2], probs[7])


@pytest.mark.parametrize("field,value,message", [
    ("labels", torch.full((20,), 7), "labels outside"),
    ("boxes", torch.tensor([[0, 0, 6, 4, 1]]), "box outside"),
    ("boxes", torch.tensor([[0, 0, 2, 2, 0]]), "box class"),
    ("x", torch.zeros(19, 12), "x has shape"),
    ("edge_weight", torch.zeros(3), "do not match"),
])
def test_bad_graph_raises_data_error_naming_image(field, value, message):
    graph, _ = toy_graph("img_007", 4, 5)
    graph = dataclasses.replace(graph, **{field: value})
    with pytest.raises(DataError, match=f"img_007.*{message}"):
        check_graph(graph, NUM_CLASSES)
    with pytest.raises(DataError, match="img_007"):
        train_a2gnn([graph], FAST, NUM_CLASSES)
