"""Profiles: an overlay merged into params.yaml keeps comments and layout, and rejects unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from a2gnn.core.io import DataError
from a2gnn.pipeline.profiles import apply_profile, main, merge_into, parse_set

ROOT = Path(__file__).resolve().parents[2]

PARAMS = """\
# header comment
cam:  # section comment
  backbone:
    name: small   # which net
    stride: 8
  epochs: 30      # training epochs
  scale_range: [0.9, 1.1]  # rescale
crf:
  iterations: 10
"""


def test_merge_changes_only_the_overlay_keys_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    changed = apply_profile(params, [{"cam": {"backbone": {"name": "efficientnet_lite0"}, "scale_range": [0.7, 1.3]}}])
    assert changed == ["cam.backbone.name", "cam.scale_range"]
    text = params.read_text()
    assert "# header comment" in text and "# which net" in text and "# training epochs" in text
    assert "scale_range: [0.7, 1.3]" in text  # flow lists stay flow lists
    data = yaml.safe_load(text)
    assert data == {
        "cam": {"backbone": {"name": "efficientnet_lite0", "stride": 8}, "epochs": 30, "scale_range": [0.7, 1.3]},
        "crf": {"iterations": 10},
    }


def test_unknown_key_is_an_error_and_leaves_the_file_alone(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    with pytest.raises(DataError, match="cam.backbone.nmae"):
        apply_profile(params, [{"cam": {"backbone": {"nmae": "x"}}}])
    assert params.read_text() == PARAMS


def test_set_parses_yaml_values():
    assert parse_set("cam.epochs=5") == {"cam": {"epochs": 5}}
    assert parse_set("dataset.root=/data/mine") == {"dataset": {"root": "/data/mine"}}
    assert parse_set("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    with pytest.raises(ValueError):
        parse_set("no_value")
    target = {"a": {"b": 1, "c": 2}}
    assert merge_into(target, {"a": {"b": 1, "c": 3}}) == ["a.c"]


def test_shipped_profiles_apply_to_params_yaml_and_validate(tmp_path):
    """Every profile in profiles/ names only existing keys, and the merged params pass every config check."""
    from a2gnn.affinity.train import AffinityConfig
    from a2gnn.seeds.cam import CAMConfig

    for profile in sorted((ROOT / "profiles").glob("*.yaml")):
        params = tmp_path / "params.yaml"
        params.write_text((ROOT / "params.yaml").read_text())
        assert main([str(profile), "--params", str(params), "--set", "dataset.root=/my/data"]) == 0
        merged = yaml.safe_load(params.read_text())
        assert merged["dataset"]["root"] == "/my/data"
        CAMConfig.from_params(merged["cam"])
        AffinityConfig.from_params(merged["affinity"])


def test_voc_paper_profile_holds_the_paper_readings():
    """profiles/voc_paper.yaml = the paper's scale + every reading of profiles/paper.yaml, value for value."""
    root = Path(__file__).resolve().parents[2] / "profiles"
    readings = yaml.safe_load((root / "paper.yaml").read_text())
    voc = yaml.safe_load((root / "voc_paper.yaml").read_text())

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    voc_leaves = dict(leaves(voc))
    differ = {k: (v, voc_leaves.get(k, "missing")) for k, v in leaves(readings) if voc_leaves.get(k, "missing") != v}
    assert not differ, differ
    assert readings["postprocess"]["box_constraint"] is False and readings["gnn"]["consistency_scale"] == "absolute"
