"""Train DeepLab (paper Table 1) on the train split with pseudo labels (or the ground truth) and save it.

    python stages/train_deeplab.py <data_root> <label_dir> <out_model.pt> [--live-dir DIR] [--params params.yaml]

<label_dir>: a folder of <id>.png label maps (outputs/pseudo_labels; outputs/seeds/M_B, ...), or ``gt`` for the
dataset's ground truth (the fully supervised upper bound). Logs loss and val mIoU per epoch with dvclive in
--live-dir (default dvclive/train_deeplab). Resumes from checkpoints/train_deeplab/ after an interruption.
Params: base, dataset, deeplab.
"""

from __future__ import annotations

import logging
from pathlib import Path

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets import open_dataset
from a2gnn.datasets.segmentation import GT_LABELS, SegmentationDataset
from a2gnn.segmentation import DeepLabConfig, save_deeplab, train_deeplab
from a2gnn.training import CHECKPOINT_FILE, checkpoint_dir, clear_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("label_dir", help=f"folder of <id>.png label maps, or {GT_LABELS!r}")
    parser.add_argument("out_model")
    parser.add_argument("--live-dir", default="dvclive/train_deeplab", help="dvclive folder (plots)")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir("train_deeplab")), help="resume folder")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = DeepLabConfig.from_params(params.get("deeplab"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train = SegmentationDataset(open_dataset(data, data.train_split, args.data_root), args.label_dir)
    val = SegmentationDataset(open_dataset(data, data.val_split, args.data_root), GT_LABELS)
    from dvclive import Live

    # the curves continue only when the training does (a checkpoint of an interrupted run); else start afresh
    resume = (Path(args.checkpoints) / CHECKPOINT_FILE).is_file()
    with Live(args.live_dir, resume=resume, save_dvc_exp=False, dvcyaml=None) as live:

        def log_epoch(epoch: int, logs: dict[str, float]) -> None:
            live.step = epoch
            for name, value in logs.items():
                live.log_metric(f"train_deeplab/{name}", value)
            live.next_step()

        model = train_deeplab(train, cfg, runtime.device, base.seed, val, log_epoch, args.checkpoints)
    save_deeplab(args.out_model, model, cfg, train.class_names)
    clear_checkpoint(args.checkpoints)


if __name__ == "__main__":
    run_stage(main)
