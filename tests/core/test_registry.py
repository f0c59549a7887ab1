"""Registry: the one plug-in table (decorator, duplicate check, names in order, an error listing the choices)."""

import pytest

from a2gnn.core.registry import Registry, UnknownChoice


def test_register_add_lookup_and_order():
    reg = Registry("widget")

    @reg.register("b")
    def make_b():
        return "B"

    assert reg.add("a", 1) == 1
    assert reg["b"] is make_b and reg.get("a") == 1
    assert reg.names() == ("b", "a") and list(reg) == ["b", "a"] and len(reg) == 2
    assert "a" in reg and "c" not in reg and 3 not in reg
    assert dict(reg.items()) == {"b": make_b, "a": 1}


def test_duplicate_and_bad_names_are_errors():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", 3)
    assert reg["a"] == 1


def test_unknown_name_lists_the_choices():
    reg = Registry("widget")
    reg.add("x", 1)
    reg.add("y", 2)
    with pytest.raises(UnknownChoice) as err:
        reg["z"]
    assert str(err.value) == "unknown widget 'z'; one of ('x', 'y')"
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("module, name, entries", [
    ("a2gnn.backbones.base", "BACKBONES", {"small", "resnet38", "resnet50", "resnet101", "efficientnet_lite0"}),
    ("a2gnn.backbones.base", "NORM_LAYERS", {"bn", "gn"}),
    ("a2gnn.data.formats", "DATASET_FORMATS", {"voc", "coco"}),
    ("a2gnn.data.supervision", "SUPERVISION_FORMS", {"box", "scribble", "point", "image"}),
    ("a2gnn.seeds.weak", "WEAK_SEEDS", {"scribble", "point", "image"}),
    ("a2gnn.core.training", "OPTIMIZERS", {"sgd", "adam", "adamw"}),
    ("a2gnn.graph.types", "EDGE_SOURCES", {"affinity", "l1"}),
    ("a2gnn.graph.types", "NODE_LAYOUTS", {"grid", "superpixels"}),
    ("a2gnn.gnn.model", "LAYER_KINDS", {"a2gnn", "agnn", "gcn", "gat"}),
    ("a2gnn.gnn.consistency", "CONSISTENCY_SCALES", {"background", "absolute", "nearest"}),
    ("a2gnn.instance.maskrcnn", "BACKBONE_BUILDERS", {"resnet", "efficientnet_lite0"}),
])
def test_every_plug_in_point_is_a_registry(module, name, entries):
    import importlib

    reg = getattr(importlib.import_module(module), name)
    assert isinstance(reg, Registry) and entries <= set(reg.names())


def test_a_config_rejects_an_unregistered_name_listing_the_choices():
    from a2gnn.core.config import ConfigError
    from a2gnn.gnn.model import GNNConfig

    with pytest.raises(ConfigError, match=r"layer_type.*\('a2gnn', 'agnn', 'gcn', 'gat'\)"):
        GNNConfig.from_params({"layer_type": "nope"})
