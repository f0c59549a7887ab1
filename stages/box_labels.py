"""Stage ``box_labels``: the box-as-mask pseudo labels (every box pixel takes its class; smallest box on top).

    python stages/box_labels.py <data_root> <out_dir>

The floor any box-supervised method must beat: no image content is used. Painted from the original boxes at the
original resolution; writes <out_dir>/<id>.png for the train split, all or nothing.
"""

from __future__ import annotations

from a2gnn.boxes import box_label_map
from a2gnn.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets import open_dataset
from a2gnn.datasets.resize import unwrap
from a2gnn.io import atomic_dir, write_label


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "out_dir"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, _, _ = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = unwrap(open_dataset(data, data.train_split, args.data_root))
    with atomic_dir(args.out_dir) as tmp:
        for image_id in progress(dataset.ids, desc="box labels"):
            ann = dataset.annotation(image_id)
            write_label(tmp / f"{image_id}.png", box_label_map(ann.boxes, (ann.height, ann.width)))


if __name__ == "__main__":
    run_stage(main)
