"""Many image graphs as one padded batch for the batched A²GNN (:class:`GraphBatch`, :func:`collate`): nodes
padded per image, edges joined block-diagonally, the box lines of L_mp, the consistency candidates and the pixel
taps of image-resolution L_ce; and the checks a graph must pass first (:func:`check_graph`)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor

from a2gnn.gnn.consistency import member_seed_candidates, nodes_outside
from a2gnn.gnn.layers import EdgeCSR
from a2gnn.gnn.model import GNNConfig
from a2gnn.graph.types import ImageGraph
from a2gnn.core.io import IGNORE_INDEX, DataError
from a2gnn.gnn.losses import box_lines


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
