"""The graph of one image and its settings (paper §4.3.2): :class:`ImageGraph` (the contract between graph
construction and the A²GNN), :class:`GraphConfig` (the ``graph`` section), :class:`NodeFields` (what a node
layout builds) and the two registries a config names: :data:`EDGE_SOURCES` (``graph.edges``, filled by
:mod:`a2gnn.graph.edges`) and :data:`NODE_LAYOUTS` (``graph.nodes``, filled by :mod:`a2gnn.graph.nodes`)."""

from __future__ import annotations

import dataclasses
import typing

import torch
from torch import Tensor

from a2gnn.core.config import Config
from a2gnn.core.registry import Registry
from a2gnn.ops.grid import BOX_RULES, LABEL_DOWNSAMPLE_MODES, GridMap

EDGE_SOURCES: Registry = Registry("edge source")
"""``graph.edges`` (Table 4(c)): name -> ``source(f_a, x, cfg, device) -> (edge_index, edge_weight)``."""
NODE_LAYOUTS: Registry = Registry("node layout")
"""``graph.nodes`` (Table 4(c)): name -> :class:`a2gnn.graph.nodes.NodeLayout`."""


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
                      :func:`a2gnn.graph.superpixels.superpixel_edges` with ``graph.nodes: superpixels``.
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
        """The kind of node, a key of :data:`NODE_LAYOUTS`: "grid", or "superpixels" when the id map is set."""
        return "grid" if self.superpixels is None else "superpixels"

    @property
    def layout(self) -> typing.Any:
        """The :class:`a2gnn.graph.nodes.NodeLayout` of this graph's nodes (:data:`NODE_LAYOUTS` ``[nodes]``)."""
        return NODE_LAYOUTS[self.nodes]

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


@dataclasses.dataclass(frozen=True)
class GraphConfig(Config):
    """``graph`` section: image -> graph conversion (Eq. 14-15) and the L_reg pairs (Eq. 13, 22); ``nodes`` picks
    grid or superpixel nodes (Table 4(c), :mod:`a2gnn.graph.nodes`), the ``sp_*`` keys configure SLIC [23]."""

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
    nodes: str = "grid"  # Table 4(c) nodes (NODE_LAYOUTS): "grid" (feature-map pixels, paper) | "superpixels" ([21])
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
        self.check(self.edges in EDGE_SOURCES, "edges", f"one of {EDGE_SOURCES.names()}")
        self.check(self.l1_scale > 0, "l1_scale", "> 0")
        self.check(self.nodes in NODE_LAYOUTS, "nodes", f"one of {NODE_LAYOUTS.names()}")
        self.check(self.sp_segments >= 1, "sp_segments", ">= 1")
        self.check(self.sp_compactness > 0, "sp_compactness", "> 0")
        # Table 4(c) "S.P. + Dis.": superpixel nodes only with L1-distance edges (GraphNet [21]); F_A is a map
        # on the grid and Eq. (14) has no superpixel form in the paper
        self.check(self.nodes != "superpixels" or self.edges == "l1", "edges", "'l1' with nodes 'superpixels'")


class NodeFields(typing.NamedTuple):
    """The node-dependent part of an :class:`ImageGraph`, as a :class:`a2gnn.graph.nodes.NodeLayout` builds it.

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
