"""Evaluate a trained DeepLab on the val split: mIoU without and with dense CRF, and per-class IoU.

    python stages/evaluate_deeplab.py <data_root> <model.pt> <metrics_json> <per_class_csv> [--params params.yaml]

<metrics_json> (DVC metric): {"miou": ..., "miou_crf": ...}. <per_class_csv> (DVC plot): one row per class,
columns miou and miou_crf (per-class IoU). Params: dataset, crf (the CRF kernels; runtime.workers CRF processes).
"""

from __future__ import annotations

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.crf import CRFConfig
from a2gnn.datasets import open_dataset
from a2gnn.datasets.segmentation import GT_LABELS, SegmentationDataset
from a2gnn.io import DataError, write_json
from a2gnn.segmentation import evaluate_deeplab, load_deeplab, write_per_class_csv


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "model", "metrics_json", "per_class_csv"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    crf = CRFConfig.from_params(params.get("crf"))
    model, _, class_names = load_deeplab(args.model, runtime.device)
    val = SegmentationDataset(open_dataset(data, data.val_split, args.data_root), GT_LABELS)
    if tuple(val.class_names) != class_names:
        raise DataError(args.model, f"model classes {class_names} differ from the dataset's {val.class_names}")
    results = evaluate_deeplab(model, val, crf, runtime.device, runtime.workers)
    write_json(args.metrics_json, {name: cm.miou() for name, cm in results.items()})
    write_per_class_csv(results, class_names, args.per_class_csv)


if __name__ == "__main__":
    run_stage(main)
