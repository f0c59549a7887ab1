r"""Affinity CNN (paper §4.3.1 and §5, Fig. 4): backbone taps -> embedding F_A used by Eq. (8).

Three 1x1 convolutions reduce the backbone's three taps (512 / 1024 / 4096 channels for ResNet-38) to
64 / 128 / 256 channels; their concatenation goes through a 1x1 convolution to the d_A = 448 channel
embedding F_A. The paper does not say whether the reductions are followed by a non-linearity; we apply a
ReLU after each reduction (so the fusing 1x1 conv is not a mere re-mixing of a linear map of the taps) and
leave F_A linear (Eq. 8 only needs an L1 distance, which any sign of features supports).

The graph's node features (Eq. 15, Fig. 4) are not F_A but the concatenated taps themselves
(:meth:`AffinityNet.node_features`, 5632-d for ResNet-38).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from a2gnn.backbones.base import Backbone


class AffinityNet(nn.Module):
    """Backbone + tap reductions + fusion conv -> F_A.

    Args:
        backbone: a :class:`a2gnn.backbones.base.Backbone` (three taps at one stride).
        reduce_channels: output channels of the three 1x1 reductions (paper: 64, 128, 256).
        embed_channels: d_A, channels of F_A (paper: 448).

    Shapes: x (B, 3, H, W) normalised image -> (F_A (B, d_A, h, w), taps), h = ceil(H / s), w = ceil(W / s).
    """

    def __init__(
        self,
        backbone: Backbone,
        reduce_channels: tuple[int, int, int] = (64, 128, 256),
        embed_channels: int = 448,
    ):
        super().__init__()
        if len(reduce_channels) != len(backbone.tap_channels):
            raise ValueError(
                f"need one reduction per backbone tap ({len(backbone.tap_channels)}), got {reduce_channels}"
            )
        self.backbone = backbone
        self.reduce_channels = tuple(int(c) for c in reduce_channels)
        self.embed_channels = int(embed_channels)
        self.reduce = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=1) for cin, cout in zip(backbone.tap_channels, self.reduce_channels)
        )
        self.embed = nn.Conv2d(sum(self.reduce_channels), self.embed_channels, kernel_size=1)
        self.reset_parameters()

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the layers added on top of the backbone (reductions + fusion)."""
        return [*self.reduce.parameters(), *self.embed.parameters()]

    def reset_parameters(self) -> None:
        """Kaiming init for the ReLU-followed reductions, Xavier for the linear F_A conv; zero biases."""
        for conv in self.reduce:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.xavier_uniform_(self.embed.weight)
        nn.init.zeros_(self.embed.bias)

    def embedding(self, taps: tuple[Tensor, ...]) -> Tensor:
        """F_A from the taps. Shapes: taps[k] (B, C_k, h, w) -> (B, d_A, h, w)."""
        reduced = [torch.relu(conv(t)) for conv, t in zip(self.reduce, taps)]
        return self.embed(torch.cat(reduced, dim=1))

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        taps = tuple(self.backbone(x))
        return self.embedding(taps), taps

    @staticmethod
    def node_features(taps: tuple[Tensor, ...]) -> Tensor:
        """Graph node features before Eq. (15): the concatenated taps (Fig. 4; 5632-d for ResNet-38).

        Shapes: taps[k] (B, C_k, h, w) -> (B, sum_k C_k, h, w).
        """
        return torch.cat(list(taps), dim=1)
