"""The ResNet-style backbones of the registry: ``small`` (CPU, from scratch), ``resnet38`` (the paper's wide
ResNet-38 of PSA/SEAM) and torchvision's ``resnet50`` / ``resnet101`` (see :mod:`a2gnn.backbones.base` for the
interface, the taps and the weights; imported by :mod:`a2gnn.backbones`, which registers every entry)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from a2gnn.backbones.base import Backbone, BackboneConfig, norm_layer, register_backbone


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv that keeps ceil(H / stride) (padding = dilation)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _kaiming_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# "small": compact from-scratch network for CPU runs
# --------------------------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    """Post-activation residual block: relu(norm(conv3x3(relu(norm(conv3x3(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride, dilation)
        self.norm1 = norm(cout)
        self.conv2 = _conv3x3(cout, cout, 1, dilation)
        self.norm2 = norm(cout)
        self.shortcut = (
            nn.Identity() if cin == cout and stride == 1 else nn.Sequential(_conv1x1(cin, cout, stride), norm(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class _Bottleneck(nn.Module):
    """Post-activation bottleneck (1x1 -> dilated 3x3 -> 1x1, mid = cout / 4) with projection shortcut."""

    def __init__(self, cin: int, cout: int, dilation: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        mid = cout // 4
        self.conv1 = _conv1x1(cin, mid)
        self.norm1 = norm(mid)
        self.conv2 = _conv3x3(mid, mid, 1, dilation)
        self.norm2 = norm(mid)
        self.conv3 = _conv1x1(mid, cout)
        self.norm3 = norm(cout)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(_conv1x1(cin, cout), norm(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        y = torch.relu(self.norm2(self.conv2(y)))
        return torch.relu(self.norm3(self.conv3(y)) + self.shortcut(x))


class SmallBackbone(Backbone):
    """Compact dilated residual network (trains from scratch on a CPU in minutes).

    stem conv3x3/2 (w) -> block/2 (2w) -> block/2 (4w; stride 1 when ``stride == 4``) ->
    tap 1: basic block, dilation 2 (4w) -> tap 2: bottleneck, dilation 4 (8w) ->
    tap 3: bottleneck, dilation 4 (16w).  The three dilated blocks mirror ResNet-38's b5/b6/b7
    (paper §5: "dilated rates 2, 4 and 4"), scaled down in width.
    """

    def __init__(self, width: int = 16, stride: int = 8, norm: str = "bn"):
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"small backbone supports stride 4 or 8, got {stride}")
        make_norm = norm_layer(norm)
        w = width
        self.stride = stride
        self.tap_channels = (4 * w, 8 * w, 16 * w)
        self.stem = nn.Sequential(_conv3x3(3, w, 2), make_norm(w), nn.ReLU(inplace=True))
        self.stage1 = _BasicBlock(w, 2 * w, 2, 1, make_norm)
        self.stage2 = _BasicBlock(2 * w, 4 * w, 2 if stride == 8 else 1, 1, make_norm)
        self.block_a = _BasicBlock(4 * w, 4 * w, 1, 2, make_norm)
        self.block_b = _Bottleneck(4 * w, 8 * w, 4, make_norm)
        self.block_c = _Bottleneck(8 * w, 16 * w, 4, make_norm)
        _kaiming_init(self)

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stage2(self.stage1(self.stem(x)))
        t1 = self.block_a(x)
        t2 = self.block_b(t1)
        t3 = self.block_c(t2)
        return t1, t2, t3


# --------------------------------------------------------------------------------------------
# "resnet38": pre-activation wide ResNet-38 (PSA / SEAM / A2GNN)
# --------------------------------------------------------------------------------------------
class _PreActBlock(nn.Module):
    """Pre-activation block: a = relu(bn(x)); out = conv3x3(relu(bn(conv3x3(a)))) + (x or conv1x1(a)).

    ``forward`` returns (out, a): ``a`` is the post-activation view of the block's *input*, which is
    how ResNet-38's taps are read.
    """

    def __init__(self, cin: int, mid: int, cout: int, stride: int, first_dilation: int, dilation: int, norm):
        super().__init__()
        self.bn_branch2a = norm(cin)
        self.conv_branch2a = _conv3x3(cin, mid, stride, first_dilation)
        self.bn_branch2b1 = norm(mid)
        self.conv_branch2b1 = _conv3x3(mid, cout, 1, dilation)
        self.conv_branch1 = _conv1x1(cin, cout, stride) if (cin != cout or stride != 1) else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.relu(self.bn_branch2a(x))
        shortcut = x if self.conv_branch1 is None else self.conv_branch1(a)
        y = self.conv_branch2a(a)
        y = self.conv_branch2b1(torch.relu(self.bn_branch2b1(y)))
        return y + shortcut, a


class _PreActBottleneck(nn.Module):
    """Pre-activation bottleneck of ResNet-38's b6/b7: 1x1 (cout/4) -> 3x3 dilated (cout/2) -> 1x1 (cout),
    channel dropout before the last two convolutions; projection shortcut."""

    def __init__(self, cin: int, cout: int, dilation: int, dropout: float, norm):
        super().__init__()
        self.bn_branch2a = norm(cin)
        self.conv_branch1 = _conv1x1(cin, cout)
        self.conv_branch2a = _conv1x1(cin, cout // 4)
        self.bn_branch2b1 = norm(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = _conv3x3(cout // 4, cout // 2, 1, dilation)
        self.bn_branch2b2 = norm(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = _conv1x1(cout // 2, cout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(a)
        y = self.conv_branch2a(a)
        y = self.conv_branch2b1(self.dropout_2b1(torch.relu(self.bn_branch2b1(y))))
        y = self.conv_branch2b2(self.dropout_2b2(torch.relu(self.bn_branch2b2(y))))
        return y + shortcut, a


class ResNet38(Backbone):
    """Wide ResNet-38 as used by PSA/SEAM/A2GNN (output stride 8), see implementation-facts.md.

    conv1a 3->64; b2: 3 blocks 128 (/2); b3: 3 blocks 256 (/2); b4: 6 blocks 512 (/2);
    b5: 3 blocks mid 512 / out 1024, dilation 2; b6: bottleneck 1024->2048, dilation 4, dropout 0.3;
    b7: bottleneck 2048->4096, dilation 4, dropout 0.5; bn7 + ReLU.
    Taps: relu(bn(b4 output)) (512), relu(bn(b5 output)) (1024), relu(bn7(b7 output)) (4096).
    """

    B6_DROPOUT = 0.3
    B7_DROPOUT = 0.5

    def __init__(self, norm: str = "bn"):
        super().__init__()
        n = norm_layer(norm)
        self.stride = 8
        self.tap_channels = (512, 1024, 4096)
        self.conv1a = _conv3x3(3, 64)
        self.b2 = _PreActBlock(64, 128, 128, 2, 1, 1, n)
        self.b2_1 = _PreActBlock(128, 128, 128, 1, 1, 1, n)
        self.b2_2 = _PreActBlock(128, 128, 128, 1, 1, 1, n)
        self.b3 = _PreActBlock(128, 256, 256, 2, 1, 1, n)
        self.b3_1 = _PreActBlock(256, 256, 256, 1, 1, 1, n)
        self.b3_2 = _PreActBlock(256, 256, 256, 1, 1, 1, n)
        self.b4 = _PreActBlock(256, 512, 512, 2, 1, 1, n)
        for i in range(1, 6):
            setattr(self, f"b4_{i}", _PreActBlock(512, 512, 512, 1, 1, 1, n))
        self.b5 = _PreActBlock(512, 512, 1024, 1, 1, 2, n)
        self.b5_1 = _PreActBlock(1024, 512, 1024, 1, 2, 2, n)
        self.b5_2 = _PreActBlock(1024, 512, 1024, 1, 2, 2, n)
        self.b6 = _PreActBottleneck(1024, 2048, 4, self.B6_DROPOUT, n)
        self.b7 = _PreActBottleneck(2048, 4096, 4, self.B7_DROPOUT, n)
        self.bn7 = n(4096)
        self._early = ["b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4"] + [f"b4_{i}" for i in range(1, 6)]
        _kaiming_init(self)

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.conv1a(x)
        for name in self._early:
            x, _ = getattr(self, name)(x)
        x, tap1 = self.b5(x)  # tap1 = relu(bn(b4 output))
        x, _ = self.b5_1(x)
        x, _ = self.b5_2(x)
        x, tap2 = self.b6(x)  # tap2 = relu(bn(b5 output))
        x, _ = self.b7(x)
        tap3 = torch.relu(self.bn7(x))
        return tap1, tap2, tap3


# --------------------------------------------------------------------------------------------
# torchvision ResNet-50 / 101
# --------------------------------------------------------------------------------------------
class TorchvisionResNet(Backbone):
    """torchvision ResNet-50/101 (weights=None), output stride 8.

    replace_stride_with_dilation = [False, True, True] keeps layer3 and layer4 at layer2's stride 8
    (dilation 2 and 4), so all three taps share it. Taps: outputs of layer2 (512), layer3 (1024),
    layer4 (2048) (each block ends with a ReLU).
    """

    def __init__(self, depth: int = 50, norm: str = "bn"):
        super().__init__()
        import torchvision

        builders = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}
        if depth not in builders:
            raise ValueError(f"unsupported resnet depth {depth}")
        net = builders[depth](
            weights=None, replace_stride_with_dilation=[False, True, True], norm_layer=norm_layer(norm)
        )
        self.stride = 8
        self.tap_channels = (512, 1024, 2048)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        t1 = self.layer2(self.layer1(x))
        t2 = self.layer3(t1)
        t3 = self.layer4(t2)
        return t1, t2, t3


# --------------------------------------------------------------------------------------------
# registry entries of the backbones above (EfficientNet-Lite registers in a2gnn.backbones.efficientnet)
# --------------------------------------------------------------------------------------------
@register_backbone("small", strides=(4, 8))
def _build_small(cfg: BackboneConfig) -> Backbone:
    return SmallBackbone(cfg.width, cfg.stride, "bn" if cfg.norm == "frozen_bn" else cfg.norm)


@register_backbone("resnet38", strides=(8,))
def _build_resnet38(cfg: BackboneConfig) -> Backbone:
    return ResNet38("bn" if cfg.norm == "frozen_bn" else cfg.norm)


@register_backbone("resnet50", strides=(8,))
def _build_resnet50(cfg: BackboneConfig) -> Backbone:
    return TorchvisionResNet(50, "bn" if cfg.norm == "frozen_bn" else cfg.norm)


@register_backbone("resnet101", strides=(8,))
def _build_resnet101(cfg: BackboneConfig) -> Backbone:
    return TorchvisionResNet(101, "bn" if cfg.norm == "frozen_bn" else cfg.norm)
