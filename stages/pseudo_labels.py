"""Stage ``pseudo_labels``: A²GNN (or the RW / baseline methods of Table 4(a)) -> dense CRF -> label PNGs.

    python stages/pseudo_labels.py <data_root> <seed_dir> <affinity_model> <cam_dir> <out_dir> [--method M]

``--method`` overrides ``pseudo_labels.method`` (dvc.yaml runs the RW and baseline methods as their own
stages on the same affinity weights). Writes <out_dir>/<id>.png for the train split, all or nothing.
"""

from __future__ import annotations

import dataclasses

from a2gnn.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.crf import CRFConfig
from a2gnn.datasets.voc import VOCDataset
from a2gnn.gnn.model import GNNConfig
from a2gnn.graph import GraphConfig
from a2gnn.io import atomic_dir, write_label
from a2gnn.pseudo_labels import METHODS, PseudoLabelConfig, PseudoLabelInputs, generate_pseudo_labels
from a2gnn.random_walk import RandomWalkConfig


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "seed_dir", "affinity_model", "cam_dir", "out_dir"):
        parser.add_argument(name)
    parser.add_argument("--method", choices=METHODS, default=None)
    args = parser.parse_args(argv)
    params, base = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = PseudoLabelConfig.from_params(params.get("pseudo_labels"))
    if args.method:
        cfg = dataclasses.replace(cfg, method=args.method)
    dataset = VOCDataset(args.data_root, data.train_split, data.segmentation_dir, data.use_difficult)
    labels = generate_pseudo_labels(
        dataset,
        PseudoLabelInputs(args.seed_dir, args.affinity_model, args.cam_dir),
        cfg,
        GraphConfig.from_params(params.get("graph")),
        GNNConfig.from_params(params.get("gnn")),
        RandomWalkConfig.from_params(params.get("random_walk")),
        CRFConfig.from_params(params.get("crf")),
        base.device,
        base.seed,
        base.workers,
        progress=lambda chunks: progress(chunks, desc=f"pseudo labels ({cfg.method})"),
    )
    with atomic_dir(args.out_dir) as tmp:
        for image_id, label in labels:
            write_label(tmp / f"{image_id}.png", label)


if __name__ == "__main__":
    run_stage(main)
