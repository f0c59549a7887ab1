"""Training A²GNN: batched == per-image, determinism, a toy fit, consistency checking, input validation."""

import dataclasses

import pytest
import torch

from a2gnn.gnn.model import A2GNN, GNNConfig
from a2gnn.gnn.batch import check_graph, collate
from a2gnn.gnn.train import fit, image_seed, train_a2gnn, train_a2gnn_single
from helpers import probs_to_grid
from a2gnn.graph.types import ImageGraph
from a2gnn.core.io import DataError
from a2gnn.ops.neighbours import grid_pairs, radius_offsets


pytestmark = pytest.mark.usefixtures("one_thread")


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
    batched = train_a2gnn(graphs, FAST, NUM_CLASSES, seed=5, batch_images=3)
    for g, got in zip(graphs, batched):
        want = train_a2gnn_single(g, FAST, NUM_CLASSES, seed=5)
        assert got.shape == (g.num_nodes, NUM_CLASSES)
        assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


def test_a_graph_with_fewer_nodes_than_feature_dim_trains_in_a_batch():
    """graph.feature_dim k > N for a small or thin image: its features are zero-padded to k, so it batches with the
    others (it used to keep D_g columns and stop the batch), and trains as it would alone."""
    from a2gnn.graph.features import project_node_features

    graphs = [toy_graph("thin", 1, 6, 2, seed=0, seed_rate=0.5)[0], toy_graph("big", 7, 7, 1, seed=1)[0]]
    projected = [dataclasses.replace(g, x=project_node_features(g.x, 8)) for g in graphs]
    assert [tuple(g.x.shape) for g in projected] == [(6, 8), (49, 8)]
    batched = train_a2gnn(projected, FAST, NUM_CLASSES, seed=5, batch_images=2)
    for g, got in zip(projected, batched):
        want = train_a2gnn_single(g, FAST, NUM_CLASSES, seed=5)
        assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


def test_deterministic_and_independent_of_order_and_batch_size():
    graphs = three_graphs()
    cfg = FAST
    first = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1, batch_images=2)
    again = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1, batch_images=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    reordered = train_a2gnn(graphs[::-1], FAST, NUM_CLASSES, seed=1, batch_images=3)[::-1]
    assert all(torch.allclose(a, b, atol=2e-5) for a, b in zip(first, reordered))
    in_workers, labels = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=1, workers=2, return_labels=True, batch_images=2)  # 2 processes
    assert all(torch.equal(a, b) for a, b in zip(first, in_workers))
    assert [lab.shape[0] for lab in labels] == [g.num_nodes for g in graphs]
    assert all(torch.all((lab == g.labels) | (lab == 255)) for lab, g in zip(labels, graphs))  # seeds only removed
    other_seed = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=2, batch_images=2)
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


# ---------------------------------------------------------------------------------------------- L_ce at image size
def with_seeds(graph: ImageGraph, seed: int = 0, rate: float = 0.3) -> ImageGraph:
    """Full-size seeds for a toy graph (image_size = 8 h x 8 w): each cell's pixels take the node's true class
    (recovered from the features), a random ``rate`` of the pixels are labelled."""
    h, w = graph.grid
    gen = torch.Generator().manual_seed(seed)
    fg = graph.x[:, : graph.x.shape[1] // 2].sum(1) > graph.x[:, graph.x.shape[1] // 2:].sum(1)
    cls = int(graph.boxes[0, 4]) if graph.boxes.numel() else 1
    truth = torch.where(fg, cls, 0).view(h, w)
    full = truth.repeat_interleave(8, 0).repeat_interleave(8, 1)
    full = torch.where(torch.rand(full.shape, generator=gen) < rate, full, torch.full_like(full, 255))
    return dataclasses.replace(graph, seeds=full.to(torch.uint8))


def test_image_resolution_ce_batched_equals_single():
    graphs = [with_seeds(g, i) for i, g in enumerate(three_graphs())]
    cfg = dataclasses.replace(FAST, ce_resolution="image")
    batched = train_a2gnn(graphs, cfg, NUM_CLASSES, seed=5, batch_images=3)
    grid_mode = train_a2gnn(graphs, FAST, NUM_CLASSES, seed=5, batch_images=3)
    for g, got, other in zip(graphs, batched, grid_mode):
        want = train_a2gnn_single(g, cfg, NUM_CLASSES, seed=5)
        assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()
        assert not torch.allclose(got, other, atol=1e-3)  # the loss really changed


def test_image_resolution_ce_loss_in_fit_matches_dense_reference():
    """The first-epoch L_ce of fit at "image" resolution equals a dense computation: F.interpolate of the
    logits to the image, softmax over the allowed classes, mean NLL over the labelled pixels."""
    graph = with_seeds(toy_graph("d", 3, 5, 2, seed=4)[0], 1)
    cfg = dataclasses.replace(FAST, ce_resolution="image", use_mp=False, epochs=1, first_phase_epochs=1,
                              dropout=0.0)
    batch = collate([graph], NUM_CLASSES, cfg)
    model = A2GNN(batch.x.shape[2], NUM_CLASSES, cfg, torch.Generator().manual_seed(0))
    seen = []

    def forward(mask):
        out = model(batch.x[0], batch.csr, batch.edge_weight, None, batch.class_mask[0])
        seen.append(out[0].detach())
        return out

    import a2gnn.gnn.train as train_module
    losses = []
    original = train_module.total_loss
    train_module.total_loss = lambda *a, **k: losses.append(a[0].detach()) or original(*a, **k)
    try:
        fit(forward, torch.optim.SGD(model.parameters(), lr=0.0), batch, cfg, [torch.Generator()])
    finally:
        train_module.total_loss = original
    log_probs = seen[0]
    allowed = batch.class_mask[0]
    logits = log_probs[:, allowed].t().reshape(-1, 3, 5)  # log O = logits - per-node constant
    up = torch.nn.functional.interpolate(logits[None], size=(24, 40), mode="bilinear", align_corners=False)[0]
    lp = torch.log_softmax(up, 0)
    seeds = graph.seeds.long()
    ys, xs = (seeds != 255).nonzero(as_tuple=True)
    cls_index = {int(c): k for k, c in enumerate(allowed.nonzero().view(-1).tolist())}
    nll = torch.stack([-lp[cls_index[int(seeds[y, x])], y, x] for y, x in zip(ys.tolist(), xs.tolist())])
    assert torch.allclose(losses[0], nll.mean().view(1), atol=1e-5)


def test_image_resolution_ce_needs_full_size_seeds():
    graph, _ = toy_graph("noseeds", 4, 5)
    with pytest.raises(DataError, match="noseeds.*seeds"):
        train_a2gnn([graph], dataclasses.replace(FAST, ce_resolution="image"), NUM_CLASSES)
    bad = dataclasses.replace(graph, seeds=torch.zeros(5, 5, dtype=torch.uint8))
    with pytest.raises(DataError, match="noseeds.*seeds has shape"):
        check_graph(bad, NUM_CLASSES)


# ---------------------------------------------------------------------------------------------- diagnostics
def clean_noisy_graph():
    """10 x 12 grid, object = columns < 6 (class 2), box = columns < 8; noise-free cluster features. Seeds: every
    third node with its true class, plus the background nodes of columns 6-7 (inside the box) wrongly seeded
    with the box class: those, and only those, must be removed by consistency checking."""
    graph, truth = toy_graph("clean", 10, 12, 2, seed=0, seed_rate=0.0, boxes=torch.tensor([[0, 0, 8, 10, 2]]))
    col = torch.arange(120) % 12
    fg = (truth > 0).float()[:, None]
    x = torch.cat([fg.expand(120, 6), (1 - fg).expand(120, 6)], 1) / 6
    labels = torch.where(torch.arange(120) % 3 == 0, truth, torch.full_like(truth, 255))
    noisy = (col >= 6) & (col < 8) & (torch.arange(120) % 2 == 0)
    labels[noisy] = 2
    return dataclasses.replace(graph, x=x, labels=labels), noisy


def test_diagnostics_report_the_removed_seeds():
    graph, noisy = clean_noisy_graph()
    cfg = GNNConfig(hidden=16, epochs=30, first_phase_epochs=15, dropout=0.0)
    probs, labels, diags = train_a2gnn([graph], cfg, NUM_CLASSES, return_labels=True, return_diagnostics=True)
    d = diags[0]
    assert d.image_id == "clean" and torch.equal(d.seeds, graph.labels) and torch.equal(d.labels, labels[0])
    in_box_seed = (graph.labels == 2) & (torch.arange(120) % 12 < 8)
    assert torch.equal(d.checked, in_box_seed)  # Eq. 28 candidates: box-class seeds inside the box
    assert torch.equal(d.removed, noisy) and d.num_removed == int(noisy.sum())
    # default outputs unchanged by asking for diagnostics
    assert all(torch.equal(a, b) for a, b in zip(probs, train_a2gnn([graph], cfg, NUM_CLASSES)))
    off = train_a2gnn([graph], dataclasses.replace(cfg, use_consistency=False), NUM_CLASSES,
                      return_diagnostics=True)[1][0]
    assert off.num_removed == 0 and torch.equal(off.labels, graph.labels)


# ---------------------------------------------------------------------------------------------- two phases
@pytest.mark.parametrize("first_phase", [0, 3, 6])
def test_reg_and_consistency_only_in_second_phase(first_phase, monkeypatch):
    """L_reg (Eq. 22) and consistency checking (Eq. 28) are called in exactly the epochs >= first_phase_epochs."""
    import a2gnn.gnn.train as train_module
    graph, _ = toy_graph("phases", 5, 6)
    cfg = dataclasses.replace(FAST, epochs=6, first_phase_epochs=first_phase)
    epoch = [-1]
    calls = {"reg": [], "check": []}
    for name, key in (("regularized_loss", "reg"), ("consistency_check", "check")):
        original = getattr(train_module, name)
        monkeypatch.setattr(train_module, name,
                            lambda *a, _o=original, _k=key, **k: calls[_k].append(epoch[0]) or _o(*a, **k))
    batch = collate([graph], NUM_CLASSES, cfg)
    gen = torch.Generator().manual_seed(0)
    model = A2GNN(batch.x.shape[2], NUM_CLASSES, cfg, gen)

    def forward(mask):
        epoch[0] += 1
        return model(batch.x[0], batch.csr, batch.edge_weight, None if mask is None else mask[0], batch.class_mask[0])

    fit(forward, torch.optim.Adam(model.parameters()), batch, cfg, [gen])
    assert calls["reg"] == calls["check"] == list(range(first_phase, 6))


def test_shard_devices_keeps_one_device_without_several_gpus():
    from a2gnn.gnn.train import shard_devices

    assert shard_devices("cpu", 4) == ["cpu"]
    assert shard_devices("cuda:1", 4) == ["cuda:1"]  # an explicit GPU is kept
    if torch.cuda.device_count() < 2:
        assert shard_devices("cuda", 4) == ["cuda"]
