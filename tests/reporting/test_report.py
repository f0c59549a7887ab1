"""The report (a2gnn.reporting.report, stages/report.py): built from small fake metric files it holds the tables beside the
paper's numbers, writes every figure dvc.yaml declares, and is byte-identical when run twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from a2gnn.pipeline import ablations
from a2gnn.reporting import report
from a2gnn.reporting.report import FIGURES, downstream, load_inputs, write_report

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fig7_result():
    experiments = {}
    for k, row in enumerate(ablations.TABLES["fig7"].rows):
        if row.overrides:
            experiments[ablations.experiment_name("fig7", row)] = {
                "rev": str(k), "state": "success", "params": {},
                "metrics": {ablations.METRIC_FILE: {"a2gnn": 0.6 + k / 100}}}
    default = {"rev": "head", "state": "success", "params": {}, "metrics": {ablations.METRIC_FILE: {"a2gnn": 0.8}}}
    return ablations.collect("fig7", default, experiments)


@pytest.fixture
def inputs(tmp_path):
    m = tmp_path / "metrics"
    metrics = [
        _write(m / "seeds_miou.json", json.dumps({"M_I": 0.46, "M_B": 0.75, "M_F": 0.56, "M_g": 0.37})),
        _write(m / "seeds_precision.json", json.dumps({"M_I": 0.82, "M_B": 0.93, "M_F": 0.97, "M_g": 0.99})),
        _write(m / "pseudo_labels.json", json.dumps({"a2gnn": 0.8132, "rw": 0.7942, "baseline": 0.766})),
        _write(m / "consistency.json", json.dumps({"removed": 0.25, "removed_wrong": 0.55})),
        _write(m / "segmentation.json", json.dumps({"miou": {"a2gnn": 0.47, "gt": 0.52},
                                                    "miou_crf": {"a2gnn": 0.55, "gt": 0.58}})),
        _write(m / "instance.json", json.dumps({"ap50": {"a2gnn": 0.2, "gt": 0.21}, "ap70": {"a2gnn": 0.05, "gt": 0.05},
                                                "ap75": {"a2gnn": 0.03, "gt": 0.02}, "ap_l": {"a2gnn": -1, "gt": -1}})),
    ]
    per_class = [_write(m / "per_class" / "pseudo_labels.csv",
                        "class,a2gnn,rw\nbackground,0.9,0.8\ndisc,0.7,0.6\nring,0.5,0.55\n")]
    tables = [_write(m / "tables" / "seeds.csv",
                     "name,miou,precision,coverage\nM_F,0.56,0.97,0.78\nM_g,0.37,0.99,0.71\n")]
    curves = tmp_path / "dvclive" / "train_x" / "plots" / "metrics"
    _write(curves / "train_x" / "loss.tsv", "step\tloss\n0\t1.5\n1\t1.0\n2\t0.7\n")
    _write(curves / "train_x" / "val_miou.tsv", "step\tval_miou\n1\t0.3\n2\t0.4\n")
    ablation_dir = m / "ablations"
    _write(ablation_dir / "README.md", "tables\n")
    ablations.write_result(_fig7_result(), ablation_dir)
    default = {"rev": "head", "state": "success", "params": {},
               "metrics": {ablations.METRIC_FILE: {"a2gnn": 0.81, "rw": 0.79, "baseline": 0.77}}}
    ablations.write_result(ablations.collect("table4a", default, {}), ablation_dir)
    return dict(metrics=metrics, per_class=per_class, tables=tables, curves=[curves], ablations=ablation_dir)


def _build(tmp_path, inputs, name="out"):
    out = tmp_path / name / "report.md"
    write_report(out, tmp_path / name / "report", **inputs)
    return out


def test_report_has_the_tables_beside_the_paper_and_writes_every_figure(tmp_path, inputs):
    text = _build(tmp_path, inputs).read_text()
    # seeds: mIoU, precision (JSONs), coverage (tables/seeds.csv)
    assert "| M_g | 37.0 | 99.0 | 71.0 |" in text and "| M_I | 46.0 | 82.0 | – |" in text
    assert "| a2gnn | 81.3 | 78.8 |" in text and "| baseline | 76.6 | 62.3 |" in text  # Table 4(a) paper column
    assert "| disc | 70.0 | 60.0 |" in text  # per-class table
    assert "| a2gnn | 47.0 | 55.0 | 72.2 | 73.8 |" in text  # Table 1
    assert "| a2gnn | 20.0 | 5.0 | 3.0 | – | 59.1 | 35.5 | 27.4 |" in text  # Table 2; AP_l -1 = undefined
    assert "### Fig. 7" in text and "| GAT, CE |" in text
    assert "### Table 4(a)" in text
    assert "| Baseline (CAM seeds, background from boxes) | default run | 62.3 | 77.0 |" in text
    assert text.index("### Table 4(a)") < text.index("### Fig. 7")  # the paper's order
    for name in FIGURES.values():
        png = tmp_path / "out" / "report" / name
        assert png.read_bytes().startswith(PNG), name
        assert f"](report/{name})" in text


def test_running_twice_gives_identical_bytes(tmp_path, inputs):
    first, second = _build(tmp_path, inputs, "a"), _build(tmp_path, inputs, "b")
    assert first.read_bytes() == second.read_bytes()
    for name in FIGURES.values():
        assert (first.parent / "report" / name).read_bytes() == (second.parent / "report" / name).read_bytes(), name


def test_missing_inputs_leave_their_sections_out_and_fig7_is_a_placeholder(tmp_path):
    out = _build(tmp_path, dict(metrics=[tmp_path / "nope.json"], ablations=tmp_path / "none"))
    text = out.read_text()
    assert "No ablation table yet" in text and "## Seeds" not in text
    for name in FIGURES.values():
        assert (out.parent / "report" / name).read_bytes().startswith(PNG)


def test_older_downstream_metric_names_read_the_same(tmp_path):
    new = {"segmentation": {"miou": {"a2gnn": 0.4}, "miou_crf": {"a2gnn": 0.5}},
           "instance": {"ap50": {"a2gnn": 0.2}, "ap70": {"a2gnn": 0.1}, "ap75": {"a2gnn": 0.05}}}
    old = {"deeplab_miou": {"a2gnn": 0.4}, "deeplab_miou_crf": {"a2gnn": 0.5}, "instance_ap50": {"a2gnn": 0.2},
           "instance_ap70": {"a2gnn": 0.1}, "instance_ap75": {"a2gnn": 0.05}}
    assert downstream(new) == downstream(old)


def test_curves_are_keyed_by_run_and_metric(inputs):
    data = load_inputs(**inputs)
    assert data["curves"] == {"train_x": {"train_x/loss": ([0.0, 1.0, 2.0], [1.5, 1.0, 0.7]),
                                          "train_x/val_miou": ([1.0, 2.0], [0.3, 0.4])}}
    assert list(data["ablations"]) == ["table4a", "fig7"]


def test_fig7_bars_pair_ours_with_the_paper():
    bars = report.fig7_bars(_fig7_result())
    assert list(bars) == ["gcn", "gat", "agnn", "a2gnn"]
    assert bars["a2gnn"]["full"] == (80.0, 78.8) and bars["agnn"]["ce"][1] == 71.9


def test_stage_script_writes_the_report(tmp_path, inputs):
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_stage", ROOT / "stages" / "report.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    out = tmp_path / "stage" / "report.md"
    stage.main(["--params", str(ROOT / "params.yaml"), "--out", str(out), "--figures", str(out.parent / "report"),
                "--metrics", *map(str, inputs["metrics"]), "--per-class", *map(str, inputs["per_class"]),
                "--curves", *map(str, inputs["curves"]), "--ablations", str(inputs["ablations"])])
    assert "| a2gnn | 81.3 | 78.8 |" in out.read_text()


def test_dvc_yaml_declares_every_figure_as_a_plot():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    plots = [next(iter(p)) for p in stage["plots"]]
    figures = stage["cmd"].split("--figures ")[1].split()[0]
    assert sorted(plots) == sorted(f"{figures}/{name}" for name in FIGURES.values())
    assert [next(iter(o)) for o in stage["outs"]] == ["metrics/report.md"]
    assert "metrics/ablations" in stage["deps"] and (ROOT / "metrics" / "ablations" / "README.md").exists()


def test_per_class_csv_with_an_absent_class_draws(tmp_path):
    """A class absent from a split has an empty IoU cell (label_eval's CSV): the figure is still drawn."""
    from a2gnn.reporting import report

    csv = tmp_path / "seeds.csv"
    csv.write_text("class,M_I,M_B\nbackground,0.9,0.8\ndisc,,\n")
    report.save_figure(report.per_class_figure({"seeds": report.read_csv(csv)}), tmp_path / "per_class.png")
    assert (tmp_path / "per_class.png").stat().st_size > 0


def test_pseudo_instances_section_sorts_methods_and_skips_unavailable():
    header = "method,box_iou,iou_small,iou_medium,iou_large,ap,ap50,ap75,boxes".split(",")
    rows = [dict(zip(header, r.split(","))) for r in (
        "a2gnn,0.7000,0.5000,0.7000,0.9000,0.4000,0.8000,0.3000,12",
        "boxes,0.5000,0.4000,,0.6000,0.2000,0.6000,0.1000,12",
        "gone,,,,,,,,")]
    text = report.pseudo_instances_section({"tables": {"pseudo_instances": rows}})
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| boxes | 50.0 | 40.0 | – | 60.0 | 20.0 | 60.0 | 10.0 | 12")
    assert lines[2].startswith("| a2gnn | 70.0") and "gone" not in text
    assert report.pseudo_instances_section({"tables": {}}) == ""
