"""Stage ``baseline``: Table 4(a) "Baseline": CAM foreground inside the boxes, background from the boxes, same CRF.

    python -m stages.baseline <data_root> <cam_dir> <out_dir> [--grabcut <m_b_dir>]

Reads <cam_dir>/scores/<id>.npz; writes <out_dir>/<id>.png for the train split, all or nothing. <m_b_dir> (M_B)
is read only when ``postprocess.min_box_fill`` > 0.
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.pseudo_labels.baseline import BaselineConfig, BaselineScorer
from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig
from a2gnn.pseudo_labels.postprocess import PostprocessConfig, write_pseudo_labels


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "cam_dir", "out_dir"):
        parser.add_argument(name)
    parser.add_argument("--grabcut", default=None, metavar="m_b_dir", help="M_B, read when postprocess.min_box_fill > 0")
    args = parser.parse_args(argv)
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = BaselineConfig.from_params(params.get("baseline"))
    post = PostprocessConfig.from_params(params.get("postprocess"))
    crf = CRFConfig.from_params(params.get("crf"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    write_pseudo_labels(dataset, BaselineScorer(Path(args.cam_dir), cfg), post, crf, runtime.workers,
                        runtime.chunk_images, args.out_dir, desc="pseudo labels (baseline)",
                        fallback_dir=args.grabcut,
                        fill_confidence=GrabCutCRFConfig.from_params(params.get("grabcut_crf")).confidence)


if __name__ == "__main__":
    run_stage(main)
