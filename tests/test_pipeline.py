"""End to end: ``dvc repro`` of the whole pipeline on the tiny profile in a scratch git repo.

Checks that the pipeline runs and the method works (A²GNN beats the box Baseline and a floor), that a
second ``dvc repro`` does nothing, that a forced rerun reproduces ``dvc.lock`` exactly (determinism),
that runtime knobs rerun nothing and change no output, that editing a module reruns exactly the stages
that import it (and their downstream), and that one grabcut parameter reruns only grabcut and downstream.
The repo and its one full ``dvc repro`` are the session fixture ``reproduced_repo`` (tests/conftest.py), which
tests/test_remote.py shares; tests that change it restore it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import run, stages_run

pytestmark = pytest.mark.slow
COCO_TOLERANCE = 0.1  # |mIoU(COCO reader) - mIoU(VOC reader)| on the same tiny data
TINY_FLOOR = 0.5  # A²GNN pseudo-label mIoU on the tiny profile must reach this (measured 0.61; Baseline 0.44)
TINY_SCRIBBLE_FLOOR = 0.2  # ... from synthetic scribbles (measured 0.232; an all-background map scores <= 1/6)


def downstream(dvc_yaml: dict, stage: str) -> set[str]:
    """Stages whose deps (transitively) include an out of ``stage``."""
    stages = dvc_yaml["stages"]

    def outs(name):
        result = []
        for o in stages[name].get("outs", []) + stages[name].get("metrics", []):
            result.append(next(iter(o)) if isinstance(o, dict) else o)
        return result

    found, frontier = {stage}, [stage]
    while frontier:
        current = frontier.pop()
        for name, spec in stages.items():
            deps = spec.get("deps", [])
            if name not in found and any(d == o or d.startswith(o + "/") for d in deps for o in outs(current)):
                found.add(name)
                frontier.append(name)
    return found


@pytest.fixture
def repo(reproduced_repo) -> Path:
    """The session's tiny-profile repo after its one full ``dvc repro`` (tests/conftest.py: reproduced_repo)."""
    return reproduced_repo.path


def test_repro_runs_every_stage_and_the_method_works(repo, reproduced_repo):
    out = reproduced_repo.output  # the session's one `dvc repro` of the fresh repo
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert stages_run(out) == set(dvc_yaml["stages"])
    precision = json.loads((repo / "metrics" / "seeds_precision.json").read_text())
    assert set(precision) == {"M_I", "M_B", "M_F", "M_g"}
    assert precision["M_g"] >= precision["M_F"] - 0.01  # M_g: the confident subset
    miou = json.loads((repo / "metrics" / "pseudo_labels.json").read_text())
    assert set(miou) == {"a2gnn", "rw", "baseline", "grabcut", "grabcut_crf", "boxes"}
    assert miou["a2gnn"] > miou["boxes"], miou  # box-as-mask: the floor
    # a broken graph, GNN or loss falls below these (measured on this profile: see TINY_FLOOR)
    assert miou["a2gnn"] > miou["baseline"], miou
    assert miou["a2gnn"] >= TINY_FLOOR, miou
    instance_iou = json.loads((repo / "metrics" / "pseudo_iou.json").read_text())
    assert set(instance_iou) == set(miou) and all(0 <= v <= 1 for v in instance_iou.values()), instance_iou
    assert instance_iou["a2gnn"] > instance_iou["baseline"], instance_iou  # the same ranking per box
    checks = json.loads((repo / "metrics" / "consistency.json").read_text())
    assert 0.0 <= checks["removed_wrong"] <= 1.0
    for name in ("deeplab_miou", "deeplab_miou_crf", "instance_ap50", "instance_ap70", "instance_ap75"):
        figures = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert set(figures) == {"a2gnn", "gt"} and all(0 <= v <= 1 for v in figures.values()), (name, figures)


def dvc_status_stages(repo: Path) -> set[str]:
    """Stages ``dvc status`` reports as changed."""
    out = run(["dvc", "status", "--json"], repo)
    return set(json.loads(out[out.index("{"):]) if "{" in out else {})


def test_runtime_knobs_rerun_nothing_and_change_no_output(repo):
    lock = (repo / "dvc.lock").read_text()
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["runtime"].update(workers=0, gnn_batch_images=1, chunk_images=3)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert dvc_status_stages(repo) == set()
        run(["dvc", "repro", "--force", "--single-item", "pseudo_labels"], repo)
        run(["dvc", "repro", "--force", "--single-item", "grabcut"], repo)
        assert (repo / "dvc.lock").read_text() == lock, "a runtime knob changed an output"
    finally:
        (repo / "params.yaml").write_text(original)


@pytest.mark.parametrize(
    "module, expected",  # the stages that import the module; `dvc repro` then also reruns their downstream
    [
        ("a2gnn/pseudo_labels/baseline.py", {"baseline"}),
        ("a2gnn/gnn/layers.py", {"pseudo_labels"}),
        ("a2gnn/graph/build.py", {"pseudo_labels", "random_walk"}),
        ("a2gnn/evaluation/labels.py", {"evaluate_seeds", "evaluate_pseudo_labels", "evaluate_deeplab"}),
        ("a2gnn/seeds/grabcut.py", {"grabcut"}),  # the box geometry lives in a2gnn/data/boxes.py, not with GrabCut
        ("a2gnn/data/boxes.py", {"cam", "grabcut", "seeds", "weak_seeds", "box_baselines", "instances",  # cam: objectness
                            "train_maskrcnn", "train_maskrcnn_gt", "evaluate_maskrcnn", "figure", "evaluate_instances"}),
        ("a2gnn/pseudo_labels/grabcut_crf.py", {"grabcut_crf", "pseudo_labels", "random_walk", "baseline"}),
    ],
)
def test_editing_a_module_reports_exactly_its_importers_and_downstream(repo, module, expected):
    path = repo / module
    text = path.read_text()
    path.write_text(text + "\n# edited\n")
    try:
        assert dvc_status_stages(repo) == expected
    finally:
        path.write_text(text)
    assert dvc_status_stages(repo) == set()


def test_second_repro_does_nothing_and_forced_rerun_is_identical(repo):
    lock = (repo / "dvc.lock").read_text()
    out = run(["dvc", "repro"], repo)
    assert stages_run(out) == set()
    assert "up to date" in run(["dvc", "status"], repo)
    run(["dvc", "repro", "--force"], repo)
    assert (repo / "dvc.lock").read_text() == lock, "a forced rerun changed dvc.lock: outputs are not deterministic"


def test_changing_a_grabcut_param_reruns_only_grabcut_and_downstream(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["grabcut"]["iterations"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        ran = stages_run(run(["dvc", "repro"], repo))
        dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
        assert "grabcut" in ran
        assert "cam" not in ran
        assert ran <= downstream(dvc_yaml, "grabcut")
    finally:  # back to the reproduced commit (params, dvc.lock, metrics; outputs from the cache) for later tests
        run(["git", "checkout", "--", "."], repo)
        run(["dvc", "checkout", "--force"], repo)
    assert dvc_status_stages(repo) == set()


def test_a_random_walk_knob_does_not_rerun_the_a2gnn_under_box_supervision(repo):
    """pseudo_labels reads the random-walk settings only for §7.1's fusion, through the record of weak_seeds:
    under boxes a random-walk knob reruns weak_seeds (record unchanged) and the RW, never the A²GNN."""
    record = (repo / "outputs" / "seeds" / "weak_supervision.json").read_text()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["random_walk"]["logt"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        ran = stages_run(run(["dvc", "repro"], repo))
        # (evaluate_pseudo_labels follows only if the RW labels change, which on the tiny profile they may not)
        assert {"weak_seeds", "random_walk"} <= ran, ran
        assert "pseudo_labels" not in ran, ran
        assert (repo / "outputs" / "seeds" / "weak_supervision.json").read_text() == record
    finally:
        run(["git", "checkout", "--", "."], repo)
        run(["dvc", "checkout", "--force"], repo)
    assert dvc_status_stages(repo) == set()


def test_coco_input_runs_the_pipeline_from_params_alone(repo, tmp_path_factory):
    """A user with a COCO JSON of boxes and their own class names edits params.yaml only.

    The tiny embedded data is converted to COCO's layout (annotations/instances_<split>.json + <split>/),
    with its own class names; `dataset.format: coco` and `dataset.root` are the only params changed.
    """
    from a2gnn.data.coco import voc_to_coco
    from a2gnn.data.voc import VOCDataset

    coco = tmp_path_factory.mktemp("coco_repo")
    for name in ("a2gnn", "stages", "dvc.yaml"):
        src = repo / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, coco / name)
    voc = VOCDataset(repo / "data", "train")
    (coco / "mydata" / "train").mkdir(parents=True)
    for image_id in voc.ids:
        shutil.copy(voc.image_path(image_id), coco / "mydata" / "train" / voc.image_path(image_id).name)
    voc_to_coco(voc, coco / "mydata" / "annotations" / "instances_train.json")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dataset"].update(format="coco", root="mydata")
    (coco / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@e.com"], ["git", "config", "user.name", "t"],
                ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run(cmd, coco)
    run(["dvc", "repro", "evaluate_pseudo_labels"], coco)
    coco_miou = json.loads((coco / "metrics" / "pseudo_labels.json").read_text())
    voc_miou = json.loads((repo / "metrics" / "pseudo_labels.json").read_text())
    # the same images, boxes and masks through the other reader (image ids, and so per-image RNG streams,
    # differ): close to the VOC-layout run, and above the same floor
    assert set(coco_miou) == set(voc_miou)
    assert abs(coco_miou["a2gnn"] - voc_miou["a2gnn"]) < COCO_TOLERANCE, (coco_miou, voc_miou)
    assert coco_miou["a2gnn"] >= TINY_FLOOR


def _restore(repo: Path) -> None:
    """Back to the reproduced commit (params, dvc.lock, metrics; outputs from the cache) for later tests."""
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout", "--force"], repo)


def test_an_ablation_table_is_one_command_on_the_tiny_profile(repo):
    """``python -m a2gnn.pipeline.ablations table4d --run`` queues the two GNN-only rows, runs them and prints the table:
    one Markdown row per ablation, each with our number, the paper's beside it."""
    import sys

    try:
        out = run([sys.executable, "-m", "a2gnn.pipeline.ablations", "table4d", "--run"], repo)
        table = (repo / "metrics" / "ablations" / "table4d.md").read_text()
        rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| row")]
        assert len(rows) == 3, table
        ours = [float(line.split("|")[4]) for line in rows]  # row | switches | paper | ours | note
        assert [float(line.split("|")[3]) for line in rows] == [73.1, 77.3, 78.8]
        assert len(set(ours)) == 3, f"each switch must change the result: {ours}"  # the two terms and both
        names = run(["dvc", "exp", "list", "--name-only"], repo)
        assert "table4d-cos" in names and "table4d-edge" in names, out
    finally:
        _restore(repo)
    assert dvc_status_stages(repo) == set()


def test_scribble_supervision_runs_through_dvc(repo):
    """Table 5's scribble row on the tiny profile: the §7.1 seeds replace the box seeds for both networks, the CAM,
    GrabCut and box-seed stages are reused, and the pseudo labels and DeepLab come out of it."""
    from a2gnn.pipeline.ablation_rows import WEAK
    from a2gnn.pipeline.ablations import format_value

    switches = [arg for key, value in WEAK("scribble").items() for arg in ("-S", f"{key}={format_value(value)}")]
    before = json.loads((repo / "metrics" / "pseudo_labels.json").read_text())
    try:
        out = run(["dvc", "exp", "run", "-n", "tiny-scribble", *switches, "evaluate_pseudo_labels",
                   "evaluate_deeplab"], repo)
        ran = stages_run(out)
        assert {"weak_seeds", "affinity", "pseudo_labels", "train_deeplab", "evaluate_deeplab"} <= ran
        assert not ran & {"cam", "grabcut", "seeds"}, ran
        supervision = json.loads((repo / "outputs" / "seeds" / "weak_supervision.json").read_text())
        assert supervision["supervision"] == "scribble" and supervision["images"] > 0
        after = json.loads((repo / "metrics" / "pseudo_labels.json").read_text())
        assert after["a2gnn"] != before["a2gnn"] and after["a2gnn"] >= TINY_SCRIBBLE_FLOOR, (before, after)
    finally:
        _restore(repo)
    assert dvc_status_stages(repo) == set()
