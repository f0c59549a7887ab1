r"""Superpixel graphs (Table 4(c) "S.P. + Dis.", the graph of GraphNet [21]) - construction only, not wired in.

The paper: "*Superpixel (S.P.)* means that we adopt [21] to produce graph nodes and their features", and of [21]:
"the superpixel method [23] was applied to produce the graph nodes. They used a pre-trained CNN model to obtain
the node feature, which was computed using average pooling for all its pixels. After that an adjacency matrix was
computed based on the L1 distance between a node and its 8-neighbor nodes." The pieces:

* :func:`slic` - SLIC [23] superpixels (neither scikit-image nor opencv-contrib is installed, so a small
  deterministic, vectorised SLIC: k-means in (y, x, Lab) from a fixed grid of seeds, each pixel compared with
  the 3 x 3 seeds around its own seed cell, then connectivity enforced); labels ``0..K-1`` in raster order.
* :func:`pool_features` - node features: the mean of the backbone features over each superpixel's pixels (each
  pixel reads its stride-aligned feature-grid cell, :mod:`a2gnn.grid`), then Eq. (15) as for grid nodes.
* :func:`superpixel_adjacency` - superpixels that touch (8-connected pixels by default).
* :func:`superpixel_edges` - edge weights from the L1 feature distance of adjacent superpixels, the same formula
  as the grid-node ``graph.edges: l1`` (:func:`a2gnn.graph.l1_distance_weights`), self loops 1, σ cut.
* :func:`superpixel_labels` - node labels from M_g (majority of the labelled pixels, 255 if none).
* :func:`superpixels_to_pixels` / :func:`grid_nodes` - predictions back to pixels / to the feature grid.
* :func:`superpixel_graph` - all of it for one image.

**Why it is not in the pipeline.** The A²GNN trainer (:mod:`a2gnn.gnn.train`) assumes nodes on the ``h x w``
grid: :class:`a2gnn.graph.ImageGraph` carries ``grid`` / ``grid_map``, the MP loss (Eq. 23-25) takes one node per
box *row and column* of that grid, L_reg pairs and the output up-sampling are grid operations. Superpixel nodes
have no rows or columns. What the trainer would need: a node -> grid mapping, e.g. ``cell_node = grid_nodes(labels,
grid)`` ((h w,) superpixel of each cell's centre pixel); the GNN runs on the K superpixel nodes and its logits /
hidden features are gathered ``logits[cell_node]`` into an (h w, C) grid before the MP loss, L_reg and the
up-sampling (or, at image resolution, :func:`superpixels_to_pixels`), so that those stay unchanged;
``ImageGraph`` would carry ``node_of_cell`` (or the (H, W) label map) and ``num_nodes`` would be K instead of
h w. That is a trainer change, left to whoever owns :mod:`a2gnn.gnn`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from a2gnn.graph import l1_distance_weights, normalize_node_features
from a2gnn.grid import GridMap
from a2gnn.io import IGNORE_INDEX

SLIC_SEGMENTS = 400
"""Default number of SLIC seeds (the paper and [21] give none; ~470 pixels per superpixel on a 500 x 375 image)."""
SLIC_COMPACTNESS = 10.0
"""m of SLIC [23]: weight of the spatial distance against the Lab distance (Lab in [0, 100]; SLIC's default)."""
SLIC_ITERATIONS = 10
"""k-means iterations (SLIC [23]: 10 suffice)."""
SLIC_MIN_SIZE = 0.25
"""Connected pieces smaller than this fraction of the seed-cell area S^2 are merged into a neighbour (SLIC: 1/4)."""

# 3 x 3 candidate seeds around a pixel's own seed cell, in a fixed order (ties -> the first)
_CANDIDATES = [(da, db) for da in (-1, 0, 1) for db in (-1, 0, 1)]
# neighbour directions (dy, dx) for connected components and fragment merging: up, left, down, right
_DIRECTIONS_4 = [(-1, 0), (0, -1), (1, 0), (0, 1)]


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) uint8 -> CIE Lab (H, W, 3) float64 (D65 white), L in [0, 100]."""
    rgb = image.astype(np.float64) / 255.0
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = linear @ m.T / np.array([0.950456, 1.0, 1.088754])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = np.where(xyz[..., 1] > 0.008856, 116.0 * f[..., 1] - 16.0, 903.3 * xyz[..., 1])
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` inside the map, else ``fill``. Shapes: (H, W) -> (H, W)."""
    out = np.full_like(a, fill)
    H, W = a.shape
    out[max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)] = a[
        max(dy, 0) : H - max(-dy, 0), max(dx, 0) : W - max(-dx, 0)
    ]
    return out


def _connected_components(labels: np.ndarray) -> np.ndarray:
    """4-connected components of equal labels: each pixel -> the smallest flat index of its component.

    Min-label propagation with pointer jumping, vectorised. Shapes: (H, W) -> (H, W) int64.
    """
    H, W = labels.shape
    comp = np.arange(H * W, dtype=np.int64).reshape(H, W)
    big = np.iinfo(np.int64).max
    while True:
        new = comp.copy()
        for dy, dx in _DIRECTIONS_4:
            same = _shift(labels, dy, dx, -1) == labels
            new = np.where(same, np.minimum(new, _shift(comp, dy, dx, big)), new)
        new = new.reshape(-1)[new]  # pointer jumping: a root's root is smaller still
        if np.array_equal(new, comp):
            return comp
        comp = new


def _enforce_connectivity(labels: np.ndarray, min_size: float) -> np.ndarray:
    """Keep each label's largest 4-connected piece if it has >= ``min_size`` pixels (all of them if none has);
    every other pixel takes the label of a kept 4-neighbour (up, left, down, right first), growing inwards, so
    every label is connected. Labels are renumbered 0..K-1 in raster order of their first pixel.

    Shapes: (H, W) -> (H, W) int64."""
    comp = _connected_components(labels)
    flat_comp = comp.reshape(-1)
    size = np.bincount(flat_comp, minlength=flat_comp.size)
    roots = np.flatnonzero(flat_comp == np.arange(flat_comp.size))
    root_label = labels.reshape(-1)[roots]
    order = np.lexsort((roots, -size[roots], root_label))  # by label, then largest, then first pixel
    first = np.ones(order.size, dtype=bool)
    first[1:] = root_label[order][1:] != root_label[order][:-1]
    best = roots[order][first]  # the largest piece of every label
    if (size[best] >= min_size).any():  # (none is, e.g. on pure noise: keep them all)
        best = best[size[best] >= min_size]
    keep_root = np.zeros(flat_comp.size, dtype=bool)
    keep_root[best] = True
    resolved = keep_root[comp]
    out = labels.copy()
    while not resolved.all():
        taken = np.zeros_like(resolved)
        for dy, dx in _DIRECTIONS_4:
            m = ~resolved & ~taken & _shift(resolved, dy, dx, False)
            out[m] = _shift(out, dy, dx, 0)[m]
            taken |= m
        resolved |= taken
    values, first_pixel = np.unique(out, return_index=True)
    rank = np.empty(first_pixel.size, dtype=np.int64)
    rank[np.argsort(first_pixel, kind="stable")] = np.arange(first_pixel.size)
    return rank[np.searchsorted(values, out)]


def slic(
    image: np.ndarray,
    n_segments: int = SLIC_SEGMENTS,
    compactness: float = SLIC_COMPACTNESS,
    iterations: int = SLIC_ITERATIONS,
    min_size: float = SLIC_MIN_SIZE,
) -> np.ndarray:
    r"""SLIC superpixels [23], deterministic and vectorised.

    Seeds start at the centres of a ``g_y x g_x`` grid of cells of size :math:`s_y \times s_x`
    (:math:`g_y g_x \approx` ``n_segments``, :math:`S = \sqrt{s_y s_x}`). Each iteration assigns every pixel to
    the nearest of the (up to) 9 seeds of its own and the adjacent cells by
    :math:`D^2 = \|lab_p - lab_k\|^2 + (m / S)^2 \|(y, x)_p - (y, x)_k\|^2` (ties: the first in row-major cell
    order), then moves every seed to the mean (y, x, Lab) of its pixels (a seed without pixels stays). Finally
    connectivity is enforced (pieces smaller than ``min_size`` S^2 merged into a neighbour). No randomness.

    Shapes: image (H, W, 3) uint8 -> labels (H, W) int64 in 0..K-1, every label used and 4-connected, numbered
    in raster order of their first pixel.
    """
    H, W = image.shape[:2]
    gy = max(1, min(H, round(np.sqrt(n_segments * H / W))))
    gx = max(1, min(W, round(n_segments / gy)))
    sy, sx = H / gy, W / gx
    S = float(np.sqrt(sy * sx))
    ys, xs = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    pixels = np.concatenate([np.stack([ys, xs], axis=-1), rgb_to_lab(image)], axis=-1).reshape(-1, 5)
    spatial = (compactness / S) ** 2
    weights = np.array([spatial, spatial, 1.0, 1.0, 1.0])

    cy, cx = np.minimum(ys // sy, gy - 1).astype(np.int64), np.minimum(xs // sx, gx - 1).astype(np.int64)
    centres = pixels.reshape(H, W, 5)[
        np.minimum(((np.arange(gy) + 0.5) * sy).astype(np.int64), H - 1)[:, None],
        np.minimum(((np.arange(gx) + 0.5) * sx).astype(np.int64), W - 1)[None, :],
    ].reshape(-1, 5)
    centres[:, 0] = np.repeat((np.arange(gy) + 0.5) * sy, gx)  # exact cell centres (not the centre pixels)
    centres[:, 1] = np.tile((np.arange(gx) + 0.5) * sx, gy)
    cand = []
    for da, db in _CANDIDATES:
        a, b = cy + da, cx + db
        ok = (a >= 0) & (a < gy) & (b >= 0) & (b < gx)
        cand.append(np.where(ok, a * gx + b, -1).reshape(-1))
    cand = np.stack(cand)  # (9, H W), -1 = no seed there
    k = gy * gx
    assign = np.zeros(H * W, dtype=np.int64)
    for _ in range(max(1, iterations)):
        near = np.maximum(cand, 0)
        d = sum(weights[c] * (pixels[None, :, c] - centres[near, c]) ** 2 for c in range(5))  # (9, H W)
        d[cand < 0] = np.inf
        assign = cand[np.argmin(d, axis=0), np.arange(H * W)]
        count = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, pixels[:, c], minlength=k) for c in range(5)], axis=1)
        used = count > 0
        centres[used] = sums[used] / count[used, None]
    return _enforce_connectivity(assign.reshape(H, W), min_size * S * S)


def _as_long(labels: np.ndarray | Tensor) -> Tensor:
    return labels.long() if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels, dtype=np.int64))


def pool_features(features: Tensor, labels: np.ndarray | Tensor, normalize: bool = True) -> Tensor:
    r"""Superpixel node features: the mean over each superpixel's pixels, then Eq. (15) (``normalize``).

    ``features`` may be on the stride-s feature grid of the image (``(h, w) = ceil((H, W) / s)``): each pixel then
    reads its stride-aligned cell (nearest up-sampling, :meth:`a2gnn.grid.GridMap.pixel_cells`), computed as
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
    :func:`a2gnn.graph.l1_edges` on the superpixel adjacency instead of the radius-r disc. Sorted by (a, b).

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
    """Node -> grid mapping: the superpixel of every feature-grid cell's centre pixel (:mod:`a2gnn.grid`), so
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
