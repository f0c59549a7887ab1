"""Evaluate named directories of pseudo labels (A²GNN, RW, seeds, baselines; Table 4) on the train split.

    python stages/evaluate_pseudo_labels.py <data_root> <metrics_json> <name>=<label_dir> [...]

Writes one metrics block per name, plus the top-level ``miou`` of the first name.
"""

from __future__ import annotations

import argparse

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets.voc import VOCDataset
from a2gnn.io import write_json
from a2gnn.label_eval import evaluate_label_dir

RESERVED = ("miou", "num_images")  # top-level keys of the metrics JSON


def named_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path or name in RESERVED:
        raise argparse.ArgumentTypeError(f"expected <name>=<label_dir> with name not in {RESERVED}, got {text!r}")
    return name, path


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("metrics_json")
    parser.add_argument("labels", nargs="+", type=named_dir, metavar="name=label_dir")
    args = parser.parse_args(argv)
    if len({name for name, _ in args.labels}) != len(args.labels):
        parser.error("label directory names must be unique")
    params, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = VOCDataset(args.data_root, data.train_split, data.segmentation_dir, data.use_difficult)
    metrics = {name: evaluate_label_dir(dataset, d, desc=name).summary(dataset.class_names) for name, d in args.labels}
    write_json(args.metrics_json, {**metrics, "miou": metrics[args.labels[0][0]]["miou"], "num_images": len(dataset)})


if __name__ == "__main__":
    run_stage(main)
