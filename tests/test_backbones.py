"""Backbones: tap shapes / channels / stride rule, non-negative taps, norms, local weights files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from a2gnn.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneConfig,
    build_backbone,
    group_count,
    load_backbone_weights,
    normalize_image,
)
from a2gnn.config import ConfigError
from a2gnn.io import DataError

CASES = [
    (BackboneConfig(name="small", stride=8, width=8), (32, 64, 128)),
    (BackboneConfig(name="small", stride=4, width=8, norm="gn"), (32, 64, 128)),
    (BackboneConfig(name="resnet50", norm="gn"), (512, 1024, 2048)),
    (BackboneConfig(name="resnet101"), (512, 1024, 2048)),
    (BackboneConfig(name="resnet38"), (512, 1024, 4096)),
]


@pytest.mark.parametrize("cfg,channels", CASES, ids=lambda c: getattr(c, "name", ""))
def test_taps_shapes_channels_and_nonnegative(cfg, channels):
    torch.manual_seed(0)
    model = build_backbone(cfg).eval()
    assert model.tap_channels == channels
    assert model.stride == cfg.stride
    h, w = 21, 34  # odd / non-multiple sizes: the grid must be ceil(H / s) x ceil(W / s)
    with torch.no_grad():
        taps = model(torch.randn(2, 3, h, w))
    assert len(taps) == 3
    for tap, c in zip(taps, channels):
        assert tap.shape == (2, c, math.ceil(h / cfg.stride), math.ceil(w / cfg.stride))
        assert float(tap.min()) >= 0.0
        assert float(tap.max()) > 0.0


@pytest.mark.parametrize("h,w", [(16, 16), (17, 9), (33, 40), (1, 5)])
def test_small_ceil_rule(h, w):
    model = build_backbone(BackboneConfig(name="small", stride=8, width=4)).eval()
    with torch.no_grad():
        taps = model(torch.randn(1, 3, h, w))
    assert all(t.shape[2:] == (math.ceil(h / 8), math.ceil(w / 8)) for t in taps)


def test_norm_choice_builds_the_right_layers():
    bn = build_backbone(BackboneConfig(name="small", width=8, norm="bn"))
    gn = build_backbone(BackboneConfig(name="small", width=8, norm="gn"))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in bn.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in gn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    # trainable norms (everything trains from scratch)
    assert all(p.requires_grad for p in gn.parameters())


def test_group_count():
    assert group_count(64) == 32
    assert group_count(16) == 8  # at least 2 channels per group
    assert group_count(48) == 16
    assert group_count(6) == 2
    assert group_count(3) == 1


def test_resnet38_tap1_is_relu_bn_of_b4_output():
    """Tap 1 of ResNet-38 is the pre-activation of b5, i.e. relu(bn(b4_5 output))."""
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name="resnet38")).eval()
    seen = {}

    def keep_output(module, inputs, output):
        seen["b4"] = output[0]

    model.b4_5.register_forward_hook(keep_output)
    with torch.no_grad():
        tap1, _, _ = model(torch.randn(1, 3, 16, 16))
        expected = torch.relu(model.b5.bn_branch2a(seen["b4"]))
    assert torch.allclose(tap1, expected)


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = BackboneConfig(name="small", width=4)
    src = build_backbone(cfg).eval()
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    assert not torch.equal(build_backbone(cfg).stem[0].weight, src.stem[0].weight)
    loaded = build_backbone(BackboneConfig(name="small", width=4, weights=str(path))).eval()
    for (k, a), (_, b) in zip(src.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(src(x), loaded(x)))


def test_weights_partial_and_wrapped_reports_missing_and_unexpected(tmp_path):
    model = build_backbone(BackboneConfig(name="small", width=4))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("block_c.")}
    state["fc.weight"] = torch.zeros(3)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": state}, path)
    missing, unexpected = load_backbone_weights(model, path)
    assert missing and all(k.startswith("block_c.") for k in missing)
    assert unexpected == ["fc.weight"]


def test_bad_weights_raise_dataerror_naming_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match="nope.pt"):
        build_backbone(BackboneConfig(name="small", width=4, weights=str(missing)))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="corrupt.pt"):
        build_backbone(BackboneConfig(name="small", width=4, weights=str(corrupt)))
    wrong = tmp_path / "wrong_shape.pt"
    torch.save(build_backbone(BackboneConfig(name="small", width=8)).state_dict(), wrong)
    with pytest.raises(DataError, match="wrong_shape.pt"):
        build_backbone(BackboneConfig(name="small", width=4, weights=str(wrong)))


@pytest.mark.parametrize(
    "section",
    [
        {"name": "vgg"},
        {"name": "resnet38", "stride": 4},
        {"name": "resnet50", "stride": 16},
        {"norm": "ln"},
        {"width": 6},
    ],
)
def test_config_rejects_bad_values(section):
    with pytest.raises(ConfigError):
        BackboneConfig.from_params(section)


def test_normalize_image():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 0] = (255, 128, 0)
    x = normalize_image(image)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    for c in range(3):
        assert x[c, 0, 0].item() == pytest.approx((image[0, 0, c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
        assert x[c, 1, 2].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-6)
    with pytest.raises(ValueError):
        normalize_image(np.zeros((4, 4), dtype=np.uint8))
