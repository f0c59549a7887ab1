"""Train detectron2 Mask R-CNN (paper Tables 2-3) on pseudo instance masks (or the ground truth) and save it.

    python -m stages.train_maskrcnn <data_root> <train_json> <out_model.pth> [--live-dir DIR] [--checkpoints DIR]

<train_json>: a COCO instances JSON of the train split (outputs/instances/train.json from the instances stage),
or ``gt`` for the dataset's ground-truth instance masks (the fully supervised upper bound). Logs the losses
with dvclive in --live-dir. Resumes from --checkpoints (detectron2 checkpointer) after an interruption; the
checkpoint is deleted once <out_model.pth> is written. Trains on ``runtime.train_processes`` data-parallel
processes (:mod:`a2gnn.core.distributed`). Params: base, dataset, maskrcnn.
"""

from __future__ import annotations

import sys
from pathlib import Path

from a2gnn.core import distributed
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.instance.maskrcnn import CHECKPOINT_STAGE, GT, MaskRCNNConfig
from a2gnn.instance.maskrcnn_train import TrainJob, run_train_job, train_records
from a2gnn.data.formats import open_dataset
from a2gnn.core.io import save_unavailable
from a2gnn.core.training import checkpoint_dir


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("train_json", help=f"COCO instances JSON of the train split, or {GT!r}")
    parser.add_argument("out_model")
    parser.add_argument("--live-dir", default="dvclive/train_maskrcnn", help="dvclive folder (plots)")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir(CHECKPOINT_STAGE)), help="resume folder")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    cfg = MaskRCNNConfig.from_params(params.get("maskrcnn"))
    job = TrainJob(data_root=args.data_root, checkpoints=args.checkpoints,
                   dataset=DatasetConfig.from_params(params.get("dataset")), seed=cfg.training_seed(base.seed),
                   device=runtime.device, train_json=args.train_json, out_model=args.out_model,
                   live_dir=args.live_dir, cfg=cfg)
    train = open_dataset(job.dataset, job.dataset.train_split, args.data_root)
    missing = train.missing_ground_truth("instance") if args.train_json == GT else None
    if missing is not None:  # the upper bound needs ground truth: say so in the model file, train nothing
        print(f"train_maskrcnn: no model trained on the ground truth: {missing}", file=sys.stderr)
        save_unavailable(args.out_model, missing)
        Path(args.live_dir, "plots", "metrics").mkdir(parents=True, exist_ok=True)
        return
    train_records(job)  # bad data fails here, with a clear error, before any process starts
    distributed.launch(run_train_job, runtime.train_processes, runtime.device, job, threads=runtime.torch_threads)


if __name__ == "__main__":
    run_stage(main)
