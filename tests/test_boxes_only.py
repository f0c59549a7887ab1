"""Boxes alone, end to end: a COCO dataset whose annotations have ``bbox`` and no ``segmentation`` (what a
practitioner who wants masks has) runs the whole pipeline with ``dvc repro``.

Every stage that does not need ground truth produces its outputs (seeds, affinity, pseudo labels, RW, Baseline,
pseudo instances, DeepLab and Mask R-CNN); the evaluations write their figures as null with the reason; the
ground-truth upper bounds say they could not be trained. The pseudo labels are then scored here, outside the
pipeline, against the masks the test kept back: A²GNN must beat the boxes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from a2gnn.data.coco import COCODataset, voc_to_coco
from a2gnn.data.voc import VOCDataset
from a2gnn.evaluation.confusion import ConfusionMatrix
from a2gnn.core.io import UNAVAILABLE, read_label, unavailable_reason
from helpers import ROOT, TINY, deep_merge, run, stages_run

pytestmark = pytest.mark.slow


def boxes_only_coco(voc_root: Path, out: Path) -> None:
    """The VOC-layout dataset at ``voc_root`` as COCO (``out/annotations/instances_<split>.json`` + ``out/<split>/``)
    with every ``segmentation`` removed: boxes and classes only."""
    for split in ("train", "val"):
        voc = VOCDataset(voc_root, split)
        path = out / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        voc_to_coco(voc, path)
        data = json.loads(path.read_text())
        for ann in data["annotations"]:
            ann.pop("segmentation")
        path.write_text(json.dumps(data))
        (out / split).mkdir()
        for image_id in voc.ids:
            shutil.copy(voc.image_path(image_id), out / split / voc.image_path(image_id).name)


@pytest.fixture(scope="module")
def boxes_repo(tmp_path_factory) -> tuple[Path, Path, str]:
    """(repo, the kept-back VOC ground truth, what `dvc repro` printed)."""
    repo = tmp_path_factory.mktemp("boxes_only")
    for name in ("a2gnn", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(ROOT / "metrics" / "ablations", repo / "metrics" / "ablations")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(TINY.read_text()))
    params["dataset"].update(format="coco", root="data")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    truth = repo.parent / f"{repo.name}_truth"
    run([sys.executable, "-m", "a2gnn.data.embedded", "--params", str(repo / "params.yaml"), "--out",
         str(truth)], repo)
    boxes_only_coco(truth, repo / "data")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "data"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "boxes only"]):
        run(cmd, repo)
    return repo, truth, run(["dvc", "repro"], repo)


def test_every_stage_runs_on_boxes_alone(boxes_repo):
    repo, _, output = boxes_repo
    assert stages_run(output) == set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    train = COCODataset(repo / "data" / "annotations" / "instances_train.json", repo / "data" / "train")
    assert train.missing_ground_truth() is not None
    for method in ("a2gnn", "rw", "baseline", "grabcut", "boxes"):
        assert sorted(p.stem for p in (repo / "outputs" / f"pseudo_labels_{method}").glob("*.png")) == sorted(train.ids)
    instances = json.loads((repo / "outputs" / "instances" / "train.json").read_text())
    assert len(instances["annotations"]) > 0 and all("segmentation" in a for a in instances["annotations"])
    for model in ("deeplab/model.pt", "maskrcnn/model.pth"):  # trained on the pseudo labels
        assert unavailable_reason(repo / "outputs" / model) is None
    for model in ("deeplab_gt/model.pt", "maskrcnn_gt/model.pth"):  # the upper bounds need ground truth
        assert "no segmentation" in unavailable_reason(repo / "outputs" / model)
    assert (repo / "metrics" / "figures" / "qualitative.png").stat().st_size > 0


def test_evaluations_say_not_available_and_make_nothing_up(boxes_repo):
    repo, _, _ = boxes_repo
    for name in ("seeds_miou", "seeds_precision", "pseudo_labels", "deeplab_miou", "deeplab_miou_crf",
                 "instance_ap50", "instance_ap70", "instance_ap75", "consistency", "pseudo_iou", "pseudo_ap50"):
        figures = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert "no segmentation" in figures.pop(UNAVAILABLE), name
        assert figures and all(v is None for v in figures.values()), (name, figures)
    assert "## Not available" in (repo / "metrics" / "report.md").read_text()


def test_pseudo_labels_beat_the_boxes_against_the_kept_back_masks(boxes_repo):
    repo, truth, _ = boxes_repo
    voc = VOCDataset(truth, "train")
    scores = {}
    for method in ("a2gnn", "boxes"):
        cm = ConfusionMatrix(voc.num_classes)
        for n, image_id in enumerate(voc.ids, start=1):  # COCO id n = VOC image n (voc_to_coco)
            cm.update(voc.semantic_gt(image_id), read_label(repo / "outputs" / f"pseudo_labels_{method}" / f"{n}.png"))
        scores[method] = cm.miou()
    assert scores["a2gnn"] > scores["boxes"], scores
    assert np.isfinite(list(scores.values())).all()
