"""Evaluate trained DeepLabs on the val split (paper Table 1): mIoU without and with dense CRF, per-class IoU.

    python -m stages.evaluate_deeplab <data_root> <name>=<model.pt> [...] --metric miou=<json>
        --metric miou_crf=<json> --per-class <csv>

Each ``--metric`` JSON holds ``{name: value}``, one entry per model (e.g. the model trained on the A²GNN pseudo
labels and the one trained on the ground truth, the upper bound): ``miou`` is the arg-max prediction, ``miou_crf``
the dense-CRF-refined one (the ``crf`` section). ``dvc metrics show`` prints one row per figure, the models as
columns that line up with the other metrics files'. ``--per-class``: IoU per class, columns ``<name>`` and
``<name>_crf``. Without ground truth on the val split (boxes only), or for a model that could not be trained (the
upper bound without ground truth), the figures are null and the file says why under ``unavailable``.
"""

from __future__ import annotations

import argparse
import sys

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.segmentation import GT_LABELS, SegmentationDataset
from a2gnn.core.io import UNAVAILABLE, DataError, unavailable_figures, unavailable_reason, write_json
from a2gnn.evaluation.labels import write_per_class_csv, write_unavailable_evaluation
from a2gnn.segmentation.deeplab import evaluate_deeplab, load_deeplab

VARIANTS = ("miou", "miou_crf")  # without / with dense CRF


def named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected <name>=<path>, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("models", nargs="+", type=named, metavar="name=model.pt")
    parser.add_argument("--metric", action="append", type=named, required=True, metavar="figure=json")
    parser.add_argument("--per-class", required=True, metavar="csv")
    args = parser.parse_args(argv)
    metrics = dict(args.metric)
    if set(metrics) != set(VARIANTS):
        parser.error(f"--metric needs exactly the figures {VARIANTS}")
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    crf = CRFConfig.from_params(params.get("crf"))
    reader = open_dataset(data, data.val_split, args.data_root)
    names = [name for name, _ in args.models]
    missing = reader.missing_ground_truth("semantic")
    if missing is not None:  # boxes only: no figure, and no made-up number
        print(f"evaluate_deeplab: figures not available: {missing}", file=sys.stderr)
        per_class = [f"{n}{s}" for n in names for s in ("", "_crf")]
        write_unavailable_evaluation(per_class, missing, reader.class_names, {}, args.per_class)
        for path in metrics.values():
            write_json(path, unavailable_figures(names, missing))
        return
    val = SegmentationDataset(reader, GT_LABELS)
    results, skipped = {}, {}
    for name, path in args.models:
        reason = unavailable_reason(path)
        if reason is not None:
            skipped[name] = reason
            continue
        model, _, class_names = load_deeplab(path, runtime.device)
        if tuple(val.class_names) != class_names:
            raise DataError(path, f"model classes {class_names} differ from the dataset's {val.class_names}")
        results[name] = evaluate_deeplab(model, val, crf, runtime.device, runtime.workers)
    for v in VARIANTS:
        figures = {name: (results[name][v].miou() if name in results else None) for name in names}
        write_json(metrics[v], {**figures, **({UNAVAILABLE: "; ".join(sorted(set(skipped.values())))} if skipped else {})})
    per_class = {f"{name}{'' if v == 'miou' else '_crf'}": res[v] for name, res in results.items() for v in VARIANTS}
    write_per_class_csv(per_class, val.class_names, args.per_class)


if __name__ == "__main__":
    run_stage(main)
