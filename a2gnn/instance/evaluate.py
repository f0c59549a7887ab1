"""Mask R-CNN models scored on a split with ground-truth instances (paper Tables 2-3: mAP^r at 0.5 / 0.7 / 0.75,
plus COCO AP, AP by size and box AP), as the ``evaluate_maskrcnn`` stage reports them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from a2gnn.core.io import DataError, atomic_file, unavailable_reason
from a2gnn.evaluation.coco_eval import instance_metrics
from a2gnn.instance.maskrcnn import load_maskrcnn, predict
from a2gnn.instance.maskrcnn_data import dataset_records, register_instances, write_gt_instances
from a2gnn.pseudo_labels.instances import image_root

FIGURES = ("ap50", "ap70", "ap75", "ap", "ap_s", "ap_m", "ap_l", "box_ap")
"""The figures a metrics file of the stage may hold (mask AP at IoU 0.5 / 0.7 / 0.75, COCO AP, AP by size, box AP)."""


def flat(metrics: dict) -> dict[str, float]:
    """{"mask": {ap50: ..}, "box": {ap50: ..}} -> {"ap50": .., "box_ap50": ..}."""
    return {**metrics["mask"], **{f"box_{k}": v for k, v in metrics["box"].items()}}


def evaluate_models(dataset, models: Sequence[tuple[str, str]], device: str = "cpu"
                    ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Every ``(name, model.pth)`` on ``dataset`` (full size, with instance ground truth) ->
    (``{name: flat figures}``, ``{name: why it has none}`` for a model file marked unavailable). A model whose
    classes differ from the dataset's raises DataError naming its file."""
    results, skipped = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_json = Path(tmp) / "val_gt.json"
        write_gt_instances(dataset, gt_json)
        register_instances("a2gnn_val", gt_json, image_root(dataset))
        for name, path in models:
            reason = unavailable_reason(path)
            if reason is not None:
                skipped[name] = reason
                continue
            model, d2, classes = load_maskrcnn(path, device)
            if list(dataset.class_names[1:]) != classes:
                raise DataError(path, f"model classes {classes} differ from the dataset's "
                                      f"{list(dataset.class_names[1:])}")
            predictions = predict(model, d2, dataset_records("a2gnn_val", keep_empty=True))
            results[name] = flat(instance_metrics(gt_json, predictions))
    return results, skipped


def write_table(path: str, results: dict[str, dict[str, float]], figures: list[str]) -> None:
    """Every figure of every model as a CSV (empty cells where a model has no figures)."""
    rows = ["name," + ",".join(figures)]
    rows += [name + "," + ",".join(f"{values[f]:.4f}" if f in values else "" for f in figures)
             for name, values in results.items()]
    with atomic_file(path) as tmp_csv:
        tmp_csv.write_text("\n".join(rows) + "\n")
