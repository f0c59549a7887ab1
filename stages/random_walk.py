"""Stage ``random_walk``: Table 4(a) "RW": the CAMs walked over the affinity graph (PSA/SEAM), same CRF.

    python -m stages.random_walk <data_root> <affinity_model> <cam_dir> <out_dir> [--grabcut <m_b_dir>]

Uses the same affinity CNN and graphs as the A²GNN stage (no seeds) and <cam_dir>/scores/<id>.npz;
writes <out_dir>/<id>.png for the train split, all or nothing. <m_b_dir> (M_B) is read only when
``postprocess.min_box_fill`` > 0.
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.affinity.train import load_affinity
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.graph.types import GraphConfig
from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig
from a2gnn.pseudo_labels.postprocess import PostprocessConfig, write_pseudo_labels
from a2gnn.pseudo_labels.random_walk import RandomWalkConfig, RandomWalkScorer


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "affinity_model", "cam_dir", "out_dir"):
        parser.add_argument(name)
    parser.add_argument("--grabcut", default=None, metavar="m_b_dir", help="M_B, read when postprocess.min_box_fill > 0")
    args = parser.parse_args(argv)
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    graph = GraphConfig.from_params(params.get("graph"))
    walk = RandomWalkConfig.from_params(params.get("random_walk"))
    post = PostprocessConfig.from_params(params.get("postprocess"))
    crf = CRFConfig.from_params(params.get("crf"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    model = load_affinity(args.affinity_model, runtime.device)
    scorer = RandomWalkScorer(dataset, model, Path(args.cam_dir), graph, walk, runtime.device)
    write_pseudo_labels(dataset, scorer, post, crf, runtime.workers, runtime.chunk_images, args.out_dir,
                        desc="pseudo labels (random walk)",
                        fallback_dir=args.grabcut,
                        fill_confidence=GrabCutCRFConfig.from_params(params.get("grabcut_crf")).confidence)


if __name__ == "__main__":
    run_stage(main)
