"""Evaluate trained Mask R-CNNs on the val split against the ground-truth instance masks (paper Tables 2-3).

    python stages/evaluate_maskrcnn.py <data_root> <name>=<model.pth> [...] --metric <figure>=<json> [...]
        --table <csv>

Figures (fractions in [0, 1]; -1: no val object of that size): ``ap50``, ``ap70``, ``ap75`` (mask mAP^r at those
IoUs, Table 2), ``ap``, ``ap_s``, ``ap_m``, ``ap_l`` (COCO mask AP, Table 3), and ``box_ap``, ``box_ap50``, ... for
boxes. Each ``--metric`` JSON (``metrics/instance_ap50.json``, ...) holds ``{name: value}`` for one figure, one entry
per model (e.g. the model trained on the pseudo instances and the one trained on ground truth, the upper bound), so
``dvc metrics show`` prints one row per figure. ``--table``: every figure of every model (a CSV plot).
Without val instance masks (boxes only), or for a model that could not be trained (the upper bound without ground
truth), the figures are null and the files say why under ``unavailable``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.core.config import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.resize import unwrap
from a2gnn.evaluation.coco_eval import instance_metrics
from a2gnn.instance.maskrcnn import dataset_records, load_maskrcnn, predict, register_instances, write_gt_instances
from a2gnn.pseudo_labels.instances import image_root
from a2gnn.core.io import UNAVAILABLE, DataError, atomic_file, unavailable_figures, unavailable_reason, write_json

FIGURES = ("ap50", "ap70", "ap75", "ap", "ap_s", "ap_m", "ap_l", "box_ap")  # what a --metric file may hold


def named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected <name>=<path>, got {text!r}")
    return name, value


def flat(metrics: dict) -> dict[str, float]:
    """{"mask": {ap50: ..}, "box": {ap50: ..}} -> {"ap50": .., "box_ap50": ..}."""
    return {**metrics["mask"], **{f"box_{k}": v for k, v in metrics["box"].items()}}


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("models", nargs="+", type=named, metavar="name=model.pth")
    parser.add_argument("--metric", action="append", type=named, required=True, metavar="figure=json")
    parser.add_argument("--table", required=True, metavar="csv")
    args = parser.parse_args(argv)
    unknown = sorted({figure for figure, _ in args.metric} - set(FIGURES))
    if unknown:
        parser.error(f"--metric figure(s) {unknown} not among {FIGURES}")
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    val = unwrap(open_dataset(data, data.val_split, args.data_root))  # full size, as the training
    names = [name for name, _ in args.models]
    missing = val.missing_ground_truth("instance")
    if missing is not None:  # boxes only: no figure, and no made-up number
        print(f"evaluate_maskrcnn: figures not available: {missing}", file=sys.stderr)
        for path in dict(args.metric).values():
            write_json(path, unavailable_figures(names, missing))
        write_table(args.table, {name: {} for name in names}, [])
        return
    results, skipped = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_json = Path(tmp) / "val_gt.json"
        write_gt_instances(val, gt_json)
        register_instances("a2gnn_val", gt_json, image_root(val))
        for name, path in args.models:
            reason = unavailable_reason(path)
            if reason is not None:
                skipped[name] = reason
                continue
            model, d2, classes = load_maskrcnn(path, runtime.device)
            if list(val.class_names[1:]) != classes:
                raise DataError(path, f"model classes {classes} differ from the dataset's {list(val.class_names[1:])}")
            predictions = predict(model, d2, dataset_records("a2gnn_val", keep_empty=True))
            results[name] = flat(instance_metrics(gt_json, predictions))
    figures = list(next(iter(results.values()))) if results else []
    note = {UNAVAILABLE: "; ".join(sorted(set(skipped.values())))} if skipped else {}
    for figure, path in args.metric:
        write_json(path, {**{name: results[name][figure] if name in results else None for name in names}, **note})
    write_table(args.table, {name: results.get(name, {}) for name in names}, figures)


def write_table(path: str, results: dict[str, dict[str, float]], figures: list[str]) -> None:
    """Every figure of every model as a CSV (empty cells where a model has no figures)."""
    rows = ["name," + ",".join(figures)]
    rows += [name + "," + ",".join(f"{values[f]:.4f}" if f in values else "" for f in figures)
             for name, values in results.items()]
    with atomic_file(path) as tmp_csv:
        tmp_csv.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    run_stage(main)
