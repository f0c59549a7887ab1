"""a2gnn.pipeline.compare: the default run beside experiments in 120 columns (what `make compare` prints)."""

from __future__ import annotations

import json

import pytest
import yaml

from a2gnn.pipeline import compare
from a2gnn.pipeline.ablation_rows import TABLES
from a2gnn.pipeline.ablations import experiment_name
from helpers import ROOT
from test_ablations import fake_exp_show

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_only_differing_params_and_the_headline_fit_120_columns():
    show = fake_exp_show("table4b")
    out = compare.main([], run=lambda args, capture=False: json.dumps(show))
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120
    header = lines[0].split()
    assert header[:4] == ["run", "a2gnn", "rw", "base"]  # headline first; no DeepLab / Mask R-CNN file here
    switched = {k.split(".")[-1] for r in TABLES["table4b"].rows if r.overrides for k in r.overrides}
    assert set(header[4:]) == switched  # the params the table switches, nothing else of params.yaml
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["default"][1] == "81.0" and len(rows) == 1 + sum(1 for r in TABLES["table4b"].rows if r.overrides)
    name = experiment_name("table4b", TABLES["table4b"].rows[0])
    assert rows[name][header.index("use_mp")] == "False"


def test_named_experiments_short_names_and_cut_lines():
    show = fake_exp_show("table4c")
    names = [experiment_name("table4c", r) for r in TABLES["table4c"].rows if r.overrides][:1]
    text = compare.main(names, run=lambda args, capture=False: json.dumps(show))
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["default", *names]
    assert compare.short_names(["gnn.epochs", "cam.epochs", "gnn.use_mp"]) == ["gnn.epochs", "cam.epochs", "use_mp"]
    long = compare.render(["run", "x" * 200], [["a", "1"]], width=120)
    assert all(len(line) <= 120 for line in long.splitlines()) and long.splitlines()[0].endswith("…")
    with pytest.raises(SystemExit):
        compare.main(["nope"], run=lambda args, capture=False: json.dumps(show))


def test_headline_reads_the_pseudo_label_model_whatever_its_name():
    metrics = {"metrics/deeplab_miou_crf.json": {"baseline": 0.5, "gt": 0.6},
               "metrics/instance_ap50.json": {"gt": 0.4, "unavailable": "x"}}
    got = compare.headline(metrics)
    assert got["dl_crf"] == 0.5 and got["ap50"] is None and got["a2gnn"] is None
