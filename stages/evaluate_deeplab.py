"""Evaluate trained DeepLabs on the val split (paper Table 1): mIoU without and with dense CRF, per-class IoU.

    python stages/evaluate_deeplab.py <data_root> <name>=<model.pt> [...] --metrics <json> --per-class <csv>

``--metrics`` (``metrics/segmentation.json``) holds ``{"miou": {name: value}, "miou_crf": {name: value}}``, one
entry per model (e.g. the model trained on the A²GNN pseudo labels and the one trained on the ground truth, the
upper bound): ``miou`` is the arg-max prediction, ``miou_crf`` the dense-CRF-refined one (the ``crf`` section).
``dvc metrics show`` prints them as columns ``miou.<name>``, ``miou_crf.<name>``.
``--per-class``: IoU per class, columns ``<name>`` and ``<name>_crf``.
"""

from __future__ import annotations

import argparse

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.crf import CRFConfig
from a2gnn.datasets import open_dataset
from a2gnn.datasets.segmentation import GT_LABELS, SegmentationDataset
from a2gnn.io import DataError, write_json
from a2gnn.label_eval import write_per_class_csv
from a2gnn.segmentation import evaluate_deeplab, load_deeplab

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
    parser.add_argument("--metrics", required=True, metavar="json")
    parser.add_argument("--per-class", required=True, metavar="csv")
    args = parser.parse_args(argv)
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    crf = CRFConfig.from_params(params.get("crf"))
    val = SegmentationDataset(open_dataset(data, data.val_split, args.data_root), GT_LABELS)
    results = {}
    for name, path in args.models:
        model, _, class_names = load_deeplab(path, runtime.device)
        if tuple(val.class_names) != class_names:
            raise DataError(path, f"model classes {class_names} differ from the dataset's {val.class_names}")
        results[name] = evaluate_deeplab(model, val, crf, runtime.device, runtime.workers)
    write_json(args.metrics, {v: {name: res[v].miou() for name, res in results.items()} for v in VARIANTS})
    per_class = {f"{name}{'' if v == 'miou' else '_crf'}": res[v] for name, res in results.items() for v in VARIANTS}
    write_per_class_csv(per_class, val.class_names, args.per_class)


if __name__ == "__main__":
    run_stage(main)
