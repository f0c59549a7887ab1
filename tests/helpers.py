"""Helpers shared by several test files (import as ``from helpers import ...``; tests/ is on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


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
