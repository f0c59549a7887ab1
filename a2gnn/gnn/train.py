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

from a2gnn.gnn.consistency import CONSISTENCY_SCALES, box_prototypes, consistency_check
from a2gnn.gnn.model import A2GNN, BatchedA2GNN, GNNConfig, draw_dropout_mask
from a2gnn.graph.types import ImageGraph
from a2gnn.core import numerics
from a2gnn.core.io import IGNORE_INDEX
from a2gnn.core.parallel import parallel_map
from a2gnn.gnn.losses import (
    cross_entropy_image_loss,
    cross_entropy_loss,
    multi_point_loss,
    multi_point_sets,
    regularized_loss,
    select_multi_points,
    total_loss,
)
from a2gnn.gnn.batch import GraphBatch, collate

Forward = Callable[[Tensor | None], tuple[Tensor, Tensor]]


def image_seed(seed: int, image_id: str) -> int:
    """Seed of one image's generator: ``seed`` + CRC-32 of the id (stable across runs and list orders)."""
    return (int(seed) + zlib.crc32(image_id.encode("utf-8"))) % (2**63)


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
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **numerics.adam_options())


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
