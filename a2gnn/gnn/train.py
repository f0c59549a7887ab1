r"""Training A²GNN on image graphs (paper §4.5, §5): one model per image, many images per optimisation.

The paper trains a fresh network with its own Adam on every image. :func:`train_a2gnn_single` does exactly
that (it is the reference and the speed baseline). :func:`train_a2gnn` gives the same result for many
images at once: per-image parameters are stacked along a leading image dimension
(:class:`~a2gnn.gnn.model.BatchedA2GNN`), the loss is the **sum** of the per-image losses (so image b's
slice only receives image b's gradient) and one Adam runs over the stacked tensors (Adam, including its
L2 weight decay, is elementwise, so this is B independent Adams). Initial parameters and the dropout mask
of every epoch come from the image's own generator, seeded from ``seed`` and the image id
(:func:`image_seed`), so an image's result depends neither on its batch nor on its position in the list.

Schedule (§5): ``epochs`` full-graph steps; the first ``first_phase_epochs`` use L_ce + L_mp, the rest add
λ_1 L_reg and consistency checking (Eq. 27-28, recomputed every step from the current features).

L_ce (Eq. 21) is evaluated on the node grid (``ce_resolution="grid"``, default) or, as the paper's §5 says, at
the image's resolution (``"image"``): the node output is bilinearly up-sampled with the inference mapping of
:mod:`a2gnn.ops.grid` to the labelled pixels of the full-size M_g. Consistency checking works on nodes in both
cases; in "image" mode a pixel seed is dropped when the seed of its cell's node was dropped and the pixel
carries that node's label.

Nodes need not be grid cells (``graph.nodes``, Table 4(c)): everything that depends on what a node is (box lines
of L_mp, nodes inside a box for Eq. 27-28, image-resolution taps) comes from the graph's
:class:`a2gnn.graph.nodes.NodeLayout` (``graph.layout``), so superpixel graphs train with the same losses.

Diagnostics: ``train_a2gnn(..., return_diagnostics=True)`` also returns one :class:`SeedDiagnostics` per image
with the node seeds before checking, the labels L_ce used in the final epoch and which seeds Eq. 28 examined,
so a caller can count the removed seeds (``removed``) and compare them with ground truth.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from a2gnn.gnn.consistency import (
    CONSISTENCY_SCALES,
    box_prototypes,
    consistency_check,
    member_seed_candidates,
    nodes_outside,
)
from a2gnn.gnn.layers import EdgeCSR
from a2gnn.gnn.model import A2GNN, BatchedA2GNN, GNNConfig, draw_dropout_mask
from a2gnn.graph.types import ImageGraph
from a2gnn.core.io import IGNORE_INDEX, DataError
from a2gnn.core.parallel import parallel_map
from a2gnn.gnn.losses import (box_lines, cross_entropy_image_loss, cross_entropy_loss, multi_point_loss,
                          multi_point_sets, regularized_loss, select_multi_points, total_loss)

Forward = Callable[[Tensor | None], tuple[Tensor, Tensor]]


def image_seed(seed: int, image_id: str) -> int:
    """Seed of one image's generator: ``seed`` + CRC-32 of the id (stable across runs and list orders)."""
    return (int(seed) + zlib.crc32(image_id.encode("utf-8"))) % (2**63)


def check_graph(graph: ImageGraph, num_classes: int) -> None:
    """Validate an :class:`ImageGraph` against the contract; problems raise DataError naming the image."""
    def fail(problem: str) -> None:
        raise DataError(graph.image_id, f"graph: {problem}")

    h, w = graph.grid
    problem = graph.layout.check(graph)
    if problem:
        fail(problem)
    n = graph.num_nodes
    if graph.x.dim() != 2 or graph.x.shape[0] != n:
        fail(f"x has shape {tuple(graph.x.shape)}, expected ({n}, D) for {graph.nodes} nodes, grid {graph.grid}")
    if not torch.isfinite(graph.x).all():
        fail("x has non-finite values")
    for name, index, weight in (("edge", graph.edge_index, graph.edge_weight),
                                ("pair", graph.pair_index, graph.pair_weight)):
        if index.dim() != 2 or index.shape[0] != 2 or weight.shape != (index.shape[1],):
            fail(f"{name}_index {tuple(index.shape)} / {name}_weight {tuple(weight.shape)} do not match")
        if index.numel() and (index.min() < 0 or index.max() >= n):
            fail(f"{name}_index has node ids outside [0, {n})")
    if graph.labels.shape != (n,):
        fail(f"labels has shape {tuple(graph.labels.shape)}, expected ({n},)")
    if graph.seeds is not None:
        if tuple(graph.seeds.shape) != tuple(graph.image_size):
            fail(f"seeds has shape {tuple(graph.seeds.shape)}, expected the image size {tuple(graph.image_size)}")
        seeds = graph.seeds.to(torch.int64)
        if ((seeds != IGNORE_INDEX) & ((seeds < 0) | (seeds >= num_classes))).any():
            fail(f"seeds outside [0, {num_classes}) and != {IGNORE_INDEX}")
    bad = (graph.labels != IGNORE_INDEX) & ((graph.labels < 0) | (graph.labels >= num_classes))
    if bad.any():
        fail(f"labels outside [0, {num_classes}) and != {IGNORE_INDEX}")
    b = graph.boxes
    if b.dim() != 2 or b.shape[1] != 5:
        fail(f"boxes has shape {tuple(b.shape)}, expected (M, 5)")
    if b.numel():
        inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)
        if not inside.all():
            fail(f"box outside the {h}x{w} grid: {b[~inside][0].tolist()}")
        if ((b[:, 4] < 1) | (b[:, 4] >= num_classes)).any():
            fail(f"box class outside [1, {num_classes})")


@dataclasses.dataclass
class GraphBatch:
    """B graphs laid out for one optimisation: node n of image b has flat id ``b * n_max + n``.

    Fields (F_flat = B * n_max flat nodes, E edges, P pairs, M boxes, L box lines, Q checked seeds):
        image_ids, num_nodes (per image), n_max, grids.
        x: (B, n_max, D) node features, zero rows for padding.
        csr / edge_weight / edge_image: block-diagonal graph over the flat nodes (CSR order), (E,), (E,).
        labels: (F_flat,) M_g, 255 for unlabelled and padding; node_image: (F_flat,).
        class_mask: (B, C) classes the output softmax runs over.
        line_nodes (L, max_len) flat ids padded with -1, line_box (L,); box_class (M,), box_image (M,).
        cand_box (Q,), cand_node (Q,): seeds checked by Eq. 28; outside_node / outside_image (R,): nodes
        outside every box of their image (background prototype of the "background" distance scale).
        pairs / pair_weight / pair_image: L_reg pairs (CSR), (P,), (P,); nodes_per_image (B,).
        Only with ``ce_resolution="image"`` (else None), over the S labelled pixels of the full-size M_g:
        pix_node / pix_weight (S, 4) bilinear taps (flat node ids), pix_label (S,), pix_image (S,),
        pix_cell (S,) flat node of the pixel's cell.
    """

    image_ids: list[str]
    num_nodes: list[int]
    n_max: int
    grids: list[tuple[int, int]]
    x: Tensor
    csr: EdgeCSR
    edge_weight: Tensor
    edge_image: Tensor
    labels: Tensor
    node_image: Tensor
    class_mask: Tensor
    line_nodes: Tensor
    line_box: Tensor
    box_class: Tensor
    box_image: Tensor
    cand_box: Tensor
    cand_node: Tensor
    outside_node: Tensor
    outside_image: Tensor
    pairs: EdgeCSR
    pair_weight: Tensor
    pair_image: Tensor
    nodes_per_image: Tensor
    pix_node: Tensor | None = None
    pix_weight: Tensor | None = None
    pix_label: Tensor | None = None
    pix_image: Tensor | None = None
    pix_cell: Tensor | None = None

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> int:
        return int(self.box_class.shape[0])


def _cat(parts: list[Tensor], dtype: torch.dtype, width: int | None = None) -> Tensor:
    if width is not None:  # pad 2-D int tables to a common width with -1
        parts = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=-1) for p in parts]
    return torch.cat(parts).to(dtype) if parts else torch.zeros(0, dtype=dtype)


def pixel_seed_tables(graph: ImageGraph, offset: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The labelled pixels of ``graph.seeds`` with their taps (bilinear on the grid, the own superpixel for
    superpixel nodes: ``graph.layout.pixel_taps``) and own node (flat ids shifted by ``offset``).

    Shapes: -> node (S, 4), weight (S, 4), label (S,), cell (S,).
    """
    if graph.seeds is None:
        raise DataError(graph.image_id, "graph: ce_resolution 'image' needs the full-resolution seeds (graph.seeds)")
    seeds = graph.seeds.reshape(-1).to(torch.int64)
    pixels = (seeds != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    node, weight, own = graph.layout.pixel_taps(graph, pixels)
    return node + offset, weight, seeds[pixels], own + offset


def collate(graphs: Sequence[ImageGraph], num_classes: int, cfg: GNNConfig,
            device: torch.device | str = "cpu") -> GraphBatch:
    """Validate ``graphs`` and lay them out as a :class:`GraphBatch` on ``device`` (a loop over images only)."""
    if not graphs:
        raise ValueError("collate needs at least one graph")
    for g in graphs:
        check_graph(g, num_classes)
    dims = {int(g.x.shape[1]) for g in graphs}
    if len(dims) != 1:
        raise DataError(graphs[0].image_id, f"graphs of one batch have different feature sizes {sorted(dims)}")
    n_max = max(g.num_nodes for g in graphs)
    b = len(graphs)
    x = torch.zeros(b, n_max, dims.pop())
    labels = torch.full((b * n_max,), IGNORE_INDEX, dtype=torch.int64)
    class_mask = torch.ones(b, num_classes, dtype=torch.bool)
    edges, weights, edge_img, pairs, pweights, pair_img = [], [], [], [], [], []
    lines, line_box, box_class, box_image, cand_box, cand_node, outside = [], [], [], [], [], [], []
    n_boxes = 0
    for i, g in enumerate(graphs):
        off = i * n_max
        n = g.num_nodes
        x[i, :n] = g.x.float()
        lab = g.labels.to(torch.int64)
        labels[off:off + n] = lab
        boxes = g.boxes.to(torch.int64).reshape(-1, 5)
        if cfg.restrict_to_image_labels:
            class_mask[i] = False
            class_mask[i, 0] = True
            class_mask[i, boxes[:, 4]] = True
            class_mask[i, lab[lab != IGNORE_INDEX]] = True
        edges.append(g.edge_index.to(torch.int64) + off)
        weights.append(g.edge_weight.float())
        edge_img.append(torch.full((g.edge_index.shape[1],), i))
        pairs.append(g.pair_index.to(torch.int64) + off)
        pweights.append(g.pair_weight.float())
        pair_img.append(torch.full((g.pair_index.shape[1],), i))
        layout = g.layout  # what a node is (graph.nodes): grid cells or superpixels
        ln, lb = box_lines(boxes, g.grid)
        ln = layout.cell_nodes(g, ln)
        lines.append(torch.where(ln >= 0, ln + off, ln))
        line_box.append(lb + n_boxes)
        in_box, in_node = layout.box_nodes(g, boxes)
        cb, cn = member_seed_candidates(lab, boxes, in_box, in_node)
        cand_box.append(cb + n_boxes)
        cand_node.append(cn + off)
        outside.append(nodes_outside(in_node, n) + off)
        box_class.append(boxes[:, 4])
        box_image.append(torch.full((boxes.shape[0],), i))
        n_boxes += boxes.shape[0]
    flat = b * n_max
    csr, order = EdgeCSR.from_edge_index(torch.cat(edges, dim=1), flat)
    pair_csr, pair_order = EdgeCSR.from_edge_index(torch.cat(pairs, dim=1), flat)
    max_len = max(t.shape[1] for t in lines)
    node_image = torch.arange(b).repeat_interleave(n_max)
    batch = GraphBatch(
        image_ids=[g.image_id for g in graphs], num_nodes=[g.num_nodes for g in graphs], n_max=n_max,
        grids=[tuple(g.grid) for g in graphs], x=x, csr=csr, edge_weight=torch.cat(weights)[order],
        edge_image=_cat(edge_img, torch.int64)[order], labels=labels, node_image=node_image,
        class_mask=class_mask, line_nodes=_cat(lines, torch.int64, max_len), line_box=_cat(line_box, torch.int64),
        box_class=_cat(box_class, torch.int64), box_image=_cat(box_image, torch.int64),
        cand_box=_cat(cand_box, torch.int64), cand_node=_cat(cand_node, torch.int64),
        outside_node=_cat(outside, torch.int64), outside_image=_cat(outside, torch.int64) // n_max, pairs=pair_csr,
        pair_weight=torch.cat(pweights)[pair_order], pair_image=_cat(pair_img, torch.int64)[pair_order],
        nodes_per_image=torch.tensor([g.num_nodes for g in graphs]),
    )
    if cfg.ce_resolution == "image":
        tables = [pixel_seed_tables(g, i * n_max) for i, g in enumerate(graphs)]
        batch.pix_node, batch.pix_weight, batch.pix_label, batch.pix_cell = (
            torch.cat([t[k] for t in tables]) for k in range(4))
        batch.pix_image = torch.cat([torch.full((t[2].shape[0],), i) for i, t in enumerate(tables)])
    return _to_device(batch, device)


def _to_device(batch: GraphBatch, device: torch.device | str) -> GraphBatch:
    moved = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        moved[f.name] = value.to(device) if isinstance(value, (Tensor, EdgeCSR)) else value
    return GraphBatch(**moved)


def _dropout_masks(batch: GraphBatch, cfg: GNNConfig, generators: Sequence[torch.Generator]) -> Tensor:
    """This epoch's dropout masks, image b's drawn from ``generators[b]``: (B, n_max, F), padding rows 0."""
    masks = torch.zeros(batch.num_images, batch.n_max, cfg.hidden)
    for i, (n, gen) in enumerate(zip(batch.num_nodes, generators)):
        masks[i, :n] = draw_dropout_mask((n, cfg.hidden), cfg.dropout, gen)
    return masks.to(batch.x.device)


def fit(forward: Forward, optimizer: torch.optim.Optimizer, batch: GraphBatch, cfg: GNNConfig,
        generators: Sequence[torch.Generator]) -> Tensor:
    """Run the §5 schedule: ``cfg.epochs`` steps of L_G (Eq. 20) summed over the batch's images.

    ``forward(dropout_mask or None) -> (log O (B * n_max, C), H^{L+1} (B * n_max, F))``. Per step: the
    multi-point nodes K (Eq. 23-25) are picked from the step's (detached) output; in the second phase the
    seeds are consistency-checked (Eq. 27-28) against the step's features before L_ce is computed.

    Returns the labels used in the last step (flat, 255 = unlabelled or removed).
    """
    labels0 = labels = batch.labels
    b = batch.num_images
    has_boxes = batch.num_boxes > 0 and batch.line_box.numel() > 0
    for epoch in range(cfg.epochs):
        second = epoch >= cfg.first_phase_epochs
        mask = _dropout_masks(batch, cfg, generators) if cfg.dropout > 0 else None
        log_probs, h = forward(mask)
        check = cfg.use_consistency and second and has_boxes
        if has_boxes and (cfg.use_mp or check):
            with torch.no_grad():
                picked = select_multi_points(log_probs.exp(), batch.line_nodes, batch.line_box, batch.box_class)
                entry_node, entry_box = multi_point_sets(picked, batch.line_box, cfg.mp_unique_nodes)
        if check:
            with torch.no_grad():
                prototypes = box_prototypes(h, entry_node, entry_box, batch.num_boxes)
                scale, candidate_scale = CONSISTENCY_SCALES[cfg.consistency_scale](h, prototypes, batch, b)
                base = labels if cfg.consistency_cumulative else labels0
                labels = consistency_check(base, h, prototypes, batch.cand_box, batch.cand_node,
                                           cfg.consistency_threshold, scale, candidate_scale)
        l_ce = ce_loss(log_probs, labels, labels0, batch, cfg)
        l_mp = None
        if cfg.use_mp and has_boxes:
            l_mp = multi_point_loss(log_probs, h, entry_node, entry_box, batch.box_class, batch.box_image, b)
        l_reg = None
        if cfg.use_reg and second and batch.pair_weight.numel():
            l_reg = regularized_loss(log_probs.exp(), batch.pairs, batch.pair_weight, batch.pair_image,
                                     batch.nodes_per_image, b)
        loss = total_loss(l_ce, l_mp, l_reg, cfg.lambda_reg).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return labels


def pixel_labels(batch: GraphBatch, labels: Tensor, labels0: Tensor) -> Tensor:
    """Full-resolution seed labels after consistency checking: a pixel seed becomes 255 when its cell's node
    seed was removed (labels0 != 255, labels == 255) and the pixel has that node's label.

    Shapes: labels, labels0 (F_flat,) -> (S,) over the batch's labelled pixels.
    """
    removed = (labels0 != IGNORE_INDEX) & (labels == IGNORE_INDEX)
    drop = removed[batch.pix_cell] & (batch.pix_label == labels0[batch.pix_cell])
    return torch.where(drop, torch.full_like(batch.pix_label, IGNORE_INDEX), batch.pix_label)


def ce_loss(log_probs: Tensor, labels: Tensor, labels0: Tensor, batch: GraphBatch, cfg: GNNConfig) -> Tensor:
    """L_ce (Eq. 21) per image at ``cfg.ce_resolution``: on the nodes (labels) or on the full-size seeds (the
    up-sampled output against :func:`pixel_labels`). Shapes: log_probs (F_flat, C), labels (F_flat,) -> (B,)."""
    b = batch.num_images
    if cfg.ce_resolution == "grid":
        return cross_entropy_loss(log_probs, labels, batch.node_image, b, cfg.class_balanced_ce)
    pix_labels = batch.pix_label if labels is labels0 else pixel_labels(batch, labels, labels0)
    return cross_entropy_image_loss(log_probs, batch.pix_node, batch.pix_weight, pix_labels, batch.pix_image, b,
                                    batch.class_mask[batch.pix_image], cfg.class_balanced_ce)


@torch.no_grad()
def predict(forward: Forward, batch: GraphBatch) -> list[Tensor]:
    """Evaluation pass (no dropout): per-image node probabilities O, each (N_b, C) float32 on the CPU."""
    log_probs, _ = forward(None)
    probs = log_probs.exp().view(batch.num_images, batch.n_max, -1)
    return [probs[i, :n].float().cpu() for i, n in enumerate(batch.num_nodes)]


def _optimizer(params: Iterable[Tensor], cfg: GNNConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_a2gnn_single(graph: ImageGraph, cfg: GNNConfig, num_classes: int, device: torch.device | str = "cpu",
                       seed: int = 0) -> Tensor:
    """Reference: train one fresh :class:`A2GNN` with its own Adam on one graph (the paper's procedure).

    Returns the node class probabilities O (N, num_classes) after training (evaluation pass, no dropout).
    """
    batch = collate([graph], num_classes, cfg, device)
    gen = torch.Generator().manual_seed(image_seed(seed, graph.image_id))
    model = A2GNN(batch.x.shape[2], num_classes, cfg, gen).to(device)

    def forward(mask: Tensor | None) -> tuple[Tensor, Tensor]:
        return model(batch.x[0], batch.csr, batch.edge_weight, None if mask is None else mask[0], batch.class_mask[0])

    fit(forward, _optimizer(model.parameters(), cfg), batch, cfg, [gen])
    return predict(forward, batch)[0]


@dataclasses.dataclass
class SeedDiagnostics:
    """What consistency checking (Eq. 27-28) did to one image's node seeds in the **final** epoch.

    Fields (N nodes):
        image_id: the image.
        seeds:   (N,) int64 node labels before checking (M_g on the grid, 255 = unlabelled).
        labels:  (N,) int64 node labels L_ce used in the final epoch (checked seeds far from their box
                 prototype are 255); equal to ``seeds`` when checking is off or never reached phase 2.
        checked: (N,) bool, the node is a candidate of Eq. 28 (a seed of a box's class inside that box).
    """

    image_id: str
    seeds: Tensor
    labels: Tensor
    checked: Tensor

    @property
    def removed(self) -> Tensor:
        """(N,) bool: seeds that consistency checking removed (seed != 255, final label == 255)."""
        return (self.seeds != IGNORE_INDEX) & (self.labels == IGNORE_INDEX)

    @property
    def num_removed(self) -> int:
        return int(self.removed.sum())


def seed_diagnostics(batch: GraphBatch, labels: Tensor) -> list[SeedDiagnostics]:
    """Per-image :class:`SeedDiagnostics` of a batch from the final-epoch labels (F_flat,) that :func:`fit` returns."""
    checked = torch.zeros(batch.labels.shape[0], dtype=torch.bool, device=labels.device)
    checked[batch.cand_node] = True
    seeds, labels, checked = (t.view(batch.num_images, batch.n_max).cpu() for t in (batch.labels, labels, checked))
    return [SeedDiagnostics(image_id, seeds[i, :n].clone(), labels[i, :n].clone(), checked[i, :n].clone())
            for i, (image_id, n) in enumerate(zip(batch.image_ids, batch.num_nodes))]


def train_batch(graphs: Sequence[ImageGraph], cfg: GNNConfig, num_classes: int, device: torch.device | str = "cpu",
                seed: int = 0) -> tuple[list[Tensor], list[SeedDiagnostics]]:
    """One optimisation over ``graphs`` with stacked per-image parameters (:class:`BatchedA2GNN`).

    Returns the node probabilities O (N_i, num_classes) of every graph, in the order of ``graphs``, and their
    :class:`SeedDiagnostics`.
    """
    batch = collate(graphs, num_classes, cfg, device)
    gens = [torch.Generator().manual_seed(image_seed(seed, g.image_id)) for g in graphs]
    model = BatchedA2GNN(batch.x.shape[2], num_classes, cfg, gens).to(device)

    def forward(mask: Tensor | None) -> tuple[Tensor, Tensor]:
        return model(batch.x, batch.csr, batch.edge_weight, batch.edge_image, mask, batch.class_mask)

    labels = fit(forward, _optimizer(model.parameters(), cfg), batch, cfg, gens)
    return predict(forward, batch), seed_diagnostics(batch, labels)


def shard_devices(device: torch.device | str, workers: int) -> list[str]:
    """Devices the batches go to: ``device`` itself, or with ``device="cuda"`` (no index), ``workers > 1`` and
    several GPUs, one GPU per batch in turn (``cuda:0``, ``cuda:1``, ...), each batch trained by a worker
    process. A batch's result does not depend on which GPU or process trains it (per-image generators)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and workers > 1 and torch.cuda.device_count() > 1:
        return [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    return [str(device)]


def _train_batch_job(job: tuple) -> tuple[list[Tensor], list[SeedDiagnostics]]:
    return train_batch(*job)


def train_a2gnn(graphs: Sequence[ImageGraph], cfg: GNNConfig, num_classes: int, device: torch.device | str = "cpu",
                seed: int = 0, progress: Callable[[Iterable], Iterable] | None = None, workers: int = 0,
                return_labels: bool = False, return_diagnostics: bool = False, batch_images: int = 16):
    """Train one A²GNN per graph, ``batch_images`` graphs per optimisation; same result as the per-image loop.

    Graphs are grouped by size (sorted by node count, then id) to keep padding small. ``progress`` may wrap
    the iterable of batches (e.g. ``a2gnn.core.cli.progress``). ``workers > 1`` trains the batches in that many
    single-threaded processes (on a shared CPU this beats intra-op threads, whose spinning barriers stall when
    another process holds a core), or with ``device="cuda"`` and several GPUs spreads them over the GPUs
    (:func:`shard_devices`); the result does not change.

    Returns the node probabilities O (N_i, num_classes) of every graph, in the order of ``graphs``. Optional
    extras, appended in this order to make a tuple ``(probs, [labels], [diagnostics])``:
    ``return_labels``: each graph's node labels after the last step's consistency check (N_i,) int64;
    ``return_diagnostics``: each graph's :class:`SeedDiagnostics` (seeds removed by Eq. 28 in the final epoch).
    """
    order = sorted(range(len(graphs)), key=lambda i: (graphs[i].num_nodes, graphs[i].image_id))
    if batch_images < 1:
        raise ValueError(f"batch_images must be >= 1, got {batch_images}")
    chunks = [order[s:s + batch_images] for s in range(0, len(order), batch_images)]
    devices = shard_devices(device, workers)
    jobs = [([graphs[i] for i in chunk], cfg, num_classes, devices[k % len(devices)], seed)
            for k, chunk in enumerate(chunks)]
    if workers > 1 and (torch.device(device).type == "cpu" or len(devices) > 1):
        # largest batches first (they were sorted by size): the last batch to start is a small one, so the
        # processes finish together (longest-processing-time-first); each batch's result is order-independent
        outputs = parallel_map(_train_batch_job, jobs[::-1], workers, desc="a2gnn")[::-1]
    else:
        outputs = [_train_batch_job(job) for job in (progress(jobs) if progress is not None else jobs)]
    probs: list[Tensor | None] = [None] * len(graphs)
    diagnostics: list[SeedDiagnostics | None] = [None] * len(graphs)
    for chunk, (chunk_probs, chunk_diag) in zip(chunks, outputs):
        for i, p, d in zip(chunk, chunk_probs, chunk_diag):
            probs[i], diagnostics[i] = p, d
    if not (return_labels or return_diagnostics):
        return probs
    extras = ([[d.labels for d in diagnostics]] if return_labels else []) + ([diagnostics] if return_diagnostics else [])
    return (probs, *extras)
