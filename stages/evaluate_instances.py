"""Score pseudo instance masks directly against the train split's ground-truth instances (no detector trained).

    python -m stages.evaluate_instances <data_root> <name>=<label_dir> [...] --metric <figure>=<json> [...]
        --table <csv>

For every box, the instance of each named pseudo-label folder (what the ``instances`` stage writes from it,
``instances.overlap`` / ``empty_box`` / ``min_fill``) against the box's ground-truth instance (:mod:`a2gnn.evaluation.pseudo_instances`). Figures
(fractions): ``box_iou`` (mean per-box IoU), ``iou_small`` / ``iou_medium`` / ``iou_large`` (the same by COCO
object size), ``ap``, ``ap50``, ``ap75`` (COCO mask AP with every box's mask as a detection of score 1). Each
``--metric`` JSON holds ``{name: value}`` for one figure; ``--table``: every figure of every folder (a CSV plot).
Without instance masks (boxes only) the figures are null and the files say why.
"""

from __future__ import annotations

import argparse
import sys

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
from a2gnn.core.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.resize import unwrap
from a2gnn.evaluation.pseudo_instances import SIZES, figures_of, score_label_dirs
from a2gnn.pseudo_labels.instances import InstanceConfig
from a2gnn.core.io import atomic_file, unavailable_figures, write_json

FIGURES = ("box_iou", *(f"iou_{s}" for s in SIZES), "ap", "ap50", "ap75")


def named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected <name>=<path>, got {text!r}")
    return name, value


def write_table(path: str, results: dict) -> None:
    """One row per folder, one column per figure (plus the number of boxes scored); empty cells for None."""
    columns = [*FIGURES, "boxes"]
    rows = [",".join(["method", *columns])]
    for name, figures in results.items():
        cells = ["" if figures.get(c) is None else (str(figures[c]) if c == "boxes" else f"{figures[c]:.4f}")
                 for c in columns]
        rows.append(",".join([name, *cells]))
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("labels", nargs="+", type=named, metavar="name=label_dir")
    parser.add_argument("--metric", action="append", type=named, required=True, metavar="figure=json")
    parser.add_argument("--table", required=True, metavar="csv")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.labels]
    if len(set(names)) != len(names):
        parser.error("label directory names must be unique")
    unknown = sorted({figure for figure, _ in args.metric} - set(FIGURES))
    if unknown:
        parser.error(f"--metric figure(s) {unknown} not among {FIGURES}")
    params, _, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = InstanceConfig.from_params(params.get("instances"))
    dataset = unwrap(open_dataset(data, data.train_split, args.data_root))  # boxes and masks at the photo's size
    missing = dataset.missing_ground_truth("instance")
    if missing is not None:  # boxes only: nothing to score against, and no made-up number
        print(f"evaluate_instances: figures not available: {missing}", file=sys.stderr)
        for path in dict(args.metric).values():
            write_json(path, unavailable_figures(names, missing))
        write_table(args.table, {name: {} for name in names})
        return
    results = score_label_dirs(dataset, dict(args.labels), cfg,
                               progress=lambda items, desc, total: progress(items, desc=desc, total=total))
    for figure, path in args.metric:
        write_json(path, figures_of(results, figure))
    write_table(args.table, results)


if __name__ == "__main__":
    run_stage(main)
