"""Evaluate named directories of label maps (seeds, pseudo labels; Table 4) against the train split's ground truth.

    python -m stages.evaluate_labels <data_root> <name>=<label_dir> [...] --metric <figure>=<json> [...]
        --per-class <csv> [--table <csv>]

Each ``--metric`` JSON holds ``{name: value}`` for one figure, names as on the command line (dvc.yaml fixes
which directory is which method), so ``dvc metrics show`` prints one number per map. Figures: miou
(unlabelled pixels count as misses), miou_labelled, precision, recall, coverage. ``--per-class``: IoU per
class and map; ``--table``: every figure of every map.
"""

from __future__ import annotations

import argparse
import sys

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.evaluation.labels import FIGURES, evaluate_label_dir, write_evaluation, write_unavailable_evaluation


def named_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected <name>=<label_dir>, got {text!r}")
    return name, path


def figure_path(text: str) -> tuple[str, str]:
    figure, path = named_dir(text)
    if figure not in FIGURES:
        raise argparse.ArgumentTypeError(f"figure {figure!r} is not one of {FIGURES}")
    return figure, path


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("labels", nargs="+", type=named_dir, metavar="name=label_dir")
    parser.add_argument("--metric", action="append", type=figure_path, required=True, metavar="figure=json")
    parser.add_argument("--per-class", required=True, metavar="csv")
    parser.add_argument("--table", default=None, metavar="csv")
    args = parser.parse_args(argv)
    if len({name for name, _ in args.labels}) != len(args.labels):
        parser.error("label directory names must be unique")
    params, _, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    missing = dataset.missing_ground_truth("semantic")
    if missing is not None:  # boxes only: nothing to score against, and no made-up number
        print(f"evaluate: figures not available: {missing}", file=sys.stderr)
        write_unavailable_evaluation([name for name, _ in args.labels], missing, dataset.class_names,
                                     dict(args.metric), args.per_class, args.table)
        return
    results = {name: evaluate_label_dir(dataset, d, desc=name) for name, d in args.labels}
    write_evaluation(results, dataset.class_names, dict(args.metric), args.per_class, args.table)


if __name__ == "__main__":
    run_stage(main)
