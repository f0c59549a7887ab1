"""Image -> graph (paper §4.3.2, Eq. 14-15).

The :class:`ImageGraph` container is the contract between graph construction (affinity CNN side)
and the A²GNN (training side). Nodes are the pixels of the backbone's feature grid of size
``(h, w)``; node ``n`` sits at row ``n // w`` and column ``n % w``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor


@dataclasses.dataclass
class ImageGraph:
    """One image as a graph G = (V, E) with node features X, labels and boxes.

    Fields (N nodes, E edges, P regulariser pairs, M boxes, D_g feature size):
        image_id:     the image's id.
        x:            (N, D_g) float32 node features, normalised per Eq. (15).
        edge_index:   (2, E) int64, column e = (i, j): node j is in S(i), the neighbourhood node i attends
                      over in Eq. (18) (target i = row 0, source j = row 1); contains the self loop (i, i).
        edge_weight:  (E,) float32, E_ij of Eq. (14) (affinity D(i, j) > sigma; self loops 1).
        labels:       (N,) int64 node labels from the down-sampled M_g (Eq. 5), 255 = unlabelled (V^u).
        boxes:        (M, 5) int64 rows [x1, y1, x2, y2, class] on the grid, half-open.
        grid:         (h, w) feature-grid size, N = h * w.
        image_size:   (H, W) of the image the grid came from.
        pair_index:   (2, P) int64 pairs (a, b), a != b, within the regulariser radius (Eq. 11 / 22).
        pair_weight:  (P,) float32 Gaussian kernel G(a, b) of Eq. (13) for those pairs.
        image:        optional (3, h, w) float32 image colours on the grid in [0, 1] (for L_reg / CRF users).
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

    @property
    def num_nodes(self) -> int:
        return self.grid[0] * self.grid[1]

    def to(self, device: torch.device | str) -> "ImageGraph":
        moved = {
            f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor) else getattr(self, f.name))
            for f in dataclasses.fields(self)
        }
        return ImageGraph(**moved)
