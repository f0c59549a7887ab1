"""Train DeepLab (paper Table 1) on the train split with pseudo labels (or the ground truth) and save it.

    python -m stages.train_deeplab <data_root> <label_dir> <out_model.pt> [--live-dir DIR] [--params params.yaml]
    torchrun --nproc_per_node N stages/train_deeplab.py ...     (one process per GPU; see README "Paper scale")

<label_dir>: a folder of <id>.png label maps (outputs/pseudo_labels_a2gnn; outputs/seeds/M_B, ...), or ``gt`` for the
dataset's ground truth (the fully supervised upper bound). Logs loss and val mIoU per epoch with dvclive in
--live-dir (default dvclive/train_deeplab). Resumes from checkpoints/train_deeplab/ after an interruption.
Trains on ``runtime.train_processes`` data-parallel processes (:mod:`a2gnn.core.distributed`; under torchrun, on
its processes). Params: base, dataset, deeplab.
"""

from __future__ import annotations

import sys
from pathlib import Path

from a2gnn.core import distributed
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.segmentation import GT_LABELS, SegmentationDataset
from a2gnn.segmentation.deeplab import DeepLabConfig, TrainJob, run_train_job
from a2gnn.core.io import save_unavailable
from a2gnn.core.training import checkpoint_dir


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
    job = TrainJob(data_root=args.data_root, checkpoints=args.checkpoints, dataset=data, seed=base.seed,
                   device=runtime.device, label_dir=args.label_dir, out_model=args.out_model, live_dir=args.live_dir,
                   cfg=DeepLabConfig.from_params(params.get("deeplab")))
    train = open_dataset(data, data.train_split, args.data_root)
    missing = train.missing_ground_truth("semantic") if args.label_dir == GT_LABELS else None
    if missing is not None:  # the upper bound needs ground truth: say so in the model file, train nothing
        print(f"train_deeplab: no model trained on the ground truth: {missing}", file=sys.stderr)
        save_unavailable(args.out_model, missing)
        Path(args.live_dir, "plots", "metrics").mkdir(parents=True, exist_ok=True)
        return
    SegmentationDataset(train, args.label_dir)  # fail early, clearly
    distributed.launch(run_train_job, runtime.train_processes, runtime.device, job, threads=runtime.torch_threads)


if __name__ == "__main__":
    run_stage(main)
