"""Stage ``grabcut_crf``: GrabCut refined by the dense CRF, the box-only competitor a user would try (no graph).

    python -m stages.grabcut_crf <data_root> <m_b_dir> <out_dir>

Reads <m_b_dir>/<id>.png (M_B, Eq. 3, at the working size); the GrabCut label with probability
``grabcut_crf.confidence`` goes through the A²GNN pseudo labels' own post-processing (``postprocess``, ``crf``).
Writes <out_dir>/<id>.png for the train split, all or nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.pseudo_labels.grabcut_crf import GrabCutCRFConfig, GrabCutScorer
from a2gnn.pseudo_labels.postprocess import PostprocessConfig, write_pseudo_labels


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "m_b_dir", "out_dir"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = GrabCutCRFConfig.from_params(params.get("grabcut_crf"))
    post = PostprocessConfig.from_params(params.get("postprocess"))
    crf = CRFConfig.from_params(params.get("crf"))
    post = dataclasses.replace(post, fill_source="grabcut")  # its own under-filled boxes: M_B (it is "GrabCut + CRF")
    dataset = open_dataset(data, data.train_split, args.data_root)
    write_pseudo_labels(dataset, GrabCutScorer(Path(args.m_b_dir), cfg), post, crf, runtime.workers,
                        runtime.chunk_images, args.out_dir, desc="pseudo labels (GrabCut + CRF)",
                        fallback_dir=args.m_b_dir)


if __name__ == "__main__":
    run_stage(main)
