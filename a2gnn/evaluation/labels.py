"""Evaluate a directory of label PNGs (seeds or pseudo labels) against a split's ground truth.

Used by ``stages/evaluate_seeds.py`` and ``stages/evaluate_pseudo_labels.py``; the metric itself is
:class:`a2gnn.evaluation.confusion.ConfusionMatrix`. Predictions are ``<label_dir>/<id>.png`` class-index maps
(255 = unlabelled), one per image of the split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from a2gnn.data.labels import LabelFolder, check_label_values, read_label_checked, size_text
from a2gnn.core.cli import progress
from a2gnn.data.voc import VOCDataset
from a2gnn.data.resize import original_gt
from a2gnn.evaluation.confusion import ConfusionMatrix
from a2gnn.core.io import DataError, atomic_file, unavailable_figures, write_json


def prediction_paths(dataset: VOCDataset, label_dir: os.PathLike | str) -> list[Path]:
    """``<label_dir>/<id>.png`` for every image of the split; a missing one raises DataError naming it."""
    folder = LabelFolder(label_dir, "prediction")
    folder.check_complete(dataset.ids)
    return [folder.path(image_id) for image_id in dataset.ids]


def read_prediction(dataset, image_id: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, ground truth)`` of one image, both (H, W) uint8: the ground truth at the prediction's
    resolution (the original one for pseudo labels mapped back to a shrunk photo's size). A prediction whose size
    differs from its ground truth, or a value outside {0..C-1, 255} in either, raises DataError naming the file."""
    pred = read_label_checked(path, None, dataset.num_classes, "prediction")
    gt = original_gt(dataset, image_id, pred.shape)
    if pred.shape != gt.shape:
        raise DataError(path, f"prediction is {size_text(pred.shape)} but ground truth is {size_text(gt.shape)}")
    check_label_values(Path(f"ground truth of {image_id}"), gt, dataset.num_classes, "ground truth")
    return pred, gt


def evaluate_label_dir(
    dataset: VOCDataset, label_dir: os.PathLike | str, desc: str | None = None
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``<label_dir>/<id>.png`` vs ``dataset.semantic_gt(id)`` over the split.

    Every prediction file is checked to exist before any is read; a prediction whose size differs from
    its ground truth or that holds values outside {0..C-1, 255} raises DataError naming the file.
    """
    paths = prediction_paths(dataset, label_dir)
    cm = ConfusionMatrix(dataset.num_classes)
    items = zip(dataset.ids, paths)
    for image_id, path in progress(items, desc=desc or f"eval {Path(label_dir).name}", total=len(paths)):
        pred, gt = read_prediction(dataset, image_id, path)
        cm.update(gt, pred)
    return cm


FIGURES = ("miou", "miou_labelled", "precision", "recall", "coverage")  # ConfusionMatrix methods a summary may show


def write_evaluation(
    results: dict[str, ConfusionMatrix],
    class_names: Sequence[str],
    metrics: dict[str, os.PathLike | str],
    per_class_csv: os.PathLike | str,
    table_csv: os.PathLike | str | None = None,
) -> None:
    """Write several evaluated label maps as terminal-sized metrics plus their detail.

    ``metrics`` maps a figure (``miou``, ``miou_labelled``, ``precision``, ``recall``, ``coverage``: methods of
    :class:`ConfusionMatrix`) to a JSON file ``{name: value}`` - one row of ``dvc metrics show`` with one
    number per map, whose columns (the map names) line up across files. ``per_class_csv``: one row per class,
    one IoU column per name. ``table_csv`` (optional): one row per name, one column per figure.
    """
    for figure, path in metrics.items():
        write_json(path, {name: getattr(cm, figure)() for name, cm in results.items()})
    write_per_class_csv(results, class_names, per_class_csv)
    if table_csv is not None:
        rows = ["name," + ",".join(FIGURES)]
        rows += [name + "," + ",".join(_csv_number(getattr(cm, f)()) for f in FIGURES) for name, cm in results.items()]
        _write_csv(table_csv, rows)


def write_unavailable_evaluation(names: Sequence[str], reason: str, class_names: Sequence[str],
                                 metrics: dict[str, os.PathLike | str], per_class_csv: os.PathLike | str,
                                 table_csv: os.PathLike | str | None = None) -> None:
    """What :func:`write_evaluation` writes when the split has no ground truth: every figure null with the reason
    (:func:`a2gnn.core.io.unavailable_figures`), per-class and table CSVs with empty cells."""
    for path in metrics.values():
        write_json(path, unavailable_figures(names, reason))
    _write_csv(per_class_csv, ["class," + ",".join(names)] + [cls + "," * len(names) for cls in class_names])
    if table_csv is not None:
        _write_csv(table_csv, ["name," + ",".join(FIGURES)] + [name + "," * len(FIGURES) for name in names])


def write_per_class_csv(results: dict[str, ConfusionMatrix], class_names: Sequence[str],
                        path: os.PathLike | str) -> None:
    """One row per class, one per-class IoU column per entry of ``results`` (a DVC plot); atomic."""
    ious = {name: cm.iou() for name, cm in results.items()}
    rows = ["class," + ",".join(results)]
    for k, cls in enumerate(class_names):
        rows.append(cls + "," + ",".join(_csv_number(v[k]) for v in ious.values()))
    _write_csv(path, rows)


def _csv_number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.4f}"


def _write_csv(path: os.PathLike | str, rows: list[str]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
