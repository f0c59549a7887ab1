"""Image -> graph (paper §4.3.2, Eq. 14-15; Table 4(c) variants).

The :class:`a2gnn.graph.types.ImageGraph` container is the contract between graph construction (affinity CNN side)
and the A²GNN (training side). Its boxes, colours and ``grid`` live on the backbone's feature grid of size
``(h, w)``; what a *node* is depends on ``graph.nodes`` (:data:`a2gnn.graph.types.NODE_LAYOUTS`, Table 4(c)):

* ``grid`` (the paper, default): node ``n`` is the feature-grid pixel at row ``n // w`` and column ``n % w``
  (:func:`a2gnn.graph.nodes.grid_node_fields`, :class:`a2gnn.graph.nodes.GridNodes`).
* ``superpixels`` (Table 4(c) "S.P. + Dis.", GraphNet [21]): node ``k`` is SLIC [23] superpixel ``k`` of the image,
  ``ImageGraph.superpixels`` its (H, W) id map (:mod:`a2gnn.graph.superpixels`, :class:`a2gnn.graph.nodes.SuperpixelNodes`).

Construction (:func:`build_image_graph`, :func:`build_graphs`): a trained :class:`AffinityNet` gives F_A, whose
affinities D (Eq. 8) on the radius-r neighbourhood become the edges E (Eq. 14, :func:`a2gnn.graph.edges.affinity_edges`); the
concatenated backbone taps normalised by Eq. (15) become the node features X; ``graph.edges`` picks the edge
source from :data:`a2gnn.graph.types.EDGE_SOURCES` (Table 4(c): ``affinity`` = Eq. 14, the paper; ``l1`` = L1 distance of the node
features, :func:`a2gnn.graph.edges.l1_edges`); M_g down-sampled to the grid gives the node labels; boxes are mapped to the grid
(:func:`boxes_to_grid`); the Gaussian kernel of Eq. (13) on the grid colours gives the L_reg pairs
(:func:`a2gnn.graph.edges.regulariser_pairs`). Every image <-> grid conversion (labels, boxes, colours) uses the one stride-aligned
mapping of :mod:`a2gnn.ops.grid`, as does the up-sampling of the output. Everything that depends on the kind of node
(node fields, box lines of L_mp, nodes inside a box for Eq. 27-28, the pixel taps of image-resolution L_ce, the
output -> image mapping) is a method of the :class:`a2gnn.graph.nodes.NodeLayout` that ``graph.nodes`` names in
:data:`a2gnn.graph.types.NODE_LAYOUTS`: the one dispatch.
"""

from __future__ import annotations

import os
import typing

import numpy as np
import torch
from torch import Tensor

from a2gnn.affinity.model import AffinityNet
from a2gnn.data.labels import load_seed_pair
from a2gnn.data.transforms import normalize_image
from a2gnn.core.cli import progress
from a2gnn.data.voc import Annotation, VOCDataset
from a2gnn.graph.features import project_node_features
from a2gnn.graph.types import NODE_LAYOUTS, GraphConfig, ImageGraph
from a2gnn.ops.grid import GridMap
from a2gnn.core.io import IGNORE_INDEX


# --------------------------------------------------------------------------------------------------------------
# Graph construction (Eq. 14-15) from a trained affinity CNN
# --------------------------------------------------------------------------------------------------------------


def boxes_to_grid(annotation: Annotation, grid: tuple[int, int], rule: str = "touch") -> Tensor:
    r"""Boxes in image pixels -> half-open boxes on the ``h x w`` feature grid (:meth:`a2gnn.ops.grid.GridMap.boxes`).

    Cell ``(a, b)`` is the pixel block ``[a s, (a+1) s) x [b s, (b+1) s)`` of the stride ``s`` implied by the
    image and grid sizes. ``rule="touch"`` (default) keeps every cell the pixel box meets,
    :math:`x_1^g = \lfloor x_1 / s \rfloor`, :math:`x_2^g = \lceil x_2 / s \rceil` (same for y), clipped to the
    grid, so a non-empty pixel box always gives a non-empty grid box; ``"centre"`` keeps the cells whose centres
    lie inside the box.

    Shapes: annotation with M boxes -> (M, 5) int64 rows [x1, y1, x2, y2, class].
    """
    if not annotation.boxes:
        return torch.zeros(0, 5, dtype=torch.int64)
    b = torch.tensor([[bx.x1, bx.y1, bx.x2, bx.y2, bx.label] for bx in annotation.boxes], dtype=torch.int64)
    return GridMap.from_sizes((annotation.height, annotation.width), grid).boxes(b, rule)


def _graph_from_outputs(
    image_id: str,
    f_a: Tensor,
    features: Tensor,
    image: np.ndarray,
    m_g: np.ndarray,
    annotation: Annotation,
    cfg: GraphConfig,
    device: torch.device | str = "cpu",
) -> ImageGraph:
    """ImageGraph of one image from its F_A (d_A, h, w) and concatenated taps (D_g, h, w) (on the CPU; an edge
    source may compute on ``device``); the nodes from ``NODE_LAYOUTS[cfg.nodes]``."""
    h, w = f_a.shape[-2:]
    mapping = GridMap.from_sizes(image.shape[:2], (h, w))
    colours = mapping.downsample_image(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0))
    fields = NODE_LAYOUTS[cfg.nodes].node_fields(f_a, features, image, m_g, colours, cfg, device)
    x = project_node_features(fields.x, cfg.feature_dim)
    return ImageGraph(
        image_id=image_id,
        x=x.contiguous(),
        edge_index=fields.edge_index,
        edge_weight=fields.edge_weight,
        labels=fields.labels,
        boxes=boxes_to_grid(annotation, (h, w), cfg.box_cells),
        grid=(int(h), int(w)),
        image_size=(int(image.shape[0]), int(image.shape[1])),
        pair_index=fields.pair_index,
        pair_weight=fields.pair_weight,
        image=colours,
        seeds=torch.from_numpy(np.ascontiguousarray(m_g, dtype=np.uint8)),
        superpixels=fields.superpixels,
    )


@torch.no_grad()
def _forward(model: AffinityNet, images: list[np.ndarray], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """F_A and node features of equal-size images, on the CPU: (B, d_A, h, w), (B, D_g, h, w)."""
    x = torch.stack([normalize_image(im) for im in images]).to(device)
    f_a, taps = model(x)
    return f_a.cpu(), AffinityNet.node_features(taps).cpu()


def build_image_graph(
    model: AffinityNet,
    image: np.ndarray,
    m_g: np.ndarray,
    annotation: Annotation,
    cfg: GraphConfig,
    device: torch.device | str = "cpu",
) -> ImageGraph:
    """Convert one image to a graph (§4.3.2, Fig. 4): nodes = feature-grid pixels, X = concatenated taps
    normalised by Eq. (15), E = Eq. (14) (or :data:`EDGE_SOURCES` ``[cfg.edges]``), labels = M_g down-sampled to
    the grid, boxes on the grid, L_reg pairs; with ``cfg.nodes = "superpixels"`` the nodes are SLIC superpixels
    instead (Table 4(c), :class:`a2gnn.graph.nodes.SuperpixelNodes`).

    The model runs in eval mode (its previous mode is restored). Shapes: image (H, W, 3) uint8, m_g (H, W) uint8.
    """
    if m_g.shape != image.shape[:2]:
        raise ValueError(f"seed map {m_g.shape} does not match image {image.shape[:2]}")
    was_training = model.training
    model.eval()
    try:
        f_a, feats = _forward(model, [image], device)
    finally:
        model.train(was_training)
    return _graph_from_outputs(annotation.image_id, f_a[0], feats[0], image, m_g, annotation, cfg, device)


def _image_and_seeds(dataset, seed_dir: os.PathLike | str | None, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image and its seed map; without ``seed_dir`` (methods that need no node labels) every node is unlabelled."""
    if seed_dir is None:
        image = dataset.image(image_id)
        return image, np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
    return load_seed_pair(dataset, seed_dir, image_id)


def build_graphs(
    model: AffinityNet,
    dataset: VOCDataset,
    seed_dir: os.PathLike | str | None,
    cfg: GraphConfig,
    device: torch.device | str = "cpu",
    ids: list[str] | None = None,
) -> list[ImageGraph]:
    """Graphs of ``ids`` (default: the whole split), in that order, with seeds from ``seed_dir/<id>.png``.

    Images of equal size go through the affinity CNN together, ``cfg.batch_size`` at a time. A seed map of the
    wrong size raises DataError naming it.
    """
    ids = list(dataset.ids if ids is None else ids)
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, image_id in enumerate(ids):
        ann = dataset.annotation(image_id)
        by_size.setdefault((ann.height, ann.width), []).append(n)
    chunks = [
        idx[start : start + cfg.batch_size]
        for _, idx in sorted(by_size.items())
        for start in range(0, len(idx), cfg.batch_size)
    ]
    graphs: list[ImageGraph | None] = [None] * len(ids)
    was_training = model.training
    model.eval()
    try:
        for chunk in progress(chunks, desc="graphs", total=len(chunks)):
            images, seeds = zip(*(_image_and_seeds(dataset, seed_dir, ids[n]) for n in chunk))
            f_a, feats = _forward(model, list(images), device)
            for b, n in enumerate(chunk):
                graphs[n] = _graph_from_outputs(
                    ids[n], f_a[b], feats[b], images[b], seeds[b], dataset.annotation(ids[n]), cfg, device
                )
    finally:
        model.train(was_training)
    return typing.cast(list[ImageGraph], graphs)
