"""The paper's ablation tables as data (Table 4, Fig. 7, Table 5 and our fairness sweeps): one :class:`Table` of
:class:`Row` per name in :data:`TABLES`. A row is its experiment's ``dvc exp run -S`` switches, the paper's number
and where "ours" is read; nothing here runs anything (:mod:`a2gnn.pipeline.ablations` queues, collects and prints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


METRIC_FILE = "metrics/pseudo_labels.json"


METRIC = "pseudo-label mIoU (%) on the train split"


TARGET = "evaluate_pseudo_labels"  # the stage that writes METRIC_FILE


@dataclass(frozen=True)
class Row:
    """One row of a paper table: ``overrides`` {} = the default run, None = switch not implemented."""

    name: str  # short slug; the experiment is "<table>-<name>"
    label: str  # what the row is, in the paper's words
    overrides: Mapping[str, Any] | None  # `dvc exp run -S key=value` switches
    paper: float | None  # the paper's number, % (None: not printed in the paper's text or tables)
    metric: str = "a2gnn"  # key (dotted) of the table's metric file that is "ours", or "<file>:<key>"
    note: str = ""
    exp: str = ""  # experiment slug when several rows read one experiment (other metric keys); default: name


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[Row, ...]
    paper_metric: str = "pseudo-label mIoU (%), PASCAL VOC 2012 train"
    metric_file: str = METRIC_FILE  # where "ours" is read (rows may name another file)
    target: str | tuple[str, ...] = TARGET  # the stage(s) an experiment reproduces (with their upstream)
    metric: str = METRIC  # what "ours" is, in words


def row_metric(table: "Table", row: Row) -> tuple[str, str]:
    """(metrics file, dotted key) of a row's "ours"."""
    file, _, key = row.metric.rpartition(":")
    return (file or table.metric_file), key


CE_ONLY = {"gnn.use_reg": False, "gnn.use_mp": False, "gnn.use_consistency": False}


def WEAK(supervision: str) -> dict[str, Any]:
    """§7 switches: the supervision's seeds for both networks, and no box-only part (MP, consistency, box mask)."""
    return {"weak.supervision": supervision, "affinity.seeds": "weak/affinity", "gnn.seeds": "weak/gnn",
            "gnn.use_mp": False, "gnn.use_consistency": False, "postprocess.box_constraint": False}


# the stronger CAM of a2gnn/seeds/cam.py's docstring: stride 4, 20 epochs, batch 4, bg_alpha 2
STRIDE4 = {"cam.backbone.stride": 4, "cam.epochs": 20, "cam.batch_size": 4, "cam.bg_alpha": 2.0}


def _maskrcnn_seed_rows() -> list[Row]:
    """Mask R-CNN retrained under ``maskrcnn.seed`` 1 and 2 beside the default run (seed 0): on the A²GNN pseudo
    instances (whose experiments also retrain the ground-truth upper bound, read as the ``gt`` rows) and on the
    Baseline's. Only the instance stages rerun."""
    rows = []
    for labels, name, paper in (("a2gnn", "A²GNN", 59.1), ("baseline", "Baseline", None), ("gt", "ground-truth", 67.9)):
        for seed in (0, 1, 2):
            switch = {"maskrcnn.seed": seed} if seed else {}
            if labels == "baseline":
                switch = {"instances.labels": "baseline", **switch}
            rows.append(Row(f"{labels}-s{seed}", f"{name} instances, maskrcnn.seed {seed}", switch, paper, labels,
                            exp=f"a2gnn-s{seed}" if labels == "gt" else ""))
    return rows


MASKRCNN_SEED_ROWS = _maskrcnn_seed_rows()


TABLES: dict[str, Table] = {
    "table4a": Table("Table 4(a): modules of the approach", (
        Row("baseline", "Baseline (CAM seeds, background from boxes)", {}, 62.3, "baseline"),
        Row("rw-lac", "+ affinity CNN (L_Ac) + RW", {"affinity.use_ar": False}, 70.3, "rw"),
        Row("rw", "+ affinity CNN (L_Ac + L_Ar) + RW", {}, 71.3, "rw"),
        Row("h", "+ A²GNN layer H (L_ce only)", CE_ONLY, 73.8),
        Row("h-reg", "+ L_reg", {"gnn.use_mp": False, "gnn.use_consistency": False}, 74.9),
        Row("h-reg-mp", "+ L_mp", {"gnn.use_consistency": False}, 78.1),
        Row("full", "+ consistency checking (full A²GNN)", {}, 78.8),
    )),
    "table4b": Table("Table 4(b): loss functions of the A²GNN", (
        Row("ce", "L_ce", CE_ONLY, 73.8),
        Row("ce-reg", "L_ce + L_reg", {"gnn.use_mp": False, "gnn.use_consistency": False}, 74.9),
        Row("ce-mp", "L_ce + L_mp", {"gnn.use_reg": False, "gnn.use_consistency": False}, 75.9),
        Row("ce-mp-cc", "L_ce + L_mp + C.C.", {"gnn.use_reg": False}, 77.2),
        Row("ce-reg-mp", "L_ce + L_reg + L_mp", {"gnn.use_consistency": False}, 78.1),
        Row("full", "L_ce + L_reg + L_mp + C.C.", {}, 78.8),
    )),
    "table4c": Table("Table 4(c): how the graph is built", (
        Row("sp-dis", "superpixel nodes, L1-distance edges (GraphNet)", {"graph.nodes": "superpixels", "graph.edges": "l1"},
            73.3),
        Row("feat-dis", "feature-map nodes, L1-distance edges", {"graph.edges": "l1"}, 74.7),
        Row("feat-aff", "feature-map nodes, affinity-CNN edges (ours)", {}, 78.8),
    )),
    "table4d": Table("Table 4(d): the affinity attention layer", (
        Row("cos", "attention term only (w cos)", {"gnn.use_edge_term": False}, 73.1,
            note="the extracted table lost its check-mark columns; the text: either term alone is worse"),
        Row("edge", "affinity term only (beta [cos>0] E_ij)", {"gnn.use_cos_term": False}, 77.3),
        Row("full", "both (A²GNN layer)", {}, 78.8),
    )),
    "table4e": Table("Table 4(e): seeds and losses of the affinity CNN", (
        Row("ac-mf", "L_Ac, M_F seeds", {"affinity.use_ar": False, "affinity.seeds": "M_F"}, 74.5),
        Row("ac-mg", "L_Ac, M_g seeds", {"affinity.use_ar": False}, 71.7),
        Row("ac-ar-mf", "L_Ac + L_Ar, M_F seeds", {"affinity.seeds": "M_F"}, 76.1),
        Row("ac-ar-mg", "L_Ac + L_Ar, M_g seeds (ours)", {}, 78.8),
    )),
    "gnn_seeds": Table("§6.3 text: seeds supervising the A²GNN", (
        Row("mf", "A²GNN on M_F (Eq. 4)", {"gnn.seeds": "M_F"}, 73.2),
        Row("mg", "A²GNN on M_g (Eq. 5, ours)", {}, 78.8),
    )),
    "fig7": Table("Fig. 7: A²GNN against other GNNs (CE = L_ce only)", (
        Row("gcn-ce", "GCN, CE", {"gnn.layer_type": "gcn", **CE_ONLY}, None, note="bar height not in the text"),
        Row("gcn-full", "GCN, full", {"gnn.layer_type": "gcn"}, None, note="bar height not in the text"),
        Row("gat-ce", "GAT, CE", {"gnn.layer_type": "gat", **CE_ONLY}, None, note="bar height not in the text"),
        Row("gat-full", "GAT, full", {"gnn.layer_type": "gat"}, None, note="bar height not in the text"),
        Row("agnn-ce", "AGNN, CE", {"gnn.layer_type": "agnn", **CE_ONLY}, 71.9,
            note="text: A²GNN CE is 1.9 higher, full A²GNN 6.9 higher"),
        Row("agnn-full", "AGNN, full", {"gnn.layer_type": "agnn"}, None, note="bar height not in the text"),
        Row("a2gnn-ce", "A²GNN, CE", CE_ONLY, 73.8, note="= Table 4(b) L_ce"),
        Row("a2gnn-full", "A²GNN, full", {}, 78.8),
    )),
    "rw_tuning": Table("Fair baselines: RW's own knobs swept on the train split (Table 4(a) RW row)", tuple(
        Row(f"logt{logt}-bga{bga:g}", f"RW, logt {logt}, bg_alpha {bga:g}",
            {} if (logt, bga) == (3, 6.0) else {"random_walk.logt": logt, "random_walk.bg_alpha": bga}, None, "rw",
            note="default" if (logt, bga) == (3, 6.0) else "")
        for logt in (2, 3, 4) for bga in (4.0, 6.0, 8.0)) + (
        Row("beta4", "RW, beta 4 (logt 3, bg_alpha 6)", {"random_walk.beta": 4.0}, None, "rw"),
        Row("beta12", "RW, beta 12 (logt 3, bg_alpha 6)", {"random_walk.beta": 12.0}, None, "rw"),
    ), paper_metric="(not in the paper: tuning of a competitor)"),
    "baseline_tuning": Table("Fair baselines: the Baseline's bg_alpha swept on the train split (Table 4(a) row 1)",
        tuple(Row(f"bga{bga:g}", f"Baseline, bg_alpha {bga:g}",
                  {} if bga == 3.0 else {"baseline.bg_alpha": bga}, None, "baseline",
                  note="default" if bga == 3.0 else "")
              for bga in (1.5, 2.0, 3.0, 4.0, 6.0)),
        paper_metric="(not in the paper: tuning of a competitor)"),
    "maskrcnn_seeds": Table("Mask R-CNN run-to-run spread: maskrcnn.seed 0 / 1 / 2 on A²GNN, Baseline and GT instances",
        tuple(MASKRCNN_SEED_ROWS), paper_metric="mask mAP^r 0.5 (%), PASCAL VOC 2012 val (Table 2)",
        metric_file="metrics/instance_ap50.json", target="evaluate_maskrcnn", metric="Mask R-CNN val mAP^r 0.5 (%)"),
    "cam_stride4": Table("Table 4(a) ranking under the stronger stride-4 CAM (a2gnn/seeds/cam.py)", (
        Row("baseline", "Baseline", STRIDE4, 62.3, "baseline", exp="run"),
        Row("rw", "RW (logt 3, bg_alpha 6: tuned on the stride-8 CAM)", STRIDE4, 71.3, "rw", exp="run"),
        Row("a2gnn", "A²GNN, full", STRIDE4, 78.8, exp="run"),
        Row("rw-logt4", "RW, logt 4", {**STRIDE4, "random_walk.logt": 4}, None, "rw"),
        Row("rw-logt2", "RW, logt 2", {**STRIDE4, "random_walk.logt": 2}, None, "rw"),
        Row("rw-bga4", "RW, bg_alpha 4", {**STRIDE4, "random_walk.bg_alpha": 4.0}, None, "rw"),
        Row("baseline-bga2", "Baseline, bg_alpha 2", {**STRIDE4, "baseline.bg_alpha": 2.0}, None, "baseline"),
        Row("baseline-bga4", "Baseline, bg_alpha 4", {**STRIDE4, "baseline.bg_alpha": 4.0}, None, "baseline"),
    )),
    "table5": Table("Table 5: other weak supervision (§7; DeepLab val mIoU with CRF, and the pseudo labels)", (
        Row("box", "boxes (the main task), DeepLab", {}, 73.8, "a2gnn", note="paper: Table 1"),
        Row("scribble", "scribbles, DeepLab", WEAK("scribble"), 74.3, "a2gnn"),
        Row("point", "points, DeepLab", WEAK("point"), 66.8, "a2gnn"),
        Row("image", "image-level labels (+ RW 1:3), DeepLab", {**WEAK("image"), "weak.rw_fusion": 0.75}, 66.8,
            "a2gnn"),
        Row("image-saliency", "image-level labels + saliency, DeepLab", None, 68.3,
            note="needs a saliency model trained on extra pixel-level data: out of scope"),
        Row("box-labels", "boxes: pseudo labels (train)", {}, 78.8, f"{METRIC_FILE}:a2gnn", exp="box"),
        Row("scribble-labels", "scribbles: pseudo labels (train)", WEAK("scribble"), None, f"{METRIC_FILE}:a2gnn",
            exp="scribble"),
        Row("point-labels", "points: pseudo labels (train)", WEAK("point"), None, f"{METRIC_FILE}:a2gnn",
            exp="point"),
        Row("image-labels", "image-level: pseudo labels (train)", {**WEAK("image"), "weak.rw_fusion": 0.75}, 65.3,
            f"{METRIC_FILE}:a2gnn", exp="image", note="paper: Table 6"),
        Row("gt", "ground truth, DeepLab (upper bound)", {}, 76.8, "gt", exp="box"),
    ), paper_metric="DeepLab val mIoU (%), PASCAL VOC 2012 (Table 5); pseudo labels: train mIoU (Table 6)",
        metric_file="metrics/deeplab_miou_crf.json", target=(TARGET, "evaluate_deeplab"),
        metric="DeepLab val mIoU with CRF (%) / pseudo-label train mIoU (%)"),
}
