"""Stage ``box_baselines``: the two pseudo labels that use the boxes alone, the floors a method must beat.

    python -m stages.box_baselines <data_root> <m_b_dir> <boxes_out_dir> <grabcut_out_dir>

* boxes: box-as-mask, every box pixel takes its class (smallest box on top); no image content is used.
  Painted from the original boxes at the original resolution.
* grabcut: GrabCut alone as a complete pseudo label: M_B (Eq. 3) with its unknown in-box pixels (255, GrabCut
  background inside a box) set to background, mapped back to the original resolution.

Writes <dir>/<id>.png for the train split, each folder all or nothing.
"""

from __future__ import annotations


import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import numpy as np

from a2gnn.data.boxes import BACKGROUND, box_label_map
from a2gnn.core.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.resize import to_original, unwrap
from a2gnn.core.io import IGNORE_INDEX, atomic_dir, write_label
from a2gnn.data.labels import LabelFolder


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "m_b_dir", "boxes_out_dir", "grabcut_out_dir"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, _, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = open_dataset(data, data.train_split, args.data_root)
    original = unwrap(dataset)
    m_b_maps = LabelFolder(args.m_b_dir, "M_B", dataset.num_classes)
    with atomic_dir(args.boxes_out_dir) as boxes_dir, atomic_dir(args.grabcut_out_dir) as grabcut_dir:
        for image_id in progress(dataset.ids, desc="box baselines"):
            ann = original.annotation(image_id)
            write_label(boxes_dir / f"{image_id}.png", box_label_map(ann.boxes, (ann.height, ann.width)))
            working = dataset.annotation(image_id)
            m_b = m_b_maps.read(image_id, (working.height, working.width))
            filled = np.where(m_b == IGNORE_INDEX, BACKGROUND, m_b).astype(np.uint8)
            write_label(grabcut_dir / f"{image_id}.png", to_original(dataset, image_id, filled))


if __name__ == "__main__":
    run_stage(main)
