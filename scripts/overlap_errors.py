#!/usr/bin/env python
"""How much of each label map's error is the class chosen where boxes of different classes overlap.

Usage (from a repository whose params.yaml describes the dataset, after the labels exist)::

    python scripts/overlap_errors.py <data_root> a2gnn=outputs/pseudo_labels_a2gnn \\
        grabcut_crf=outputs/pseudo_labels_grabcut_crf

Prints the share of the ground truth's object pixels that lie in multi-class box overlaps, then per map: the share
of those (called object by both) given the right class, against Eq. 3's smallest-box rule; the mIoU as is; and
two oracle bounds, the mIoU with the class fixed in the overlaps and with the background inside the boxes fixed
(a2gnn/evaluation/overlap_errors.py).
"""

from __future__ import annotations

import argparse

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import numpy as np

from a2gnn.core.config import load_params
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.evaluation.confusion import ConfusionMatrix
from a2gnn.evaluation.labels import prediction_paths, read_prediction
from a2gnn.evaluation.overlap_errors import (box_masks, class_choice, multi_class_overlap, oracle_maps,
                                             smallest_box_rule)


def named_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected <name>=<label_dir>, got {text!r}")
    return name, path


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("labels", nargs="+", type=named_dir, metavar="name=label_dir")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    cfg = DatasetConfig.from_params(params.get("dataset"))
    dataset = open_dataset(cfg, cfg.train_split, args.data_root)
    names = [name for name, _ in args.labels] + ["smallest box"]
    kinds = ("as is", "overlap class", "in-box background")
    cms = {(n, k): ConfusionMatrix(dataset.num_classes) for n in names[:-1] for k in kinds}
    choice = {n: [0, 0] for n in names}
    in_overlap = objects = 0
    paths = {name: prediction_paths(dataset, d) for name, d in args.labels}
    for i, image_id in enumerate(dataset.ids):
        ann = dataset.annotation(image_id)
        preds = {}
        for name, _ in args.labels:
            preds[name], gt = read_prediction(dataset, image_id, paths[name][i])
        shape = gt.shape  # every map at the ground truth's size (read_prediction checks it)
        scale = (shape[0] / ann.height, shape[1] / ann.width)
        masks = box_masks(shape, ann.boxes, scale)
        overlap = multi_class_overlap(masks, shape)
        inside = np.logical_or.reduce(list(masks.values()))
        preds["smallest box"] = smallest_box_rule(
            [(b.label, box_masks(shape, [b], scale)[b.label]) for b in ann.boxes], shape)
        for name, pred in preds.items():
            right, judged = class_choice(pred, gt, overlap)
            choice[name][0] += right
            choice[name][1] += judged
            if name == "smallest box":
                continue
            cms[(name, "as is")].update(gt, pred)
            for kind, fixed in oracle_maps(pred, gt, overlap, inside).items():
                cms[(name, kind)].update(gt, fixed)
        objects += int(((gt != 0) & (gt != 255)).sum())
        in_overlap += int((overlap & (gt != 0) & (gt != 255)).sum())
    print(f"object pixels in multi-class box overlaps: {100.0 * in_overlap / max(objects, 1):.1f} %")
    out: dict[str, dict[str, float]] = {}
    for name in names:
        right, judged = choice[name]
        row = {"class right in overlaps": 100.0 * right / max(judged, 1)}
        if name != "smallest box":
            row.update({f"mIoU {kind}": 100.0 * cms[(name, kind)].miou() for kind in kinds})
        out[name] = row
        print(f"{name:14s} " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    return out


if __name__ == "__main__":
    main()
