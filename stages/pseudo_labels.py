"""Stage ``pseudo_labels``: image -> graph -> A²GNN per image (Eq. 14-28) -> dense CRF -> label PNGs.

    python -m stages.pseudo_labels <data_root> <seed_dir> <affinity_model> <cam_dir> <supervision_json> <out_dir>
        <checks_json> [--grabcut <m_b_dir>]

<seed_dir> is outputs/seeds/${gnn.seeds} (M_g, or M_F for Table 4(e), weak/gnn for §7). Writes <out_dir>/<id>.png
for the train split, all or nothing, and <checks_json>: what consistency checking (Eq. 27-28) removed, scored
against the ground truth (a diagnostic; the method never reads the ground truth). <supervision_json> is the record of
stages/weak_seeds.py (the supervision; the random-walk settings when ``weak.rw_fusion`` > 0); <cam_dir>/scores is
read only with that fusion (§7.1 image-level: A²GNN and the random walk fused 1:3). <m_b_dir> (M_B, Eq. 3) is read
only when ``gnn.grabcut_fusion`` > 0 (GrabCut's pixel-level soft label mixed into the A²GNN's scores before the CRF)
or ``postprocess.min_box_fill`` > 0 (under-filled boxes take M_B's object, :func:`a2gnn.pseudo_labels.postprocess.fill_empty_boxes`).
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.affinity.train import load_affinity
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.gnn.model import GNNConfig
from a2gnn.graph.types import GraphConfig
from a2gnn.core.io import write_json
from a2gnn.pseudo_labels.a2gnn import A2GNNScorer
from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig, GrabCutScorer
from a2gnn.pseudo_labels.postprocess import FusedScorer, PostprocessConfig, write_pseudo_labels
from a2gnn.pseudo_labels.random_walk import RandomWalkConfig, RandomWalkScorer
from a2gnn.data.supervision import check_supervision, read_supervision_record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "seed_dir", "affinity_model", "cam_dir", "supervision_json", "out_dir",
                 "checks_json"):
        parser.add_argument(name)
    parser.add_argument("--grabcut", default=None, metavar="m_b_dir", help="M_B, read when gnn.grabcut_fusion > 0 or postprocess.min_box_fill > 0")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    graph = GraphConfig.from_params(params.get("graph"))
    gnn = GNNConfig.from_params(params.get("gnn"))
    post = PostprocessConfig.from_params(params.get("postprocess"))
    crf = CRFConfig.from_params(params.get("crf"))
    weak = read_supervision_record(args.supervision_json)
    check_supervision(weak, gnn, post)
    dataset = open_dataset(data, data.train_split, args.data_root)
    model = load_affinity(args.affinity_model, runtime.device)
    a2gnn = A2GNNScorer(dataset, model, Path(args.seed_dir), graph, gnn, runtime.device, base.seed,
                        runtime.workers, runtime.gnn_batch_images)
    scorer = a2gnn
    if weak.rw_fusion > 0:
        walk = RandomWalkConfig.from_params(weak.random_walk)
        walker = RandomWalkScorer(dataset, model, Path(args.cam_dir), graph, walk, runtime.device)
        scorer = FusedScorer(a2gnn, walker, weak.rw_fusion)
    if gnn.grabcut_fusion > 0:
        if args.grabcut is None:
            parser.error("gnn.grabcut_fusion > 0 needs --grabcut <m_b_dir>")
        grabcut = GrabCutScorer(Path(args.grabcut), GrabCutCRFConfig.from_params(params.get("grabcut_crf")))
        scorer = FusedScorer(scorer, grabcut, gnn.grabcut_fusion)
    write_pseudo_labels(dataset, scorer, post, crf, runtime.workers, runtime.chunk_images, args.out_dir,
                        desc="pseudo labels (a2gnn)", fallback_dir=args.grabcut,
                        fill_confidence=GrabCutCRFConfig.from_params(params.get("grabcut_crf")).confidence)
    write_json(args.checks_json, a2gnn.checks.summary())


if __name__ == "__main__":
    run_stage(main)
