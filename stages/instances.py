"""Pseudo instance masks (paper §5): the pixels of each box that carry the box's class -> COCO instances JSON.

    python -m stages.instances <data_root> <label_dir> <out_json> [--params params.yaml]

<label_dir>: pseudo labels <id>.png of the train split (outputs/pseudo_labels_a2gnn, or any method's folder).
<out_json>: COCO instances JSON with RLE masks, the training set of train_maskrcnn. Params: base, dataset, instances.
"""

from __future__ import annotations

import logging

from a2gnn.core.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.resize import unwrap
from a2gnn.pseudo_labels.instances import InstanceConfig, write_pseudo_instances


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "label_dir", "out_json"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    cfg = InstanceConfig.from_params(params.get("instances"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # the photos as they are (pseudo labels are written at full size; detectron2 resizes by itself)
    dataset = unwrap(open_dataset(data, data.train_split, args.data_root))
    write_pseudo_instances(dataset, args.label_dir, cfg, args.out_json, progress)


if __name__ == "__main__":
    run_stage(main)
