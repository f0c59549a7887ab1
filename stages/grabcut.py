"""Box seeds M_B (Eq. 2-3): GrabCut inside every box of the train split.

    python -m stages.grabcut <data_root> <out_dir>

Writes <out_dir>/<id>.png. Every annotation and image of the split is validated before GrabCut
starts; the output directory is replaced only when every image succeeded.
"""

from __future__ import annotations

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.core.io import atomic_dir
from a2gnn.seeds.grabcut import GrabCutConfig, plan_box_seeds, write_box_seeds


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = GrabCutConfig.from_params(params.get("grabcut"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    jobs = plan_box_seeds(dataset, base.seed)  # raises DataError before anything is written
    with atomic_dir(args.out_dir) as tmp:
        write_box_seeds(jobs, cfg, tmp, runtime.workers)


if __name__ == "__main__":
    run_stage(main)
