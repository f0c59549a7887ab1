"""Evaluate a trained Mask R-CNN on the val split: mask AP (Table 2 mAP^r at IoU 0.5/0.7/0.75, Table 3 COCO AP,
AP_S/M/L) and box AP against the ground-truth instance masks.

    python stages/evaluate_maskrcnn.py <data_root> <model.pth> <metrics_json> [--params params.yaml]

<metrics_json> (DVC metric): {"mask": {ap, ap50, ap70, ap75, ap_s, ap_m, ap_l}, "box": {ap, ap50, ap70, ap75}},
fractions in [0, 1] (-1: no val object of that size). Params: dataset.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets import open_dataset
from a2gnn.instance.coco_eval import instance_metrics
from a2gnn.instance.maskrcnn import dataset_records, load_maskrcnn, predict, register_instances, write_gt_instances
from a2gnn.instance.pseudo_instances import image_root
from a2gnn.io import DataError, write_json


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "model", "metrics_json"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    model, d2, classes = load_maskrcnn(args.model, runtime.device)
    val = open_dataset(data, data.val_split, args.data_root)
    if list(val.class_names[1:]) != classes:
        raise DataError(args.model, f"model classes {classes} differ from the dataset's {list(val.class_names[1:])}")
    with tempfile.TemporaryDirectory() as tmp:
        gt_json = Path(tmp) / "val_gt.json"
        write_gt_instances(val, gt_json)
        register_instances("a2gnn_val", gt_json, image_root(val))
        results = predict(model, d2, dataset_records("a2gnn_val", keep_empty=True))
        write_json(args.metrics_json, instance_metrics(gt_json, results))


if __name__ == "__main__":
    run_stage(main)
