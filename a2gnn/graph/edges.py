"""Edges of the graph (paper Eq. 14; Table 4(c) "Dis." edges) and the L_reg pairs (Eq. 13, 22): the edge
sources of :data:`a2gnn.graph.types.EDGE_SOURCES`."""

from __future__ import annotations

import typing

import torch
from torch import Tensor

from a2gnn.affinity.losses import affinity, feature_distance, pair_gaussian_kernel
from a2gnn.graph.types import EDGE_SOURCES, GraphConfig
from a2gnn.ops.neighbours import grid_pairs, neighbour_reduce, neighbour_valid, radius_offsets


def _sort_pairs(index: Tensor, values: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Sort pairs by (row 0, row 1)."""
    order = torch.argsort(index[0] * num_nodes + index[1])
    return index[:, order], values[order]


def affinity_edges(f_a: Tensor, radius: int, sigma: float) -> tuple[Tensor, Tensor]:
    r"""Graph edges, Eq. (14) on the affinity of Eq. (8), over the radius-r neighbourhood (self loops included).

    .. math::
        E_{ij} = D(i, j) \text{ if } D(i, j) > \sigma \text{ else } 0,\qquad
        D(i, j) = \exp(-\|F_A(i) - F_A(j)\|_1 / d_A),\ \|Pos(i) - Pos(j)\|_2 \le r

    Zero edges are dropped from the list; self loops (D(i, i) = 1) are always kept with weight 1. Both
    directions of every pair are listed (the graph is symmetric). Edges are sorted by (i, j).

    Shapes: f_a (d_A, h, w) -> edge_index (2, E) int64 (row 0 = target i, row 1 = neighbour j in S(i)),
    edge_weight (E,) float32.
    """
    h, w = f_a.shape[-2:]
    offsets = radius_offsets(radius, include_self=True)
    valid = neighbour_valid(h, w, offsets).to(f_a.device)
    d = affinity(feature_distance(f_a.unsqueeze(0), offsets)[0])[valid]  # (P,) in grid_pairs order
    index = grid_pairs(h, w, offsets).to(f_a.device)
    self_loop = index[0] == index[1]
    d = torch.where(self_loop, torch.ones_like(d), d)
    keep = self_loop | (d > sigma)
    return _sort_pairs(index[:, keep], d[keep].float(), h * w)


def l1_distance_weights(distance: Tensor, pair_distances: Tensor, scale: float) -> Tensor:
    r"""Soft edge weights from L1 feature distances: :math:`\exp(-d / (\kappa \bar d))`, :math:`\bar d` = mean
    of ``pair_distances`` (all of them 1 when that mean is 0, i.e. the features are all equal).

    Shared by :func:`l1_edges` (feature-map nodes) and :func:`a2gnn.graph.superpixels.superpixel_edges`.

    Shapes: distance (...), pair_distances (P,) -> (...) in (0, 1].
    """
    mean = pair_distances.mean() if pair_distances.numel() else distance.new_zeros(())
    if mean <= 0:
        return torch.ones_like(distance)
    return torch.exp(-distance / (scale * mean))


def l1_edges(x_map: Tensor, radius: int, sigma: float, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Graph edges from the L1 distance of the node features (Table 4(c) "Feat. + Dis."), radius-r neighbourhood.

    The paper: "*Distance (Dis.)* means that we build the graph edge using L1 distance of feature map [21]"
    (GraphNet: "an adjacency matrix was computed based on the L1 distance between a node and its [...] neighbor
    nodes"). It gives no formula; we keep Eq. (8)'s form with F_A replaced by the node features X of Eq. (15)
    and the same σ cut as Eq. (14):

    .. math::
        E_{ij} = w_{ij} \text{ if } w_{ij} > \sigma \text{ else } 0,\qquad
        w_{ij} = \exp\Big(-\frac{\|x_i - x_j\|_1}{\kappa\, \bar d}\Big),\qquad
        \bar d = \operatorname{mean}_{(i, j):\, 0 < \|Pos(i) - Pos(j)\|_2 \le r} \|x_i - x_j\|_1

    Eq. (8)'s normaliser d_A does not transfer: X rows sum to 1 (Eq. 15), so :math:`\|x_i - x_j\|_1 \in [0, 2]`
    and dividing by D_g (5632) would give w ≈ 1 for every pair. The per-image mean distance :math:`\bar d` (the
    usual bandwidth heuristic of a Laplacian kernel) makes w invariant to the feature scale and dimension; κ =
    ``graph.l1_scale``. Self loops have weight 1, both directions are listed, edges sorted by (i, j), exactly as
    :func:`affinity_edges` (only the weights differ). Distances are computed once per unordered pair (half disc)
    and mirrored, so E is exactly symmetric; the cost is O(|S(i)| / 2 · D · h w) (run it on the GPU for D_g = 5632).

    Shapes: x_map (D, h, w) node features on the grid (node n = pixel (n // w, n % w)) -> edge_index (2, E)
    int64 (row 0 = target i, row 1 = neighbour j), edge_weight (E,) float32.
    """
    h, w = x_map.shape[-2:]
    offsets = radius_offsets(radius, include_self=False, half=True)  # one offset of each pair {o, -o}
    valid = neighbour_valid(h, w, offsets).to(x_map.device)
    dist = neighbour_reduce(x_map.unsqueeze(0).float(), offsets, lambda a, b: (a - b).abs().sum(dim=1))[0][valid]
    half = grid_pairs(h, w, offsets).to(x_map.device)
    weight = l1_distance_weights(dist, dist, scale)
    keep = weight > sigma
    nodes = torch.arange(h * w, device=x_map.device)
    index = torch.cat([torch.stack([nodes, nodes]), half[:, keep], half[:, keep].flip(0)], dim=1)
    values = torch.cat([torch.ones(h * w, device=x_map.device), weight[keep], weight[keep]]).float()
    return _sort_pairs(index, values, h * w)


@EDGE_SOURCES.register("affinity")
def _affinity_source(f_a: Tensor, x: Tensor, cfg: "GraphConfig", device: torch.device | str) -> tuple[Tensor, Tensor]:
    return affinity_edges(f_a, cfg.radius, cfg.sigma)


@EDGE_SOURCES.register("l1")
def _l1_source(f_a: Tensor, x: Tensor, cfg: "GraphConfig", device: torch.device | str) -> tuple[Tensor, Tensor]:
    h, w = f_a.shape[-2:]
    index, weight = l1_edges(x.t().reshape(-1, h, w).to(device), cfg.radius, cfg.sigma, cfg.l1_scale)
    return index.cpu(), weight.cpu()


# an edge source: fn(F_A (d_A, h, w), X (h w, D_g) after Eq. 15, cfg, device) -> CPU (edge_index, edge_weight);
# ``device`` is where a costly source may compute (the affinity CNN's)
EdgeSource = typing.Callable[[Tensor, Tensor, "GraphConfig", typing.Any], tuple[Tensor, Tensor]]


def regulariser_pairs(
    image_grid: Tensor, radius: int, sigma_xy: float, sigma_rgb: float, squared_distance: bool = True
) -> tuple[Tensor, Tensor]:
    """Pairs (a, b), a != b, within ``radius`` and their Gaussian kernel G(a, b) of Eq. (13), for L_reg (Eq. 22).

    Both orders of every pair are listed (Eq. 22 sums over all ordered pairs); sorted by (a, b).

    Shapes: image_grid (3, h, w) colours in [0, 1] -> pair_index (2, P) int64, pair_weight (P,) float32.
    """
    h, w = image_grid.shape[-2:]
    offsets = radius_offsets(radius, include_self=False)
    valid = neighbour_valid(h, w, offsets).to(image_grid.device)
    g = pair_gaussian_kernel(image_grid.unsqueeze(0), offsets, sigma_xy, sigma_rgb, squared_distance)[0][valid]
    index = grid_pairs(h, w, offsets).to(image_grid.device)
    return _sort_pairs(index, g.float(), h * w)
