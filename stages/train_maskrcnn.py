"""Train detectron2 Mask R-CNN (paper Tables 2-3) on pseudo instance masks (or the ground truth) and save it.

    python stages/train_maskrcnn.py <data_root> <train_json> <out_model.pth> [--live-dir DIR] [--checkpoints DIR]

<train_json>: a COCO instances JSON of the train split (outputs/instances/train.json from the instances stage),
or ``gt`` for the dataset's ground-truth instance masks (the fully supervised upper bound). Logs the losses
with dvclive in --live-dir. Resumes from --checkpoints (detectron2 checkpointer) after an interruption; the
checkpoint is deleted once <out_model.pth> is written. Params: base, dataset, maskrcnn.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets import open_dataset
from a2gnn.instance.maskrcnn import (
    CHECKPOINT_STAGE, GT, MaskRCNNConfig, clear_checkpoints, dataset_records, register_instances, save_maskrcnn,
    train_maskrcnn, write_gt_instances,
)
from a2gnn.instance.pseudo_instances import image_root
from a2gnn.training import checkpoint_dir


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("train_json", help=f"COCO instances JSON of the train split, or {GT!r}")
    parser.add_argument("out_model")
    parser.add_argument("--live-dir", default="dvclive/train_maskrcnn", help="dvclive folder (plots)")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir(CHECKPOINT_STAGE)), help="resume folder")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = MaskRCNNConfig.from_params(params.get("maskrcnn"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train = open_dataset(data, data.train_split, args.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        train_json = args.train_json
        if train_json == GT:
            train_json = Path(tmp) / "train_gt.json"
            write_gt_instances(train, train_json)
        classes = register_instances("a2gnn_train", train_json, image_root(train))
        records = dataset_records("a2gnn_train")
    from dvclive import Live

    resume = (Path(args.checkpoints) / "last_checkpoint").is_file()  # curves continue only with the training
    with Live(args.live_dir, resume=resume, save_dvc_exp=False, dvcyaml=None) as live:

        def log_losses(iteration: int, logs: dict[str, float]) -> None:
            live.step = iteration
            for name, value in logs.items():
                live.log_metric(f"train_maskrcnn/{name}", value)
            live.next_step()

        model = train_maskrcnn(records, classes, cfg, runtime.device, base.seed, log_losses, args.checkpoints)
    save_maskrcnn(args.out_model, model, cfg, classes, base.seed)
    clear_checkpoints(args.checkpoints)


if __name__ == "__main__":
    run_stage(main)
