"""LabelFolder: the one reader of label-map folders; every problem is a DataError naming the file."""

import numpy as np
import pytest

from a2gnn.core.io import DataError, write_label
from a2gnn.data.labels import LabelFolder, check_label_values, read_label_checked


@pytest.fixture
def folder(tmp_path):
    label = np.array([[0, 1, 255], [2, 2, 0]], dtype=np.uint8)  # 3 wide, 2 high
    write_label(tmp_path / "a.png", label)
    write_label(tmp_path / "bad.png", np.array([[0, 7]], dtype=np.uint8))
    return tmp_path, label


def test_read_returns_the_map_and_checks_size(folder):
    root, label = folder
    maps = LabelFolder(root, "M_B", num_classes=3)
    assert np.array_equal(maps.read("a", (2, 3)), label)
    assert maps.path("a") == root / "a.png"
    with pytest.raises(DataError, match=r"a\.png.*M_B is 3x2, the image is 4x2"):
        maps.read("a", (2, 4))


def test_missing_map_and_bad_values_name_the_file(folder):
    root, _ = folder
    with pytest.raises(DataError, match=r"nope\.png.*M_B is missing"):
        LabelFolder(root, "M_B").read("nope")
    with pytest.raises(DataError, match=r"bad\.png.*values \[7\]"):
        LabelFolder(root, "pseudo label", num_classes=3).read("bad")
    assert LabelFolder(root).read("bad").max() == 7  # no class count: values unchecked


def test_hint_is_appended_to_a_size_error(folder):
    root, _ = folder
    with pytest.raises(DataError, match=r"the image is 1x1 \(another max_side\?\)"):
        read_label_checked(root / "a.png", (1, 1), hint="(another max_side?)")


def test_check_complete_names_the_first_missing_map_and_counts_the_rest(folder):
    root, _ = folder
    LabelFolder(root).check_complete(["a", "bad"])
    with pytest.raises(DataError, match=r"x\.png.*missing \(1 more of the 4"):
        LabelFolder(root).check_complete(["a", "x", "y", "bad"])
    with pytest.raises(DataError, match="folder is missing"):
        LabelFolder(root / "absent").check_complete(["a"])
    assert LabelFolder(root).missing(["a", "x"]) == ["x"]


def test_check_label_values_accepts_ignore_and_class_indices():
    check_label_values("p.png", np.array([[0, 2, 255]], dtype=np.uint8), 3)
    with pytest.raises(DataError, match=r"values \[3, 254\]"):
        check_label_values("p.png", np.array([[3, 254, 255]], dtype=np.uint8), 3)
