"""Evaluate the seed maps M_I, M_B, M_F, M_g (Eq. 1-5) against the train split's ground truth.

    python stages/evaluate_seeds.py <data_root> <m_i_dir> <seeds_dir> <metrics_json>

Reads <m_i_dir>/<id>.png and <seeds_dir>/{M_B,M_F,M_g}/<id>.png; writes one metrics block per map.
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets.voc import VOCDataset
from a2gnn.io import write_json
from a2gnn.label_eval import evaluate_label_dir

SEED_MAPS = ("M_B", "M_F", "M_g")  # sub-directories of <seeds_dir>


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("m_i_dir")
    parser.add_argument("seeds_dir")
    parser.add_argument("metrics_json")
    args = parser.parse_args(argv)
    params, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = VOCDataset(args.data_root, data.train_split, data.segmentation_dir, data.use_difficult)
    dirs = {"M_I": Path(args.m_i_dir), **{name: Path(args.seeds_dir) / name for name in SEED_MAPS}}
    metrics = {name: evaluate_label_dir(dataset, d, desc=name).summary(dataset.class_names) for name, d in dirs.items()}
    write_json(args.metrics_json, {**metrics, "num_images": len(dataset)})


if __name__ == "__main__":
    run_stage(main)
