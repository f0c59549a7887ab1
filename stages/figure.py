"""Qualitative figure like the paper's Fig. 6: image, ground truth, pseudo label, DeepLab, Mask R-CNN per row.

    python -m stages.figure <data_root> --out <png> [--split train] [--n 6] [--labels <dir>]
        [--deeplab <model.pt>] [--maskrcnn <model.pth>] [--params params.yaml]

Rows: the first ``--n`` ids of ``--split`` (its list order, so the same images every run). Columns: the image
and its ground truth always; ``--labels``: the label PNGs ``<dir>/<id>.png`` (the A²GNN pseudo labels,
``outputs/pseudo_labels_a2gnn``, exist for the train split only); ``--deeplab``: the arg-max DeepLab prediction;
``--maskrcnn``: the Mask R-CNN instances of score >= ``--min-score`` (0.5), each a distinct colour, outlined,
over the image. Label maps use the VOC palette of the label PNGs. Everything is shown at the size the dataset
presents (``dataset.max_side``); pseudo labels written at the original resolution are resized to it (nearest).
The PNG's bytes depend only on the inputs (no metadata). Params: base, dataset.
"""

from __future__ import annotations

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import numpy as np

from a2gnn.data.boxes import box_label_map
from a2gnn.core.cli import progress, run_stage, setup_stage, stage_parser
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.resize import resize_label
from a2gnn.reporting.figures import assemble_grid, colourise, overlay_instances, write_png
from a2gnn.core.io import DataError
from a2gnn.data.labels import LabelFolder


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--out", required=True, metavar="png")
    parser.add_argument("--split", default="train", help="split whose first --n ids are shown (default: train)")
    parser.add_argument("--n", type=int, default=6, help="number of images / rows (default: 6)")
    parser.add_argument("--labels", metavar="dir", help="label PNGs <dir>/<id>.png (the A2GNN pseudo labels)")
    parser.add_argument("--deeplab", metavar="model.pt", help="trained DeepLab (stages/train_deeplab.py)")
    parser.add_argument("--maskrcnn", metavar="model.pth", help="trained Mask R-CNN (stages/train_maskrcnn.py)")
    parser.add_argument("--min-score", type=float, default=0.5, help="Mask R-CNN score threshold (default: 0.5)")
    parser.add_argument("--cell", type=int, default=160, help="cell size in pixels (default: 160)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    params, _, runtime = setup_stage(args)
    data = DatasetConfig.from_params(params.get("dataset"))
    dataset = open_dataset(data, args.split, args.data_root)
    ids = list(dataset.ids)[: args.n]

    has_gt = dataset.missing_ground_truth("semantic") is None  # boxes only: the boxes stand in for the masks
    titles, nearest = ["image", "ground truth" if has_gt else "boxes (no masks)"], [False, True]
    deeplab = maskrcnn = None
    if args.labels:
        labels = LabelFolder(args.labels, "pseudo label", dataset.num_classes)  # any size: drawn at the image's
        titles.append("A2GNN pseudo label")
        nearest.append(True)
    if args.deeplab:
        from a2gnn.segmentation.deeplab import load_deeplab, predict_probs

        deeplab, _, class_names = load_deeplab(args.deeplab, runtime.device)
        if tuple(class_names) != tuple(dataset.class_names):
            raise DataError(args.deeplab, f"model classes {class_names} differ from the dataset's {dataset.class_names}")
        titles.append("DeepLab")
        nearest.append(True)
    if args.maskrcnn:
        from a2gnn.instance.maskrcnn import load_maskrcnn, predict_image_masks

        maskrcnn, d2, classes = load_maskrcnn(args.maskrcnn, runtime.device)
        if list(classes) != list(dataset.class_names[1:]):
            raise DataError(args.maskrcnn, f"model classes {classes} differ from the dataset's {list(dataset.class_names[1:])}")
        titles.append("Mask R-CNN")
        nearest.append(False)

    rows = []
    for image_id in progress(ids, desc="figure", total=len(ids)):
        image = dataset.image(image_id)
        size = image.shape[:2]
        truth = dataset.semantic_gt(image_id) if has_gt else box_label_map(dataset.annotation(image_id).boxes, size)
        row = [image, colourise(resize_label(truth, size))]
        if args.labels:
            row.append(colourise(resize_label(labels.read(image_id), size)))
        if deeplab is not None:
            row.append(colourise(predict_probs(deeplab, image, runtime.device).argmax(axis=0).astype(np.uint8)))
        if maskrcnn is not None:
            row.append(overlay_instances(image, predict_image_masks(maskrcnn, d2, image, args.min_score)))
        rows.append(row)
    write_png(args.out, assemble_grid(rows, titles, (args.cell, args.cell), captions=ids, nearest=nearest))


if __name__ == "__main__":
    run_stage(main)
