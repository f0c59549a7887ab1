#!/usr/bin/env python
"""Compare two directories of label maps against the train split's ground truth, near and away from the outlines.

Usage (from a repository whose params.yaml describes the dataset)::

    python scripts/compare_labels.py <data_root> outputs/pseudo_labels_a2gnn outputs/pseudo_labels_grabcut --band 5

Prints, for A (first directory) and B: the share of labelled pixels each gets wrong, how many of B's wrong pixels
A fixes and how many right ones it breaks, the share of each method's errors within ``--band`` pixels of an
object outline, on how many images A's foreground IoU is better / worse than B's by more than ``--margin``, and
the mIoU difference A - B with its paired bootstrap interval over images (``--rounds`` draws): an interval that
straddles zero is no clear margin.
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
from a2gnn.evaluation.outline_errors import ErrorSplit, error_split, foreground_iou
from a2gnn.evaluation.paired_bootstrap import paired_bootstrap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("a", help="label directory of method A")
    parser.add_argument("b", help="label directory of method B")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--band", type=int, default=5, help="outline band half-width in pixels")
    parser.add_argument("--margin", type=float, default=0.005, help="foreground IoU difference that counts")
    parser.add_argument("--rounds", type=int, default=2000, help="bootstrap draws of the mIoU difference")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    cfg = DatasetConfig.from_params(params.get("dataset"))
    dataset = open_dataset(cfg, cfg.train_split, args.data_root)
    total, better, worse = ErrorSplit(), 0, 0
    mats: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    for image_id, pa, pb in zip(dataset.ids, prediction_paths(dataset, args.a), prediction_paths(dataset, args.b)):
        (a, gt), (b, _) = read_prediction(dataset, image_id, pa), read_prediction(dataset, image_id, pb)
        total = total + error_split(a, b, gt, args.band)
        for key, label in (("a", a), ("b", b)):
            cm = ConfusionMatrix(dataset.num_classes)
            cm.update(gt, label)
            mats[key].append(cm.mat)
        diff = foreground_iou(a, gt) - foreground_iou(b, gt)
        better += diff > args.margin
        worse += diff < -args.margin
    pct = lambda n, d: 100.0 * n / max(d, 1)  # noqa: E731
    print(f"images: {len(dataset.ids)}, labelled pixels: {total.pixels}, "
          f"within {args.band} px of an outline: {pct(total.band, total.pixels):.1f} %")
    print(f"wrong pixels: A {pct(total.wrong_a, total.pixels):.3f} %, B {pct(total.wrong_b, total.pixels):.3f} %")
    print(f"A fixes {total.fixed_by_a} of B's wrong pixels and breaks {total.broken_by_a} right ones")
    print(f"errors within the band: A {pct(total.wrong_a_band, total.wrong_a):.1f} %, "
          f"B {pct(total.wrong_b_band, total.wrong_b):.1f} %; away from it: A {total.wrong_a - total.wrong_a_band}, "
          f"B {total.wrong_b - total.wrong_b_band} pixels")
    print(f"foreground IoU of A better / worse than B's by > {args.margin:g}: {better} / {worse} images")
    gap = paired_bootstrap(np.stack(mats["a"]), np.stack(mats["b"]), rounds=args.rounds)
    print(f"mIoU A - B: {100 * gap.difference:+.2f} points, 95 % paired bootstrap interval over images "
          f"[{100 * gap.low:+.2f}, {100 * gap.high:+.2f}]; A higher in {100 * gap.share_positive:.1f} % of "
          f"{args.rounds} draws")


if __name__ == "__main__":
    main()
