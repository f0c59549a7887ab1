"""Image -> graph (paper §4.3.2, Eq. 14-15; Table 4(c) variants).

The :class:`ImageGraph` container is the contract between graph construction (affinity CNN side)
and the A²GNN (training side). Its boxes, colours and ``grid`` live on the backbone's feature grid of size
``(h, w)``; what a *node* is depends on ``graph.nodes`` (:data:`a2gnn.graph_nodes.NODE_LAYOUTS`, Table 4(c)):

* ``grid`` (the paper, default): node ``n`` is the feature-grid pixel at row ``n // w`` and column ``n % w``
  (:func:`grid_node_fields`, :class:`a2gnn.graph_nodes.GridNodes`).
* ``superpixels`` (Table 4(c) "S.P. + Dis.", GraphNet [21]): node ``k`` is SLIC [23] superpixel ``k`` of the image,
  ``ImageGraph.superpixels`` its (H, W) id map (:mod:`a2gnn.superpixels`, :class:`a2gnn.graph_nodes.SuperpixelNodes`).

Construction (:func:`build_image_graph`, :func:`build_graphs`): a trained :class:`AffinityNet` gives F_A, whose
affinities D (Eq. 8) on the radius-r neighbourhood become the edges E (Eq. 14, :func:`affinity_edges`); the
concatenated backbone taps normalised by Eq. (15) become the node features X; ``graph.edges`` picks the edge
source from :data:`EDGE_SOURCES` (Table 4(c): ``affinity`` = Eq. 14, the paper; ``l1`` = L1 distance of the node
features, :func:`l1_edges`); M_g down-sampled to the grid gives the node labels; boxes are mapped to the grid
(:func:`boxes_to_grid`); the Gaussian kernel of Eq. (13) on the grid colours gives the L_reg pairs
(:func:`regulariser_pairs`). Every image <-> grid conversion (labels, boxes, colours) uses the one stride-aligned
mapping of :mod:`a2gnn.grid`, as does the up-sampling of the output. Everything that depends on the kind of node
(node fields, box lines of L_mp, nodes inside a box for Eq. 27-28, the pixel taps of image-resolution L_ce, the
output -> image mapping) is a method of the :class:`a2gnn.graph_nodes.NodeLayout` that ``graph.nodes`` names in
:data:`a2gnn.graph_nodes.NODE_LAYOUTS` (:func:`node_layout`): the one dispatch.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import numpy as np
import torch
from torch import Tensor

from a2gnn.affinity.losses import affinity, feature_distance, pair_gaussian_kernel
from a2gnn.affinity.model import AffinityNet
from a2gnn.affinity.train import load_seed_pair
from a2gnn.backbones import normalize_image
from a2gnn.cli import progress
from a2gnn.config import Config
from a2gnn.datasets.voc import Annotation, VOCDataset
from a2gnn.grid import BOX_RULES, LABEL_DOWNSAMPLE_MODES, GridMap
from a2gnn.io import IGNORE_INDEX
from a2gnn.neighbours import grid_pairs, neighbour_reduce, neighbour_valid, radius_offsets


@dataclasses.dataclass
class ImageGraph:
    """One image as a graph G = (V, E) with node features X, labels and boxes.

    Fields (N nodes: h * w grid cells, or K superpixels; E edges, P regulariser pairs, M boxes, D_g feature size):
        image_id:     the image's id.
        x:            (N, D_g) float32 node features, normalised per Eq. (15).
        edge_index:   (2, E) int64, column e = (i, j): node j is in S(i), the neighbourhood node i attends
                      over in Eq. (18) (target i = row 0, source j = row 1); contains the self loop (i, i).
        edge_weight:  (E,) float32, E_ij of Eq. (14) (affinity D(i, j) > sigma; self loops 1), or of
                      :func:`l1_edges` with ``graph.edges: l1`` (Table 4(c)), or of
                      :func:`a2gnn.superpixels.superpixel_edges` with ``graph.nodes: superpixels``.
        labels:       (N,) int64 node labels from the down-sampled M_g (Eq. 5), 255 = unlabelled (V^u).
        boxes:        (M, 5) int64 rows [x1, y1, x2, y2, class] on the grid, half-open.
        grid:         (h, w) feature-grid size (N = h * w for grid nodes).
        image_size:   (H, W) of the image the grid came from.
        pair_index:   (2, P) int64 pairs (a, b), a != b, within the regulariser radius (Eq. 11 / 22).
        pair_weight:  (P,) float32 Gaussian kernel G(a, b) of Eq. (13) for those pairs.
        image:        optional (3, h, w) float32 image colours on the grid in [0, 1] (for L_reg / CRF users).
        seeds:        optional (H, W) uint8 full-resolution M_g (255 = unlabelled), for L_ce at image resolution
                      (``GNNConfig.ce_resolution = "image"``); uint8 keeps it at H*W bytes per image.
        superpixels:  None for grid nodes; with ``graph.nodes: superpixels`` the (H, W) int64 node id of every
                      pixel (SLIC labels 0..K-1, N = K).
    """

    image_id: str
    x: Tensor
    edge_index: Tensor
    edge_weight: Tensor
    labels: Tensor
    boxes: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]
    pair_index: Tensor
    pair_weight: Tensor
    image: Tensor | None = None
    seeds: Tensor | None = None
    superpixels: Tensor | None = None

    @property
    def grid_map(self) -> GridMap:
        """The image <-> grid mapping of this graph (stride inferred from image_size and grid)."""
        return GridMap.from_sizes(self.image_size, self.grid)

    @property
    def nodes(self) -> str:
        """The kind of node, a key of :func:`node_layouts`: "grid", or "superpixels" when the id map is set."""
        return "grid" if self.superpixels is None else "superpixels"

    @property
    def layout(self) -> typing.Any:
        """The :class:`a2gnn.graph_nodes.NodeLayout` of this graph's nodes (:func:`node_layout` of :attr:`nodes`)."""
        return node_layout(self.nodes)

    @property
    def num_nodes(self) -> int:
        if self.superpixels is None:
            return self.grid[0] * self.grid[1]
        return int(self.superpixels.max()) + 1 if self.superpixels.numel() else 0

    def to(self, device: torch.device | str) -> "ImageGraph":
        moved = {
            f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor) else getattr(self, f.name))
            for f in dataclasses.fields(self)
        }
        return ImageGraph(**moved)


# --------------------------------------------------------------------------------------------------------------
# Graph construction (Eq. 14-15) from a trained affinity CNN
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GraphConfig(Config):
    """``graph`` section: image -> graph conversion (Eq. 14-15) and the L_reg pairs (Eq. 13, 22); ``nodes`` picks
    grid or superpixel nodes (Table 4(c), :mod:`a2gnn.graph_nodes`), the ``sp_*`` keys configure SLIC [23]."""

    SECTION: typing.ClassVar[str] = "graph"
    radius: int = 5  # r of the neighbourhood S(i) / edges E (paper §5: r = 5 for training and inference)
    sigma: float = 1e-3  # σ of Eq. (14): edges with D(i, j) <= σ are dropped
    reg_radius: int = 5  # radius of the L_reg pairs (Eq. 22), grid cells
    reg_sigma_xy: float = 6.0  # σ_xy of G (Eq. 13) for L_reg, grid cells
    reg_sigma_rgb: float = 0.1  # σ_rgb of G (Eq. 13) for L_reg, colours in [0, 1]
    reg_squared_distance: bool = True  # Eq. 13 with squared distances (usual Gaussian); false = as printed
    label_downsample: str = "centre"  # M_g -> node labels: "centre" (nearest) | "majority" of the cell
    box_cells: str = "touch"  # pixel box -> grid cells: "touch" (every cell it meets) | "centre" (cell centre inside)
    batch_size: int = 8  # images of equal size per affinity-CNN forward pass
    feature_dim: int = 0  # k > 0: X -> its top-k principal coordinates per image (speed; 0 = all D_g, the paper)
    edges: str = "affinity"  # Table 4(c) edge source (EDGE_SOURCES): "affinity" (Eq. 14, paper) | "l1" (L1 of X)
    l1_scale: float = 1.0  # κ of l1_edges: E_ij = exp(-||x_i - x_j||_1 / (κ · mean in-radius distance))
    nodes: str = "grid"  # Table 4(c) nodes (node_layouts()): "grid" (feature-map pixels, paper) | "superpixels" ([21])
    sp_segments: int = 400  # SLIC [23] seeds per image with nodes "superpixels" ([21] gives none)
    sp_compactness: float = 10.0  # m of SLIC [23]: spatial vs Lab distance weight (SLIC's default)

    def validate(self) -> None:
        self.check(self.radius >= 1, "radius", ">= 1")
        self.check(0 <= self.sigma < 1, "sigma", "in [0, 1)")
        self.check(self.reg_radius >= 1, "reg_radius", ">= 1")
        self.check(self.reg_sigma_xy > 0, "reg_sigma_xy", "> 0")
        self.check(self.reg_sigma_rgb > 0, "reg_sigma_rgb", "> 0")
        self.check(
            self.label_downsample in LABEL_DOWNSAMPLE_MODES, "label_downsample", f"one of {LABEL_DOWNSAMPLE_MODES}"
        )
        self.check(self.box_cells in BOX_RULES, "box_cells", f"one of {BOX_RULES}")
        self.check(self.batch_size >= 1, "batch_size", ">= 1")
        self.check(self.feature_dim >= 0, "feature_dim", ">= 0")
        self.check(self.edges in EDGE_SOURCES, "edges", f"one of {tuple(EDGE_SOURCES)}")
        self.check(self.l1_scale > 0, "l1_scale", "> 0")
        self.check(self.nodes in node_layouts(), "nodes", f"one of {tuple(node_layouts())}")
        self.check(self.sp_segments >= 1, "sp_segments", ">= 1")
        self.check(self.sp_compactness > 0, "sp_compactness", "> 0")
        # Table 4(c) "S.P. + Dis.": superpixel nodes only with L1-distance edges (GraphNet [21]); F_A is a map
        # on the grid and Eq. (14) has no superpixel form in the paper
        self.check(self.nodes != "superpixels" or self.edges == "l1", "edges", "'l1' with nodes 'superpixels'")


def normalize_node_features(x: Tensor) -> Tensor:
    r"""Node feature normalisation, Eq. (15): :math:`x_{i,j} \leftarrow x_{i,j} / \sum_{j'} x_{i,j'}`.

    The features are post-ReLU, so row sums are >= 0; a row whose sum is not positive (all zeros) is left
    unchanged instead of becoming NaN.

    Shapes: x (N, D_g) -> (N, D_g).
    """
    total = x.sum(dim=1, keepdim=True)
    return x / torch.where(total > 0, total, torch.ones_like(total))


PROJECTION_OVERSAMPLE = 8
"""Extra random directions of the randomized SVD in :func:`project_node_features` (Halko et al. 2011: 5-10)."""
PROJECTION_POWER_ITERATIONS = 2
"""Power iterations of that randomized SVD (sharpen a slowly decaying spectrum)."""


def project_node_features(x: Tensor, k: int) -> Tensor:
    r"""Top-k principal coordinates of one image's node features: :math:`X V_k = U_k \Sigma_k`.

    :math:`X = U \Sigma V^\top`; the GNN's first layer :math:`X W^0` over the k-dim coordinates spans the same
    functions of the dominant subspace of X at k / D_g of the cost (the embedding layer dominates at D_g = 5632
    or 2432), and :math:`(X V_k)(X V_k)^\top` approximates the Gram matrix :math:`X X^\top`, so cosine
    similarities of nodes are kept up to the discarded spectrum (exactly when rank X <= k). Not centred (the
    features are post-ReLU and L1-normalised, Eq. 15); a randomized SVD with a fixed-seed generator, so the
    result is deterministic. ``k <= 0`` or ``k >= min(N, D_g)`` returns X unchanged.

    Shapes: x (N, D_g) -> (N, k).
    """
    n, d = x.shape
    if k <= 0 or k >= min(n, d):
        return x
    generator = torch.Generator().manual_seed(0)
    omega = torch.randn(d, k + PROJECTION_OVERSAMPLE, generator=generator, dtype=x.dtype)
    y = x @ omega.to(x.device)
    for _ in range(PROJECTION_POWER_ITERATIONS):
        y, _ = torch.linalg.qr(y)
        y = x @ (x.t() @ y)
    q, _ = torch.linalg.qr(y)
    u_b, s, _ = torch.linalg.svd(q.t() @ x, full_matrices=False)
    return ((q @ u_b[:, :k]) * s[:k]).contiguous()


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

    Shared by :func:`l1_edges` (feature-map nodes) and :func:`a2gnn.superpixels.superpixel_edges`.

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


def _affinity_source(f_a: Tensor, x: Tensor, cfg: "GraphConfig", device: torch.device | str) -> tuple[Tensor, Tensor]:
    return affinity_edges(f_a, cfg.radius, cfg.sigma)


def _l1_source(f_a: Tensor, x: Tensor, cfg: "GraphConfig", device: torch.device | str) -> tuple[Tensor, Tensor]:
    h, w = f_a.shape[-2:]
    index, weight = l1_edges(x.t().reshape(-1, h, w).to(device), cfg.radius, cfg.sigma, cfg.l1_scale)
    return index.cpu(), weight.cpu()


EdgeSource = typing.Callable[[Tensor, Tensor, "GraphConfig", typing.Any], tuple[Tensor, Tensor]]
EDGE_SOURCES: dict[str, EdgeSource] = {"affinity": _affinity_source, "l1": _l1_source}
"""Table 4(c) edge sources (``graph.edges``): name -> fn(F_A (d_A, h, w), X (h w, D_g) after Eq. 15, cfg, device)
-> CPU (edge_index, edge_weight); ``device`` is where a costly source may compute (the affinity CNN's)."""


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


def boxes_to_grid(annotation: Annotation, grid: tuple[int, int], rule: str = "touch") -> Tensor:
    r"""Boxes in image pixels -> half-open boxes on the ``h x w`` feature grid (:meth:`a2gnn.grid.GridMap.boxes`).

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


class NodeFields(typing.NamedTuple):
    """The node-dependent part of an :class:`ImageGraph`, as a :class:`a2gnn.graph_nodes.NodeLayout` builds it.

    Shapes (N nodes): x (N, D_g) after Eq. (15), before ``graph.feature_dim``'s projection; edge_index (2, E),
    edge_weight (E,); labels (N,); pair_index (2, P), pair_weight (P,); superpixels (H, W) int64 or None (grid).
    """

    x: Tensor
    edge_index: Tensor
    edge_weight: Tensor
    labels: Tensor
    pair_index: Tensor
    pair_weight: Tensor
    superpixels: Tensor | None = None


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


def node_layouts() -> dict[str, typing.Any]:
    """The ``graph.nodes`` registry, :data:`a2gnn.graph_nodes.NODE_LAYOUTS` (name -> NodeLayout). Imported on first
    use because the layouts build on this module (and on :mod:`a2gnn.superpixels`, which imports it)."""
    from a2gnn.graph_nodes import NODE_LAYOUTS

    return NODE_LAYOUTS


def node_layout(name: str) -> typing.Any:
    """The :class:`a2gnn.graph_nodes.NodeLayout` of ``graph.nodes`` = ``name``."""
    return node_layouts()[name]


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
    source may compute on ``device``); the nodes from :func:`node_layout` ``(cfg.nodes)``."""
    h, w = f_a.shape[-2:]
    mapping = GridMap.from_sizes(image.shape[:2], (h, w))
    colours = mapping.downsample_image(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0))
    fields = node_layout(cfg.nodes).node_fields(f_a, features, image, m_g, colours, cfg, device)
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
    instead (Table 4(c), :class:`a2gnn.graph_nodes.SuperpixelNodes`).

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
