r"""Superpixel graphs (Table 4(c) "S.P. + Dis.", the graph of GraphNet [21]): ``graph.nodes: superpixels``.

The paper: "*Superpixel (S.P.)* means that we adopt [21] to produce graph nodes and their features", and of [21]:
"the superpixel method [23] was applied to produce the graph nodes. They used a pre-trained CNN model to obtain
the node feature, which was computed using average pooling for all its pixels. After that an adjacency matrix was
computed based on the L1 distance between a node and its 8-neighbor nodes." The pieces:

* :func:`slic` - SLIC [23] superpixels (neither scikit-image nor opencv-contrib is installed, so a small
  deterministic, vectorised SLIC: k-means in (y, x, Lab) from a fixed grid of seeds, each pixel compared with
  the 3 x 3 seeds around its own seed cell, then connectivity enforced); labels ``0..K-1`` in raster order.
  It runs on the image at the size the affinity CNN sees (full resolution); ``graph.sp_segments`` /
  ``graph.sp_compactness`` are its ``n_segments`` / ``compactness``.
* :func:`pool_features` - node features: the mean of the backbone features over each superpixel's pixels (each
  pixel reads its stride-aligned feature-grid cell, :mod:`a2gnn.ops.grid`), then Eq. (15) as for grid nodes.
* :func:`superpixel_adjacency` - superpixels that touch (8-connected pixels by default).
* :func:`superpixel_edges` - edge weights from the L1 feature distance of adjacent superpixels, the same formula
  as the grid-node ``graph.edges: l1`` (:func:`a2gnn.graph.edges.l1_distance_weights`), self loops 1, σ cut.
* :func:`superpixel_labels` - node labels from M_g (majority of the labelled pixels, 255 if none).
* :func:`superpixels_to_pixels` / :func:`grid_nodes` - predictions back to pixels / to the feature grid.
* :func:`superpixel_graph` - all of it for one image (a dict; the pipeline's :class:`a2gnn.graph.build.ImageGraph` is
  built by :func:`superpixel_node_fields`).

**In the pipeline** (:class:`a2gnn.graph.nodes.SuperpixelNodes`, the ``superpixels`` entry of ``graph.nodes``):
the GNN runs on the K superpixel nodes; boxes and colours stay on the feature grid, and what the A²GNN losses
need of the nodes is defined here:

* L_reg (Eq. 13, 22): :func:`superpixel_regulariser_pairs` - pairs of superpixels whose centroids
  (:func:`superpixel_positions`, in grid cells) are within ``graph.reg_radius``, G of Eq. (13) on the centroid
  offset and the mean colours (:func:`superpixel_means`); with one superpixel per grid cell this is exactly
  :func:`a2gnn.graph.edges.regulariser_pairs`.
* L_mp (Eq. 23-25): a box's row / column of grid cells becomes the superpixels under those cells' centre pixels
  (:func:`grid_nodes`), so Eq. (23) picks the best superpixel the line crosses.
* Consistency checking (Eq. 27-28) and the background prototype: a superpixel lies in a box iff its centroid's
  grid cell does (:func:`superpixel_box_nodes`).
* L_ce at image resolution: every labelled pixel reads its own superpixel (:func:`superpixel_pixel_taps`).
* Output: node probabilities -> pixels through the id map (:func:`superpixels_to_pixels`), no up-sampling.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from a2gnn.affinity.losses import gaussian_kernel
from a2gnn.graph.edges import l1_distance_weights
from a2gnn.graph.features import normalize_node_features
from a2gnn.graph.types import GraphConfig, NodeFields
from a2gnn.ops.grid import GridMap
from a2gnn.core.io import IGNORE_INDEX

from a2gnn.ops.slic import SLIC_COMPACTNESS, SLIC_SEGMENTS, slic  # noqa: F401  (re-exported: SLIC [23])


def _as_long(labels: np.ndarray | Tensor) -> Tensor:
    return labels.long() if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels, dtype=np.int64))


def pool_features(features: Tensor, labels: np.ndarray | Tensor, normalize: bool = True) -> Tensor:
    r"""Superpixel node features: the mean over each superpixel's pixels, then Eq. (15) (``normalize``).

    ``features`` may be on the stride-s feature grid of the image (``(h, w) = ceil((H, W) / s)``): each pixel then
    reads its stride-aligned cell (nearest up-sampling, :meth:`a2gnn.ops.grid.GridMap.pixel_cells`), computed as
    :math:`x_k = \frac{1}{|k|} \sum_c n_{kc} f_c` with :math:`n_{kc}` the pixels of superpixel k in cell c, so the
    (D, H, W) up-sampled map is never built.

    Shapes: features (D, h, w), labels (H, W) in 0..K-1 -> (K, D) float32.
    """
    lab = _as_long(labels)
    H, W = lab.shape
    D, h, w = features.shape
    mapping = GridMap.from_sizes((H, W), (h, w))
    ry, rx = mapping.pixel_cells()
    cell = (ry[:, None] * w + rx[None, :]).reshape(-1)
    K = int(lab.max()) + 1
    counts = torch.zeros(K * h * w, dtype=torch.float32)  # pixel counts: exact in float32 below 2^24
    counts.index_add_(0, lab.reshape(-1) * (h * w) + cell, torch.ones(H * W, dtype=torch.float32))
    counts = counts.view(K, h * w)
    x = (counts @ features.reshape(D, h * w).t().float()) / counts.sum(1, keepdim=True).clamp_min(1)
    return normalize_node_features(x) if normalize else x


def superpixel_adjacency(labels: np.ndarray | Tensor, connectivity: int = 8) -> Tensor:
    """Pairs (a, b), a != b, of superpixels with touching pixels (4- or 8-connected), both orders, sorted by (a, b).

    Shapes: labels (H, W) in 0..K-1 -> (2, E) int64.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    lab = _as_long(labels)
    K = int(lab.max()) + 1
    pairs = [(lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])]
    if connectivity == 8:
        pairs += [(lab[:-1, :-1], lab[1:, 1:]), (lab[:-1, 1:], lab[1:, :-1])]
    a = torch.cat([p.reshape(-1) for p, _ in pairs])
    b = torch.cat([q.reshape(-1) for _, q in pairs])
    differ = a != b
    a, b = a[differ], b[differ]
    keys = torch.unique(torch.cat([a * K + b, b * K + a]))  # sorted
    return torch.stack([keys // K, keys % K])


def superpixel_edges(
    x: Tensor, adjacency: Tensor, sigma: float = 0.0, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""Edges between adjacent superpixels weighted by their L1 feature distance, plus self loops (weight 1).

    :math:`E_{ab} = w_{ab}` if :math:`w_{ab} > \sigma`, :math:`w_{ab} = \exp(-\|x_a - x_b\|_1 / (\kappa \bar d))`,
    :math:`\bar d` the mean distance over the adjacent pairs: the formula of the grid-node
    :func:`a2gnn.graph.edges.l1_edges` on the superpixel adjacency instead of the radius-r disc. Sorted by (a, b).

    Shapes: x (K, D), adjacency (2, E) from :func:`superpixel_adjacency` -> edge_index (2, E' + K) int64,
    edge_weight (E' + K,) float32.
    """
    K = x.shape[0]
    dist = (x[adjacency[0]] - x[adjacency[1]]).abs().sum(1)
    weight = l1_distance_weights(dist, dist, scale)
    keep = weight > sigma
    loops = torch.arange(K, dtype=torch.int64)
    index = torch.cat([adjacency[:, keep], torch.stack([loops, loops])], dim=1)
    values = torch.cat([weight[keep].float(), torch.ones(K)])
    order = torch.argsort(index[0] * K + index[1])
    return index[:, order], values[order]


def superpixel_labels(m_g: np.ndarray, labels: np.ndarray | Tensor) -> Tensor:
    """Node labels from the seed map: the most frequent labelled class of each superpixel's pixels (ties: the
    smaller class), 255 where none of its pixels is labelled. Shapes: m_g (H, W) uint8, labels (H, W) -> (K,)."""
    lab = _as_long(labels).reshape(-1)
    seeds = torch.from_numpy(np.asarray(m_g, dtype=np.int64)).reshape(-1)
    K = int(lab.max()) + 1
    known = seeds != IGNORE_INDEX
    votes = torch.zeros(K * 256, dtype=torch.int64)
    votes.index_add_(0, lab[known] * 256 + seeds[known], torch.ones(int(known.sum()), dtype=torch.int64))
    votes = votes.view(K, 256)
    best = votes.argmax(1)  # first maximum = smallest class
    return torch.where(votes.sum(1) > 0, best, torch.full_like(best, IGNORE_INDEX))


def superpixels_to_pixels(values: Tensor, labels: np.ndarray | Tensor) -> Tensor:
    """Per-superpixel values (predictions, scores) -> every pixel. Shapes: (K, ...), labels (H, W) -> (H, W, ...)."""
    return values[_as_long(labels).to(values.device)]


def grid_nodes(labels: np.ndarray | Tensor, grid: tuple[int, int]) -> Tensor:
    """Node -> grid mapping: the superpixel of every feature-grid cell's centre pixel (:mod:`a2gnn.ops.grid`), so
    ``values[grid_nodes(...)]`` puts superpixel outputs on the ``h x w`` grid. Shapes: labels (H, W) -> (h w,)."""
    lab = _as_long(labels)
    py, px = GridMap.from_sizes(tuple(lab.shape), grid).centre_pixels()
    return lab[py[:, None], px[None, :]].reshape(-1)


def superpixel_graph(
    image: np.ndarray,
    features: Tensor,
    m_g: np.ndarray | None = None,
    n_segments: int = SLIC_SEGMENTS,
    compactness: float = SLIC_COMPACTNESS,
    sigma: float = 0.0,
    scale: float = 1.0,
    connectivity: int = 8,
) -> dict[str, Tensor]:
    """GraphNet-style graph of one image (Table 4(c) "S.P."): SLIC nodes, mean-pooled Eq. 15 features, L1 edges.

    Shapes: image (H, W, 3) uint8, features (D, h, w) on its feature grid, m_g (H, W) uint8 -> dict with
    ``superpixels`` (H, W) int64, ``x`` (K, D), ``edge_index`` (2, E), ``edge_weight`` (E,), ``labels`` (K,)
    (all 255 without ``m_g``) and ``cell_node`` (h w,) (:func:`grid_nodes`).
    """
    sp = torch.from_numpy(slic(image, n_segments, compactness))
    x = pool_features(features, sp)
    edge_index, edge_weight = superpixel_edges(x, superpixel_adjacency(sp, connectivity), sigma, scale)
    K = x.shape[0]
    labels = superpixel_labels(m_g, sp) if m_g is not None else torch.full((K,), IGNORE_INDEX, dtype=torch.int64)
    return {"superpixels": sp, "x": x, "edge_index": edge_index, "edge_weight": edge_weight, "labels": labels,
            "cell_node": grid_nodes(sp, tuple(features.shape[-2:]))}


# --------------------------------------------------------------------------------------------------------------
# Superpixel nodes in the A²GNN pipeline (graph.nodes: superpixels)
# --------------------------------------------------------------------------------------------------------------


def superpixel_means(values: Tensor, labels: np.ndarray | Tensor) -> Tensor:
    """Mean of ``values`` over each superpixel's pixels (at the id map's resolution).

    Shapes: values (C, H, W), labels (H, W) in 0..K-1 -> (K, C) float64.
    """
    lab = _as_long(labels).reshape(-1)
    K = int(lab.max()) + 1
    v = values.reshape(values.shape[0], -1).t().to(torch.float64)
    sums = torch.zeros(K, v.shape[1], dtype=torch.float64).index_add_(0, lab, v)
    return sums / torch.bincount(lab, minlength=K).clamp_min(1).to(torch.float64)[:, None]


def superpixel_positions(labels: np.ndarray | Tensor, grid: tuple[int, int]) -> Tensor:
    r"""Superpixel centroids in grid-cell units, cell (a, b) at (a, b): pixel-centre mean :math:`\bar p` ->
    :math:`(\bar p + 1/2) / s - 1/2` (:mod:`a2gnn.ops.grid`: cell a holds pixels [a s, (a + 1) s), centre (a + 1/2) s),
    so a superpixel that is exactly one full cell sits on that cell.

    Shapes: labels (H, W), grid (h, w) -> (K, 2) float64 rows (y, x).
    """
    lab = _as_long(labels)
    H, W = lab.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    return GridMap.from_sizes((H, W), grid).cell_coordinates(superpixel_means(torch.stack([ys, xs]), lab))


def superpixel_box_nodes(positions: Tensor, boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Every (box, superpixel) pair with the superpixel inside the box: the grid cell holding its centroid (nearest
    cell, clipped to the grid) lies in the half-open grid box ``[x1, y1, x2, y2, class]``. The superpixel form of
    :func:`a2gnn.graph.nodes.box_nodes` (Eq. 27-28 candidates, nodes outside every box).

    Shapes: positions (K, 2) from :func:`superpixel_positions`, boxes (M, 5) -> box (Q,), node (Q,) int64, sorted
    by box then node.
    """
    cell = torch.floor(positions + 0.5).to(torch.int64)
    y = cell[:, 0].clamp(0, grid[0] - 1)[None, :]
    x = cell[:, 1].clamp(0, grid[1] - 1)[None, :]
    b = boxes.to(torch.int64).reshape(-1, 5).cpu()
    inside = (x >= b[:, 0:1]) & (x < b[:, 2:3]) & (y >= b[:, 1:2]) & (y < b[:, 3:4])  # (M, K)
    box, node = inside.nonzero(as_tuple=True)
    return box, node


def superpixel_regulariser_pairs(
    positions: Tensor, colours: Tensor, radius: float, sigma_xy: float, sigma_rgb: float,
    squared_distance: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""L_reg pairs (Eq. 22) of superpixel nodes: (a, b), a != b, with centroids at most ``radius`` grid cells apart,
    and G(a, b) of Eq. (13) (:func:`a2gnn.affinity.losses.gaussian_kernel`) on the centroid offset (grid cells) and
    the mean colours. The grid nodes' :func:`a2gnn.graph.edges.regulariser_pairs` is the case of one superpixel per cell.
    Both orders listed, sorted by (a, b); O(K^2) memory.

    Shapes: positions (K, 2) from :func:`superpixel_positions`, colours (K, 3) in [0, 1] -> pair_index (2, P) int64,
    pair_weight (P,) float32.
    """
    pos_diff = positions[:, None, :] - positions[None, :, :]  # Pos(a) - Pos(b)
    close = pos_diff.pow(2).sum(-1) <= float(radius) ** 2
    close.fill_diagonal_(False)
    a, b = close.nonzero(as_tuple=True)
    g = gaussian_kernel(pos_diff[a, b].float(), (colours[a] - colours[b]).float(), sigma_xy, sigma_rgb,
                        squared_distance)
    return torch.stack([a, b]), g.float()


def superpixel_pixel_taps(labels: np.ndarray | Tensor, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Image-resolution L_ce taps (the superpixel form of :meth:`a2gnn.ops.grid.GridMap.bilinear_taps`): every pixel
    reads its own superpixel, as 4 taps (node k, weights 1, 0, 0, 0) so that they stack with bilinear grid taps.

    Shapes: labels (H, W), pixels (S,) flat ids y W + x -> node (S, 4) int64, weight (S, 4) float32, own node (S,).
    """
    node = _as_long(labels).reshape(-1)[pixels.cpu()]
    weight = torch.zeros(node.shape[0], 4)
    weight[:, 0] = 1.0
    return node[:, None].expand(-1, 4).contiguous(), weight, node


def superpixel_node_fields(
    f_a: Tensor, features: Tensor, image: np.ndarray, m_g: np.ndarray, colours: Tensor, cfg: GraphConfig,
    device: torch.device | str = "cpu",
) -> NodeFields:
    """Superpixel nodes of one image (Table 4(c) "S.P. + Dis."): SLIC [23] on the image (``cfg.sp_segments``,
    ``cfg.sp_compactness``), X = pooled taps + Eq. (15) (:func:`pool_features`), edges between adjacent superpixels
    from their L1 distance (:func:`superpixel_edges`, σ = ``cfg.sigma``, κ = ``cfg.l1_scale``), labels =
    :func:`superpixel_labels` of M_g, L_reg pairs :func:`superpixel_regulariser_pairs` (``cfg.reg_*``). F_A, the grid
    colours and ``device`` are not used (all on the CPU; K is small).

    Shapes: features (D_g, h, w), image (H, W, 3) uint8, m_g (H, W) uint8 -> N = K fields, superpixels (H, W) int64.
    """
    sp = torch.from_numpy(slic(image, cfg.sp_segments, cfg.sp_compactness))
    x = pool_features(features, sp)
    edge_index, edge_weight = superpixel_edges(x, superpixel_adjacency(sp), cfg.sigma, cfg.l1_scale)
    positions = superpixel_positions(sp, tuple(features.shape[-2:]))
    rgb = superpixel_means(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) / 255.0, sp)
    pair_index, pair_weight = superpixel_regulariser_pairs(
        positions, rgb, cfg.reg_radius, cfg.reg_sigma_xy, cfg.reg_sigma_rgb, cfg.reg_squared_distance
    )
    return NodeFields(x, edge_index, edge_weight, superpixel_labels(m_g, sp), pair_index, pair_weight, sp)
