"""Stage ``cam``: train the CAM classifier on the train split and write CAMs and seeds M_I (Eq. 1).

    python -m stages.cam <data_root> <out_dir> [--params params.yaml]

Writes, all or nothing (one atomic directory): <out_dir>/model.pt, <out_dir>/scores/<id>.npz
(cams float16 (K, H, W), labels int64 (K,)) and <out_dir>/M_I/<id>.png. An interrupted training resumes
from its last epoch checkpoint in checkpoints/cam/ (outside DVC's outputs, so a rerun finds it). Trains on
``runtime.train_processes`` data-parallel processes (:mod:`a2gnn.core.distributed`).
"""

from __future__ import annotations

from a2gnn.core import distributed
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.seeds.cam import CAMConfig
from a2gnn.seeds.cam_train import CAMJob, run_cam_job
from a2gnn.core.training import checkpoint_dir


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root", help="dataset root")
    parser.add_argument("out_dir", help="output directory (replaced atomically)")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir("cam")), help="resume folder (not a DVC output)")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    job = CAMJob(data_root=args.data_root, checkpoints=args.checkpoints, dataset=data, seed=base.seed,
                 device=runtime.device, out_dir=args.out_dir, cfg=CAMConfig.from_params(params.get("cam")))
    open_dataset(data, data.train_split, args.data_root).validate()  # bad data fails here, before any process starts
    distributed.launch(run_cam_job, runtime.train_processes, runtime.device, job, threads=runtime.torch_threads)


if __name__ == "__main__":
    run_stage(main)
