"""Train the affinity CNN (paper §4.3.1, Eq. 6-13) on the confident seeds and save its checkpoint.

    python -m stages.affinity <data_root> <seed_dir> <out_model.pt>

<seed_dir> holds <id>.png seed maps for the train split (outputs/seeds/M_g; M_F for Table 4(e)).
Params: base, dataset, affinity. An interrupted training resumes from checkpoints/affinity/ (not a DVC output).
Trains on ``runtime.train_processes`` data-parallel processes (:mod:`a2gnn.core.distributed`).
"""

from __future__ import annotations

from a2gnn.core import distributed
from a2gnn.affinity.train import AffinityConfig, AffinityJob, check_seed_files, run_affinity_job
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.core.training import checkpoint_dir


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("seed_dir")
    parser.add_argument("out_model")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir("affinity")), help="resume folder (not a DVC output)")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    job = AffinityJob(data_root=args.data_root, checkpoints=args.checkpoints, dataset=data, seed=base.seed,
                      device=runtime.device, seed_dir=args.seed_dir, out_model=args.out_model,
                      cfg=AffinityConfig.from_params(params.get("affinity")))
    check_seed_files(open_dataset(data, data.train_split, args.data_root), args.seed_dir)  # fail early and clearly
    distributed.launch(run_affinity_job, runtime.train_processes, runtime.device, job, threads=runtime.torch_threads)


if __name__ == "__main__":
    run_stage(main)
