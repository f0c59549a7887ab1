import dataclasses
import typing

import numpy as np
import pytest

from a2gnn.core.config import BaseConfig, Config, ConfigError, RuntimeConfig, load_params
from a2gnn.core.io import DataError, atomic_dir, read_image, read_label, write_json, write_label


@dataclasses.dataclass(frozen=True)
class _Inner(Config):
    SECTION: typing.ClassVar[str] = "inner"
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class _Outer(Config):
    SECTION: typing.ClassVar[str] = "outer"
    rate: float = 0.1
    sizes: tuple[int, ...] = (1, 2)
    inner: _Inner = _Inner()
    path: str | None = None

    def validate(self):
        self.check(0 < self.rate <= 1, "rate", "in (0, 1]")


def test_config_coerces_and_nests():
    cfg = _Outer.from_params({"rate": 1, "sizes": [3, 4], "inner": {"depth": 5}})
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.sizes == (3, 4)
    assert cfg.inner == _Inner(depth=5)
    assert cfg.path is None


@pytest.mark.parametrize(
    "section, fragment",
    [({"rate": 2.0}, "rate"), ({"bogus": 1}, "bogus"), ({"sizes": 3}, "sizes"), ({"inner": {"depth": "x"}}, "depth")],
)
def test_config_rejects_bad_values_naming_the_key(section, fragment):
    with pytest.raises(ConfigError, match=fragment):
        _Outer.from_params(section)


def test_runtime_config_ranges():
    with pytest.raises(ConfigError, match="workers"):
        RuntimeConfig.from_params({"workers": -1})
    with pytest.raises(ConfigError, match="device"):
        RuntimeConfig.from_params({"device": "tpu"})
    with pytest.raises(ConfigError, match="unknown key"):
        BaseConfig.from_params({"workers": 2})  # speed knobs live in `runtime`, not `base`


def test_load_params_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        load_params(tmp_path / "nope.yaml")


def test_label_png_round_trip_and_palette(tmp_path):
    label = np.array([[0, 1, 255], [2, 3, 0]], dtype=np.uint8)
    write_label(tmp_path / "a.png", label)
    assert np.array_equal(read_label(tmp_path / "a.png"), label)


def test_bad_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(DataError, match="missing"):
        read_image(tmp_path / "none.jpg")


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_old_output(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "x.txt").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "x.txt").write_text("half")
            raise RuntimeError("boom")
    assert (out / "x.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_json_sorted_and_rounded(tmp_path):
    write_json(tmp_path / "m.json", {"b": 0.123456789, "a": {"z": np.float32(0.5)}})
    text = (tmp_path / "m.json").read_text()
    assert text.index('"a"') < text.index('"b"')
    assert "0.1235" in text


def test_data_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(DataError("a/b.png", "broken")))
    assert isinstance(err, DataError) and err.path == "a/b.png" and "broken" in str(err)


def _square(x):
    return x * x


def test_parallel_map_preserves_order_with_processes():
    from a2gnn.core.parallel import parallel_map

    assert parallel_map(_square, list(range(7)), workers=2) == [x * x for x in range(7)]


def test_unavailable_figures_and_model_stand_in(tmp_path):
    from a2gnn.core.io import UNAVAILABLE, save_unavailable, unavailable_figures, unavailable_reason

    assert unavailable_figures(["a2gnn", "gt"], "no masks") == {"a2gnn": None, "gt": None, UNAVAILABLE: "no masks"}
    save_unavailable(tmp_path / "model.pt", "no masks")
    assert unavailable_reason(tmp_path / "model.pt") == "no masks"
    torch = pytest.importorskip("torch")
    torch.save({"model": {}}, tmp_path / "real.pt")
    assert unavailable_reason(tmp_path / "real.pt") is None and unavailable_reason(tmp_path / "absent.pt") is None
