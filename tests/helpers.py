"""Helpers shared by several test files (import as ``from helpers import ...``; tests/ is on sys.path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from a2gnn.gnn.consistency import member_seed_candidates, nodes_outside
from a2gnn.graph.nodes import box_nodes


class DummyBackbone(nn.Module):
    """Tiny stand-in with the Backbone interface: three post-ReLU taps of ``channels`` at ``stride`` (4 or 8)."""

    def __init__(self, stride: int = 8, channels: tuple[int, int, int] = (4, 6, 8)):
        super().__init__()
        first, second, third = channels
        self.tap_channels = tuple(channels)
        self.stride = stride
        self.stem = nn.Sequential(nn.Conv2d(3, first, 3, stride // 2, 1), nn.ReLU(),
                                  nn.Conv2d(first, first, 3, 2, 1), nn.ReLU())
        self.b = nn.Conv2d(first, second, 3, 1, 1)
        self.c = nn.Conv2d(second, third, 3, 1, 1)

    def forward(self, x):
        t1 = self.stem(x)
        t2 = torch.relu(self.b(t1))
        return t1, t2, torch.relu(self.c(t2))


def box_seed_candidates(labels: Tensor, boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The (box, node) pairs Eq. (28) checks: nodes inside box j whose seed label is box j's class (grid nodes).

    Shapes: labels (N,), boxes (M, 5) -> cand_box (Q,), cand_node (Q,), sorted by box then node.
    """
    box, node = box_nodes(boxes, grid)
    return member_seed_candidates(labels, boxes, box, node)


def outside_boxes(boxes: Tensor, grid: tuple[int, int]) -> Tensor:
    """Nodes outside every box (background by box supervision). Shapes: boxes (M, 5) -> (R,) node ids."""
    return nodes_outside(box_nodes(boxes, grid)[1].to(boxes.device), grid[0] * grid[1])


def probs_to_grid(probs: Tensor, grid: tuple[int, int]) -> Tensor:
    """Node probabilities (N, C) -> class maps (C, h, w) on the node grid (node n at (n // w, n % w))."""
    return probs.t().reshape(probs.shape[1], grid[0], grid[1])
