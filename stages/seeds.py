"""Fused seeds M_F (Eq. 4) and confident seeds M_g (Eq. 5) of the train split.

    python -m stages.seeds <data_root> <cam_dir> <m_b_dir> <m_f_dir> <m_g_dir>

Reads <cam_dir>/M_I/<id>.png, <cam_dir>/scores/<id>.npz and <m_b_dir>/<id>.png; writes
<m_f_dir>/<id>.png and <m_g_dir>/<id>.png. Both directories are built in temporary
directories and renamed into place only after every image succeeded (M_g first, then M_F).
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.core.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.core.io import atomic_dir, write_label
from a2gnn.seeds.fusion import SeedsConfig, image_seed_labels


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "cam_dir", "m_b_dir", "m_f_dir", "m_g_dir"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, _, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = SeedsConfig.from_params(params.get("seeds"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    with atomic_dir(args.m_f_dir) as m_f_dir, atomic_dir(args.m_g_dir) as m_g_dir:
        for image_id in progress(dataset.ids, desc="seeds"):
            m_f, m_g = image_seed_labels(dataset, image_id, Path(args.cam_dir), Path(args.m_b_dir), cfg)
            write_label(m_f_dir / f"{image_id}.png", m_f)
            write_label(m_g_dir / f"{image_id}.png", m_g)


if __name__ == "__main__":
    run_stage(main)
