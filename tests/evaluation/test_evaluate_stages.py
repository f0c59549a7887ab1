"""stages/evaluate_labels.py (seed maps and pseudo labels) on a hand-made VOC-layout dataset."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2gnn.core.cli import run_stage
from a2gnn.data.voc import VOCDataset
from a2gnn.core.io import DataError, write_label
from a2gnn.evaluation.labels import evaluate_label_dir
from helpers import load_stage

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("background", "cat", "dog")


def gt_maps():
    a = np.zeros((4, 4), np.uint8)
    a[:, 2:] = 1  # 8 background, 8 cat
    b = np.full((2, 4), 2, np.uint8)
    b[0, 0] = 255  # 7 valid dog pixels
    return {"a": a, "b": b}


def noisy_preds():
    """Known confusion: bg tp 8 fp 4; cat tp 4 fn 4; dog tp 3, 4 unlabelled, 1 on an ignore pixel."""
    a = np.zeros((4, 4), np.uint8)
    a[:, 3] = 1
    b = np.full((2, 4), 255, np.uint8)
    b[0] = 2
    return {"a": a, "b": b}


# hand-computed from the confusion above
EXPECTED = {
    "miou": (8 / 12 + 4 / 8 + 3 / 7) / 3,
    "miou_labelled": (8 / 12 + 4 / 8 + 3 / 3) / 3,
    "precision": 15 / 19,
    "recall": 15 / 23,
    "coverage": 19 / 23,
    "per_class_iou": {"background": 8 / 12, "cat": 4 / 8, "dog": 3 / 7},
}


def write_dir(path: Path, maps):
    for image_id, label in maps.items():
        write_label(path / f"{image_id}.png", label)


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "data"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    write_dir(root / "SegmentationClass", gt_maps())
    (tmp_path / "params.yaml").write_text("base:\n  seed: 0\nruntime:\n  workers: 0\ndataset:\n  train_split: train\n")
    write_dir(tmp_path / "M_I", noisy_preds())
    write_dir(tmp_path / "seeds" / "M_B", gt_maps())
    write_dir(tmp_path / "seeds" / "M_F", noisy_preds())
    write_dir(tmp_path / "seeds" / "M_g", {k: np.full_like(v, 255) for k, v in gt_maps().items()})
    return tmp_path


def assert_summary(summary, expected):
    for key in ("miou", "miou_labelled", "precision", "recall", "coverage"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-4), key
    for name, value in expected["per_class_iou"].items():
        assert summary["per_class_iou"][name] == pytest.approx(value, abs=1e-4), name


def test_evaluate_label_dir_known_iou(voc):
    cm = evaluate_label_dir(VOCDataset(voc / "data"), voc / "M_I")
    assert_summary(cm.summary(CLASSES), EXPECTED)


def seeds_argv(voc, out):
    return ["--params", str(voc / "params.yaml"), str(voc / "data"),
            f"M_I={voc / 'M_I'}", *(f"{m}={voc / 'seeds' / m}" for m in ("M_B", "M_F", "M_g")),
            *(f"--metric={f}={out / f}.json" for f in ("miou", "miou_labelled", "precision", "recall", "coverage")),
            "--per-class", str(out / "per_class.csv"), "--table", str(out / "table.csv")]


def test_evaluate_seed_maps_stage(voc):
    out = voc / "metrics"
    run_stage(load_stage("evaluate_labels").main, seeds_argv(voc, out))
    for figure in ("miou", "miou_labelled", "precision", "recall", "coverage"):
        by_map = json.loads((out / f"{figure}.json").read_text())
        assert list(by_map) == ["M_B", "M_F", "M_I", "M_g"]  # sorted, one number per map
        assert by_map["M_I"] == pytest.approx(EXPECTED[figure], abs=1e-4), figure
        assert by_map["M_F"] == pytest.approx(EXPECTED[figure], abs=1e-4), figure
    assert json.loads((out / "miou.json").read_text())["M_B"] == 1.0
    assert json.loads((out / "coverage.json").read_text())["M_g"] == 0.0
    rows = [line.split(",") for line in (out / "per_class.csv").read_text().splitlines()]
    assert rows[0] == ["class", "M_I", "M_B", "M_F", "M_g"]
    by_class = {r[0]: r[1:] for r in rows[1:]}
    for name, iou in EXPECTED["per_class_iou"].items():
        assert float(by_class[name][0]) == pytest.approx(iou, abs=1e-4), name
        assert float(by_class[name][1]) == 1.0
    table = [line.split(",") for line in (out / "table.csv").read_text().splitlines()]
    assert table[0] == ["name", "miou", "miou_labelled", "precision", "recall", "coverage"]
    assert [float(v) for v in table[1][1:]] == pytest.approx(
        [EXPECTED[k] for k in ("miou", "miou_labelled", "precision", "recall", "coverage")], abs=1e-4)


def test_evaluate_pseudo_labels_one_miou_per_method(voc):
    out = voc / "pseudo.json"
    argv = ["--params", str(voc / "params.yaml"), str(voc / "data"), f"a2gnn={voc / 'seeds' / 'M_B'}",
            f"rw={voc / 'M_I'}", "--metric", f"miou={out}", "--per-class", str(voc / "pseudo.csv")]
    run_stage(load_stage("evaluate_labels").main, argv)
    assert json.loads(out.read_text()) == {"a2gnn": 1.0, "rw": pytest.approx(EXPECTED["miou"], abs=1e-4)}


@pytest.mark.parametrize("bad", [["noequals"], ["=dir"], ["a=dir", "--metric", "nofigure=x.json"]])
def test_bad_arguments(voc, bad):
    with pytest.raises(SystemExit) as exc:
        load_stage("evaluate_labels").main(["--params", str(voc / "params.yaml"), str(voc / "data"), *bad,
                                            "--metric", "miou=x.json", "--per-class", str(voc / "x.csv")])
    assert exc.value.code == 2


def test_missing_prediction_names_file_and_writes_nothing(voc, capsys):
    (voc / "seeds" / "M_F" / "b.png").unlink()
    out = voc / "metrics"
    with pytest.raises(SystemExit) as exc:
        run_stage(load_stage("evaluate_labels").main, seeds_argv(voc, out))
    assert exc.value.code == 1
    assert str(Path("M_F") / "b.png") in capsys.readouterr().err
    assert not out.exists()


def test_missing_prediction_as_script(voc):
    (voc / "M_I" / "a.png").unlink()
    out = voc / "pseudo.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "evaluate_labels.py"), "--params", str(voc / "params.yaml"),
         str(voc / "data"), f"m_i={voc / 'M_I'}", "--metric", f"miou={out}", "--per-class", str(voc / "p.csv")],
        capture_output=True, text=True, cwd=voc,
    )
    assert proc.returncode == 1
    assert str(voc / "M_I" / "a.png") in proc.stderr and "missing" in proc.stderr
    assert not out.exists()


def test_wrong_size_and_bad_values_name_the_file(voc):
    dataset = VOCDataset(voc / "data")
    write_label(voc / "M_I" / "b.png", np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match="b.png.*3"):
        evaluate_label_dir(dataset, voc / "M_I")
    bad = np.zeros((2, 4), np.uint8)
    bad[1, 1] = 9  # not a class of this 3-class dataset, not 255
    write_label(voc / "M_I" / "b.png", bad)
    with pytest.raises(DataError, match="b.png.*9"):
        evaluate_label_dir(dataset, voc / "M_I")


def test_missing_label_directory(voc):
    with pytest.raises(DataError, match="nowhere"):
        evaluate_label_dir(VOCDataset(voc / "data"), voc / "nowhere")
