"""Seeds from scribbles, points or image-level labels (§7.1, Table 5) for ``weak.supervision``; nothing for boxes.

    python -m stages.weak_seeds <data_root> <cam_dir> <out_dir> <record_json>

Writes <out_dir>/affinity/<id>.png (seeds of the affinity CNN: ``affinity.seeds: weak/affinity``),
<out_dir>/gnn/<id>.png (A²GNN node labels: ``gnn.seeds: weak/gnn``), <out_dir>/annotations/<id>.png (the
scribbles or points used, synthetic from the ground truth unless ``weak.annotation_dir`` is set), all or
nothing, and <record_json>, what ``pseudo_labels`` needs to know (the supervision, and the ``random_walk`` section
only when ``weak.rw_fusion`` > 0: see :mod:`a2gnn.data.supervision`). With ``weak.supervision: box`` (the paper's main
task) the folders stay empty: the box pipeline's seeds come from stages/seeds.py.
"""

from __future__ import annotations

from pathlib import Path

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.core.io import atomic_dir, write_json, write_label
from a2gnn.core.parallel import parallel_map
from a2gnn.seeds.fusion import SeedsConfig
from a2gnn.seeds.weak import image_weak_seeds
from a2gnn.data.supervision import WeakConfig, supervision_record

FOLDERS = ("affinity", "gnn", "annotations")


def _job(args):
    return image_weak_seeds(*args)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    for name in ("data_root", "cam_dir", "out_dir", "record_json"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    seeds = SeedsConfig.from_params(params.get("seeds"))
    cfg = WeakConfig.from_params(params.get("weak"))
    walk = params.get("random_walk") if cfg.rw_fusion > 0 else None  # read here so pseudo_labels need not
    dataset = open_dataset(data, data.train_split, args.data_root)
    ids = [] if cfg.uses_boxes else list(dataset.ids)
    jobs = [(dataset, i, Path(args.cam_dir), Path(args.data_root), cfg, seeds, base.seed) for i in ids]
    results = parallel_map(_job, jobs, runtime.workers, desc=f"weak seeds ({cfg.supervision})")
    with atomic_dir(args.out_dir) as tmp:
        for folder in FOLDERS:
            (tmp / folder).mkdir()
        for image_id, (annotation, affinity, node) in zip(ids, results):
            write_label(tmp / "affinity" / f"{image_id}.png", affinity)
            write_label(tmp / "gnn" / f"{image_id}.png", node)
            if annotation is not None:
                write_label(tmp / "annotations" / f"{image_id}.png", annotation)
    write_json(args.record_json, supervision_record(cfg, walk, len(ids)), ndigits=12)


if __name__ == "__main__":
    run_stage(main)
