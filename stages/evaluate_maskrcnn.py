"""Evaluate trained Mask R-CNNs on the val split against the ground-truth instance masks (paper Tables 2-3).

    python -m stages.evaluate_maskrcnn <data_root> <name>=<model.pth> [...] --metric <figure>=<json> [...]
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

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.core.io import UNAVAILABLE, unavailable_figures, write_json
from a2gnn.data.formats import DatasetConfig, open_dataset
from a2gnn.data.resize import unwrap
from a2gnn.instance.evaluate import FIGURES, evaluate_models, write_table


def named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected <name>=<path>, got {text!r}")
    return name, value


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
    results, skipped = evaluate_models(val, args.models, runtime.device)
    figures = list(next(iter(results.values()))) if results else []
    note = {UNAVAILABLE: "; ".join(sorted(set(skipped.values())))} if skipped else {}
    for figure, path in args.metric:
        write_json(path, {**{name: results[name][figure] if name in results else None for name in names}, **note})
    write_table(args.table, {name: results.get(name, {}) for name in names}, figures)


if __name__ == "__main__":
    run_stage(main)
