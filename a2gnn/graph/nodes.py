r"""What a graph node is (Table 4(c), ``graph.nodes``): the entries of :data:`a2gnn.graph.types.NODE_LAYOUTS`.

Boxes, colours and ``ImageGraph.grid`` are always on the backbone's ``h x w`` feature grid (:mod:`a2gnn.ops.grid`);
a :class:`NodeLayout` says how the nodes relate to that grid and to the image, for every step that depends on it:

========================  ==================================  ============================================
step                      ``grid`` (:class:`GridNodes`, paper)  ``superpixels`` (:class:`SuperpixelNodes`, [21])
========================  ==================================  ============================================
nodes, X, E, labels,      feature-grid pixels, Eq. 14/15,     SLIC [23] superpixels, pooled X + Eq. 15, L1
L_reg pairs (build)       :func:`grid_node_fields`  edges of adjacent ones, majority seed labels,
                                                              centroid-radius pairs
                                                              (:func:`a2gnn.graph.superpixels.superpixel_node_fields`)
L_mp box lines (Eq. 23)   the box's rows / columns of cells   the superpixels under those cells' centre pixels
in box (Eq. 27-28, bg)    the cells of the box                superpixels whose centroid's cell is in the box
L_ce at image resolution  bilinear taps of the grid           the pixel's own superpixel
output -> image (§5)      bilinear up-sampling                through the superpixel id map (constant per node)
========================  ==================================  ============================================

So MP loss, consistency checking (Eq. 27-28, all three scales) and L_reg all work with superpixel nodes; the only
unsupported combination is superpixel nodes with ``graph.edges: affinity`` (GraphConfig raises ConfigError:
Table 4(c) pairs superpixels with L1-distance edges only). The trainer (:mod:`a2gnn.gnn.train`) and the scorer
(:mod:`a2gnn.pseudo_labels.a2gnn`) only call ``graph.layout`` methods; the grid layout calls exactly the functions
they called before, so grid graphs and their results are unchanged.
"""

from __future__ import annotations

import typing

import numpy as np
import torch
from torch import Tensor

from a2gnn.graph import superpixels as sp
from a2gnn.graph.edges import regulariser_pairs
from a2gnn.graph.features import normalize_node_features
from a2gnn.graph.types import EDGE_SOURCES, NODE_LAYOUTS, GraphConfig, ImageGraph, NodeFields
from a2gnn.ops.grid import GridMap


class NodeLayout(typing.Protocol):
    """The node-dependent operations of the pipeline (shapes: N nodes, M boxes, S pixels, C classes)."""

    def node_fields(self, f_a: Tensor, features: Tensor, image: np.ndarray, m_g: np.ndarray, colours: Tensor,
                    cfg: GraphConfig, device: torch.device | str) -> NodeFields:
        """Build the nodes: F_A (d_A, h, w), taps (D_g, h, w), image (H, W, 3) uint8, M_g (H, W), grid colours
        (3, h, w) -> :class:`a2gnn.graph.types.NodeFields`."""

    def cell_nodes(self, graph: ImageGraph, cells: Tensor) -> Tensor:
        """Grid cell ids -> the node at each cell (entries < 0, padding, kept). Shapes: (...) -> (...)."""

    def box_nodes(self, graph: ImageGraph, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(box, node) pairs of the nodes inside each grid box. Shapes: boxes (M, 5) -> (Q,), (Q,) by box, node."""

    def pixel_taps(self, graph: ImageGraph, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Node taps of flat pixel ids: node (S, 4), weight (S, 4), the pixel's own node (S,)."""

    def to_image(self, graph: ImageGraph, probs: Tensor, channels: np.ndarray) -> np.ndarray:
        """Node probabilities O (N, C) -> (len(channels), H, W) float32 maps of those classes, >= 0."""

    def node_labels(self, graph: ImageGraph, label_map: np.ndarray | Tensor, mode: str) -> Tensor:
        """An (H, W) label map on the nodes (255 = none), as the seeds are; ``mode`` = graph.label_downsample."""

    def check(self, graph: ImageGraph) -> str | None:
        """A contract problem of the layout's own fields, or None."""


def grid_probs_to_image(probs: Tensor, grid: tuple[int, int], image_size: tuple[int, int],
                        channels: np.ndarray) -> np.ndarray:
    """A²GNN output O (N, C) on the grid -> (len(channels), H, W), bilinearly up-sampled with the one image <-> grid
    mapping (:meth:`a2gnn.ops.grid.GridMap.upsample`, §5)."""
    maps = probs.t().reshape(probs.shape[1], grid[0], grid[1])[torch.from_numpy(channels)]
    return GridMap.from_sizes(image_size, grid).upsample(maps).clamp_min(0).numpy()


class GridNodes:
    """``graph.nodes: grid`` - node n = feature-grid cell (n // w, n % w) (the paper, §4.3.2)."""

    def node_fields(self, f_a, features, image, m_g, colours, cfg, device) -> NodeFields:
        return grid_node_fields(f_a, features, m_g, colours, cfg, device)

    def cell_nodes(self, graph: ImageGraph, cells: Tensor) -> Tensor:
        return cells

    def box_nodes(self, graph: ImageGraph, boxes: Tensor) -> tuple[Tensor, Tensor]:
        return box_nodes(boxes, graph.grid)

    def pixel_taps(self, graph: ImageGraph, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mapping = graph.grid_map
        node, weight = mapping.bilinear_taps(pixels)
        return node, weight, mapping.pixel_nodes(pixels)

    def to_image(self, graph: ImageGraph, probs: Tensor, channels: np.ndarray) -> np.ndarray:
        return grid_probs_to_image(probs, graph.grid, graph.image_size, channels)

    def node_labels(self, graph: ImageGraph, label_map, mode: str) -> Tensor:
        return graph.grid_map.downsample_labels(label_map, mode).reshape(-1)

    def check(self, graph: ImageGraph) -> str | None:
        return None


class SuperpixelNodes:
    """``graph.nodes: superpixels`` - node k = SLIC superpixel k, ``graph.superpixels`` its (H, W) id map
    (Table 4(c) "S.P. + Dis.", GraphNet [21]; :mod:`a2gnn.graph.superpixels`)."""

    def node_fields(self, f_a, features, image, m_g, colours, cfg, device) -> NodeFields:
        return sp.superpixel_node_fields(f_a, features, image, m_g, colours, cfg, device)

    def cell_nodes(self, graph: ImageGraph, cells: Tensor) -> Tensor:
        cell_node = sp.grid_nodes(graph.superpixels.cpu(), graph.grid).to(cells.device)
        return torch.where(cells >= 0, cell_node[cells.clamp_min(0)], cells)

    def box_nodes(self, graph: ImageGraph, boxes: Tensor) -> tuple[Tensor, Tensor]:
        positions = sp.superpixel_positions(graph.superpixels.cpu(), graph.grid)
        box, node = sp.superpixel_box_nodes(positions, boxes, graph.grid)
        return box.to(boxes.device), node.to(boxes.device)

    def pixel_taps(self, graph: ImageGraph, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return sp.superpixel_pixel_taps(graph.superpixels.cpu(), pixels)

    def to_image(self, graph: ImageGraph, probs: Tensor, channels: np.ndarray) -> np.ndarray:
        maps = sp.superpixels_to_pixels(probs[:, torch.from_numpy(channels)], graph.superpixels.cpu())
        return maps.permute(2, 0, 1).float().clamp_min(0).contiguous().numpy()

    def node_labels(self, graph: ImageGraph, label_map, mode: str) -> Tensor:
        return sp.superpixel_labels(np.asarray(label_map), graph.superpixels.cpu())

    def check(self, graph: ImageGraph) -> str | None:
        if tuple(graph.superpixels.shape) != tuple(graph.image_size):
            return f"superpixels has shape {tuple(graph.superpixels.shape)}, expected the image size " \
                   f"{tuple(graph.image_size)}"
        if graph.superpixels.numel() and int(graph.superpixels.min()) < 0:
            return "superpixels has negative node ids"
        return None


def box_nodes(boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Every (box, node) pair with the node inside the box; boxes ``[x1, y1, x2, y2, class]`` half-open on the grid.

    Shapes: boxes (M, 5) -> box (Q,), node (Q,), sorted by box then node (node n at (n // w, n % w)).
    """
    boxes = boxes.to(torch.int64)
    w = int(grid[1])
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    bh, bw = (y2 - y1).clamp_min(0), (x2 - x1).clamp_min(0)
    area = bh * bw
    box = torch.repeat_interleave(torch.arange(boxes.shape[0], device=boxes.device), area)
    k = torch.arange(box.shape[0], device=boxes.device) - (torch.cumsum(area, 0) - area)[box]
    node = (y1[box] + k // bw[box].clamp_min(1)) * w + x1[box] + k % bw[box].clamp_min(1)
    return box, node


def grid_node_fields(
    f_a: Tensor, features: Tensor, m_g: np.ndarray, colours: Tensor, cfg: GraphConfig, device: torch.device | str
) -> NodeFields:
    """Grid nodes (the paper, §4.3.2): X = the taps by Eq. (15), E from :data:`EDGE_SOURCES` ``[cfg.edges]``, labels =
    M_g down-sampled to the grid (``cfg.label_downsample``), L_reg pairs of Eq. (13) on the grid colours.

    Shapes: f_a (d_A, h, w), features (D_g, h, w), m_g (H, W) uint8, colours (3, h, w) in [0, 1] -> N = h w.
    """
    h, w = f_a.shape[-2:]
    mapping = GridMap.from_sizes(m_g.shape[:2], (h, w))
    x = normalize_node_features(features.reshape(features.shape[0], h * w).t().float())
    edge_index, edge_weight = EDGE_SOURCES[cfg.edges](f_a, x, cfg, device)
    pair_index, pair_weight = regulariser_pairs(
        colours, cfg.reg_radius, cfg.reg_sigma_xy, cfg.reg_sigma_rgb, cfg.reg_squared_distance
    )
    labels = mapping.downsample_labels(m_g, cfg.label_downsample).reshape(-1)
    return NodeFields(x, edge_index, edge_weight, labels, pair_index, pair_weight)


NODE_LAYOUTS.add("grid", GridNodes())
NODE_LAYOUTS.add("superpixels", SuperpixelNodes())
