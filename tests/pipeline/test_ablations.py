"""The ablation tables (a2gnn.pipeline.ablations): the registry matches the paper and params.yaml, the Markdown table is
built from ``dvc exp show --json``, and a row reruns only the stages its switches reach (checked against the
dvc.yaml params deps and against ``dvc status`` itself)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from a2gnn.pipeline import ablations, reruns
from a2gnn.pipeline.ablation_rows import CE_ONLY, METRIC_FILE, TABLES, TARGET
from a2gnn.pipeline.ablations import collect, experiment_name, format_table, parse_exp_show, queue_command
from a2gnn.pipeline.reruns import changed_stages, stage_graph, stages_to_rerun

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = Path("/work/shared/reference/a2gnn_paper.md")

# The paper's numbers, top to bottom (Table 4 of the TPAMI paper; Fig. 7 and the §6.3 text where printed).
PAPER_ORDER = {
    "table4a": [62.3, 70.3, 71.3, 73.8, 74.9, 78.1, 78.8],
    "table4b": [73.8, 74.9, 75.9, 77.2, 78.1, 78.8],
    "table4c": [73.3, 74.7, 78.8],
    "table4d": [73.1, 77.3, 78.8],
    "table4e": [74.5, 71.7, 76.1, 78.8],
    "gnn_seeds": [73.2, 78.8],
}
UPSTREAM_OF_THE_GNN = {"cam", "grabcut", "seeds", "evaluate_seeds", "affinity"}


@pytest.mark.parametrize("table, values", PAPER_ORDER.items())
def test_rows_are_the_papers_in_its_order(table, values):
    assert [row.paper for row in TABLES[table].rows] == values


@pytest.mark.skipif(not PAPER.exists(), reason="paper text not available")
def test_table4_numbers_are_the_papers_text():
    """Each sub-table's last column in the paper text, in order, is the registry's paper column."""
    text = PAPER.read_text()
    block = text[text.index("TABLE 4"):text.index("can build a more accurate graph")]
    subtables = block.split("\n(")[1:]
    found = []
    for sub in subtables:
        found.append([float(line.split("\t")[-1]) for line in sub.splitlines()
                      if "\t" in line and line.split("\t")[-1].replace(".", "", 1).isdigit()])
    assert found == [PAPER_ORDER[t] for t in ("table4a", "table4b", "table4c", "table4d", "table4e")]


def test_every_override_key_is_in_params_yaml():
    assert ablations.check_rows(PARAMS) == []
    for table in TABLES.values():
        for row in table.rows:
            for key in row.overrides or {}:
                reruns.lookup(PARAMS, key)  # KeyError if the switch does not exist


def test_names_are_unique_and_fig7_covers_every_layer():
    for name, table in TABLES.items():
        assert len({row.name for row in table.rows}) == len(table.rows)
        by_experiment = {}
        for row in table.rows:  # rows may share an experiment (other metric keys) only with the same switches
            by_experiment.setdefault(experiment_name(name, row), []).append(row)
        for rows in by_experiment.values():
            assert all(r.overrides == rows[0].overrides for r in rows)
            assert len({r.metric for r in rows}) == len(rows)
    fig7 = {row.name: row for row in TABLES["fig7"].rows}
    for layer in ("gcn", "gat", "agnn", "a2gnn"):
        for variant in ("ce", "full"):
            overrides = dict(fig7[f"{layer}-{variant}"].overrides)
            assert overrides.pop("gnn.layer_type", "a2gnn") == layer
            assert overrides == (CE_ONLY if variant == "ce" else {})


def test_unimplemented_rows_are_listed_not_dropped():
    for table in ("table5",):  # the saliency row: needs a saliency model trained on extra data
        result = collect(table, None, {})
        text = format_table(result)
        assert text.count("\n") == len(TABLES[table].rows) + 2
        assert any(row.overrides is None for row in TABLES[table].rows)
        assert "not implemented" in text


def test_queue_command_names_the_row_and_targets_the_metric_stage():
    row = TABLES["table4b"].rows[2]  # L_ce + L_mp
    assert queue_command("table4b", row) == ["exp", "run", "--queue", "-n", "table4b-ce-mp", "-S", "gnn.use_reg=false",
                                             "-S", "gnn.use_consistency=false", TARGET]
    assert queue_command("table4b", row, target=None)[-1] == "gnn.use_consistency=false"
    assert queue_command("table4b", TABLES["table4b"].rows[-1]) == []  # the default run: no experiment
    saliency = next(r for r in TABLES["table5"].rows if r.name == "image-saliency")
    assert queue_command("table5", saliency) == []  # not implemented
    scribble = next(r for r in TABLES["table5"].rows if r.name == "scribble")  # a table with its own targets
    assert queue_command("table5", scribble, TABLES["table5"].target)[-2:] == [TARGET, "evaluate_deeplab"]


# --------------------------------------------------------------------------------------------------------------
# dvc exp show --json -> Markdown
# --------------------------------------------------------------------------------------------------------------


def _entry(rev, name, values, metrics, state=None):
    entry = {"rev": rev, "name": name, "error": None, "experiments": None,
             "data": {"rev": rev, "params": {"params.yaml": {"data": values}},
                      "metrics": {METRIC_FILE: {"data": metrics}} if metrics else {}}}
    return entry if state is None else {"executor": {"state": state}, "name": name, "revs": [entry]}


def fake_exp_show(table: str, skip=(), states=None, miou=0.7):
    """``dvc exp show --json`` as DVC 3 prints it: workspace, the baseline commit and its experiments."""
    default_metrics = {"a2gnn": 0.81, "rw": 0.79, "baseline": 0.766}
    baseline = _entry("abc", "main", PARAMS, default_metrics)
    baseline["experiments"] = []
    for k, row in enumerate(TABLES[table].rows):
        if not row.overrides or row.name in skip:
            continue
        values = reruns.with_overrides(PARAMS, row.overrides)
        state = (states or {}).get(row.name, "success")
        metrics = {"a2gnn": miou + k / 100, "rw": 0.7, "baseline": 0.766} if state == "success" else {}
        baseline["experiments"].append(_entry(f"e{k}", experiment_name(table, row), values, metrics, state))
    return [_entry("workspace", None, PARAMS, default_metrics), baseline]


def test_markdown_table_from_exp_show_has_one_row_per_ablation():
    default, experiments = parse_exp_show(fake_exp_show("table4b", skip={"ce-reg"}, states={"ce-mp-cc": "queued"}))
    assert default["rev"] == "abc"
    result = collect("table4b", default, experiments)
    text = format_table(result)
    lines = text.splitlines()
    assert lines[0] == "| row | switches (`-S`) | paper (%) | ours (%) | note |"
    assert len(lines) == 2 + len(TABLES["table4b"].rows)
    by_name = {r["name"]: r for r in result["rows"]}
    assert [r["name"] for r in result["rows"]] == [row.name for row in TABLES["table4b"].rows]
    assert by_name["ce"]["ours"] == 70.0 and by_name["ce"]["state"] == "success"
    assert "| L_ce | `gnn.use_reg=false gnn.use_mp=false gnn.use_consistency=false` | 73.8 | 70.0 |" in text
    assert by_name["ce-reg"]["state"] == "not run" and by_name["ce-reg"]["ours"] is None
    assert by_name["ce-mp-cc"]["state"] == "queued"
    assert by_name["full"]["state"] == "default run" and by_name["full"]["ours"] == 81.0
    assert "| L_ce + L_reg + L_mp + C.C. | default run | 78.8 | 81.0 |" in text


def test_baseline_and_rw_rows_read_their_keys():
    default, experiments = parse_exp_show(fake_exp_show("table4a"))
    rows = {r["name"]: r for r in collect("table4a", default, experiments)["rows"]}
    assert rows["baseline"]["ours"] == 76.6 and rows["baseline"]["metric"] == f"{METRIC_FILE}:baseline"
    assert rows["rw"]["ours"] == 79.0
    assert rows["rw-lac"]["ours"] == 70.0  # the experiment's `rw` key, not its `a2gnn`


def test_an_experiment_with_other_switches_is_not_reported():
    show = fake_exp_show("table4d")
    show[1]["experiments"][0]["revs"][0]["data"]["params"]["params.yaml"]["data"] = PARAMS  # stale: no switch set
    default, experiments = parse_exp_show(show)
    row = collect("table4d", default, experiments)["rows"][0]
    assert row["ours"] is None and row["state"].startswith("params differ")


def test_run_table_replaces_same_named_experiments_then_queues_and_runs(monkeypatch):
    calls = []

    def runner(args, capture=False):
        calls.append(args)
        return json.dumps(fake_exp_show("table4d", skip={"edge"})) if args[:2] == ["exp", "show"] else ""

    ablations.run_table(["table4d"], jobs=2, target=TARGET, run=runner)
    assert calls[0][:2] == ["exp", "show"]
    assert calls[1] == ["exp", "remove", "table4d-cos"]
    assert [c[4] for c in calls[2:4]] == ["table4d-cos", "table4d-edge"]
    assert calls[4] == ["queue", "start", "--jobs", "2"]
    assert calls[5] == ["queue", "status"]  # then waits until the rows have left the queue


def test_waiting_polls_the_queue_until_the_rows_are_done(monkeypatch):
    statuses = iter([
        "Task  Name  Created  Status\n1a  table4d-cos  03:14 AM  Running\n2b  table4d-edge  03:14 AM  Queued\n"
        "3c  other  03:14 AM  Queued\n",
        "Task  Name  Created  Status\n1a  table4d-cos  03:14 AM  Success\n2b  table4d-edge  03:14 AM  Running\n",
        "Task  Name  Created  Status\n1a  table4d-cos  03:14 AM  Success\n2b  table4d-edge  03:14 AM  Failed\n"
        "3c  other  03:14 AM  Running\n",
    ])
    polls = []
    ablations.wait_for(["table4d-cos", "table4d-edge"], run=lambda args, capture=False: polls.append(args) or next(statuses),
                       poll_s=0)
    assert len(polls) == 3  # "other" running does not keep it waiting


def test_main_writes_markdown_and_json_and_keeps_results_when_nothing_is_found(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    show = fake_exp_show("table4d")
    monkeypatch.setattr(ablations, "run_dvc", lambda args, capture=False: json.dumps(show))
    assert ablations.main(["table4d"]) == 0
    md = (tmp_path / "metrics/ablations/table4d.md").read_text()
    data = json.loads((tmp_path / "metrics/ablations/table4d.json").read_text())
    assert md.count("\n| ") == 1 + len(TABLES["table4d"].rows) and "77.3" in md
    assert [r["paper"] for r in data["rows"]] == PAPER_ORDER["table4d"]
    assert "table4d" in capsys.readouterr().out
    show[1]["experiments"] = []  # e.g. a new baseline commit: the experiments are not shown any more
    assert ablations.main(["table4d"]) == 0
    assert json.loads((tmp_path / "metrics/ablations/table4d.json").read_text()) == data


def test_run_collects_among_the_experiments_of_the_commit_they_were_queued_on(tmp_path, monkeypatch):
    """A commit made while the queue runs moves HEAD; the table must still find the queued rows."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    heads = iter(["queued-on", "moved-on"])  # HEAD when queueing, then after a commit during the run
    monkeypatch.setattr(ablations, "git_head", lambda: next(heads))
    monkeypatch.setattr(ablations, "run_table", lambda *a, **k: None)
    shows = []
    monkeypatch.setattr(ablations, "run_dvc",
                        lambda args, capture=False: shows.append(args) or json.dumps(fake_exp_show("table4d")))
    assert ablations.main(["table4d", "--run"]) == 0
    assert shows == [["exp", "show", "--json", "--rev", "queued-on"]]
    assert "77.3" in (tmp_path / "metrics/ablations/table4d.md").read_text()
    shows.clear()
    assert ablations.main(["table4d", "--run", "--all-commits"]) == 0
    assert shows == [["exp", "show", "--json", "--all-commits"]]
    shows.clear()
    assert ablations.main(["table4d"]) == 0  # collecting alone: HEAD's experiments, as `dvc exp show`
    assert shows == [["exp", "show", "--json"]]


# --------------------------------------------------------------------------------------------------------------
# which stages a row reruns
# --------------------------------------------------------------------------------------------------------------


def gnn_only_rows():
    return [(t, r) for t, spec in TABLES.items() for r in spec.rows
            if r.overrides and all(k.startswith("gnn.") for k in r.overrides)]


def test_a_gnn_only_row_reruns_pseudo_labels_and_downstream_only():
    assert len(gnn_only_rows()) >= 10
    graph = stage_graph(DVC_YAML, PARAMS)
    below = reruns.downstream(graph, ["pseudo_labels"])
    assert "evaluate_pseudo_labels" in below and "report" in below
    assert not below & UPSTREAM_OF_THE_GNN
    for table, row in gnn_only_rows():
        assert changed_stages(DVC_YAML, PARAMS, row.overrides) == {"pseudo_labels"}, (table, row.name)
        full = stages_to_rerun(DVC_YAML, PARAMS, row.overrides, target=None)
        assert "pseudo_labels" in full and full <= below, (table, row.name)
        assert stages_to_rerun(DVC_YAML, PARAMS, row.overrides) == {"pseudo_labels", TARGET}, (table, row.name)


def test_an_affinity_row_reuses_cam_and_seeds():
    rerun = stages_to_rerun(DVC_YAML, PARAMS, {"affinity.use_ar": False, "affinity.seeds": "M_F"})
    assert rerun == {"affinity", "pseudo_labels", "random_walk", TARGET}


def test_dry_prints_commands_and_stages(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert ablations.main(["table4b", "--dry"]) == 0
    out = capsys.readouterr().out
    assert "dvc exp run --queue -n table4b-ce -S gnn.use_reg=false" in out
    assert "reruns: pseudo_labels, evaluate_pseudo_labels" in out
    assert "table4b-full: default run" in out


def _dvc(args, cwd):
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    dvc = Path(sys.executable).parent / "dvc"
    out = subprocess.run([str(dvc) if dvc.exists() else "dvc", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out[out.index("{"):]) if "{" in out else {}


def _params_changed(status):
    return {stage for stage, changes in status.items() for change in changes if isinstance(change, dict)
            and "params.yaml" in (change.get("changed deps") or {})}


@pytest.mark.skipif(shutil.which("dvc") is None and not (Path(sys.executable).parent / "dvc").exists(),
                    reason="dvc not installed")
def test_dvc_status_agrees_on_the_stages_a_gnn_row_changes(tmp_path):
    """In a copy of the pipeline definition (no outputs), `dvc status` reports changed params for exactly the
    stages changed_stages() computes from dvc.yaml."""
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("stages", "a2gnn"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    _dvc(["init", "--no-scm", "-q"], tmp_path)
    before = _params_changed(_dvc(["status", "--json"], tmp_path))
    overrides = {**CE_ONLY, "affinity.use_ar": False}
    values = reruns.with_overrides(PARAMS, overrides)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    after = _params_changed(_dvc(["status", "--json"], tmp_path))
    expected = changed_stages(DVC_YAML, PARAMS, overrides)
    assert expected == {"pseudo_labels", "affinity"}
    assert after - before == expected - before  # (stages already stale against dvc.lock cannot show a change)


def test_rows_sharing_an_experiment_are_queued_once_and_read_their_own_metric():
    calls = []

    def fake_dvc(args, capture=False):
        calls.append(args)
        return "[]"

    ablations.run_table(["cam_stride4"], jobs=1, target=ablations.TARGET, run=fake_dvc)
    queued = [c[c.index("-n") + 1] for c in calls if c[:3] == ["exp", "run", "--queue"]]
    assert queued.count("cam_stride4-run") == 1 and len(queued) == len(set(queued))
    record = {"state": "success", "params": {}, "metrics": {
        ablations.METRIC_FILE: {"a2gnn": 0.8, "rw": 0.7, "baseline": 0.6}}}
    result = ablations.collect("cam_stride4", None, {"cam_stride4-run": record})
    ours = {row["name"]: row["ours"] for row in result["rows"] if row["experiment"] == "cam_stride4-run"}
    assert ours == {"baseline": 60.0, "rw": 70.0, "a2gnn": 80.0}


def test_every_table_has_a_make_target():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    line = next(l for l in makefile.splitlines() if l.startswith("TABLES :="))
    assert set(line.split(":=")[1].split()) == set(TABLES)
