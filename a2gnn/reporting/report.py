"""One Markdown report of every result, beside the paper's numbers, with its figures (the ``report`` stage).

Reads what the pipeline writes: ``metrics/*.json`` (seeds, pseudo labels, consistency checking, the downstream
models: ``deeplab_miou*.json`` / ``instance_ap*.json``, or the older nested ``segmentation.json`` / ``instance.json``),
``metrics/per_class/*.csv``, ``metrics/tables/*.csv``, the dvclive curves (``dvclive/<run>/plots/metrics/**.tsv``)
and the ablation tables of ``python -m a2gnn.pipeline.ablations`` (``metrics/ablations/*.json``). Missing inputs leave
their section out. Writes ``report.md`` and PNGs (:data:`FIGURES`): training curves, per-class IoU bars per method,
the seeds' precision / coverage / mIoU, and a Fig. 7-style bar chart (a placeholder until ``make fig7`` ran).
Figures are byte-stable: matplotlib defaults, fixed size and dpi, Agg, no metadata.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from a2gnn.pipeline.ablation_rows import TABLES
from a2gnn.pipeline.ablations import format_table
from a2gnn.core.io import UNAVAILABLE, atomic_file

FIGURES = {  # key -> file name under the figures folder (declared as plots in dvc.yaml)
    "curves": "training_curves.png",
    "per_class": "per_class.png",
    "seeds": "seeds.png",
    "fig7": "fig7.png",
}
DPI = 100
SEED_FIGURES = ("precision", "coverage", "miou", "miou_labelled")
# The paper's numbers (PASCAL VOC 2012, %) for the keys our metric files use.
PAPER_PSEUDO = {"baseline": 62.3, "rw": 71.3, "a2gnn": 78.8}  # Table 4(a), train split
PAPER_SEGMENTATION = {"a2gnn": {"miou": 72.2, "miou_crf": 73.8}, "gt": {"miou": 75.6, "miou_crf": 76.8}}  # Table 1
PAPER_INSTANCE = {"a2gnn": {"ap50": 59.1, "ap70": 35.5, "ap75": 27.4},  # Table 2 (BSIS, val)
                  "gt": {"ap50": 67.9, "ap70": 52.5, "ap75": 44.9}}
INSTANCE_FIGURES = ("ap50", "ap70", "ap75")  # Table 2's; instance.json may hold more (COCO AP, AP_s/m/l, box AP)
HEADERS = {"miou": "mIoU", "miou_labelled": "mIoU (labelled)", "miou_crf": "mIoU with CRF", "ap50": "mAP^r 0.5",
           "ap70": "mAP^r 0.7", "ap75": "mAP^r 0.75", "ap": "AP", "ap_s": "AP_s", "ap_m": "AP_m", "ap_l": "AP_l",
           "box_ap": "box AP"}
FIG7_LAYERS = {"gcn": "GCN", "gat": "GAT", "agnn": "AGNN", "a2gnn": "A²GNN"}


# --------------------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(steps, values) of one dvclive TSV (columns ``step`` and the metric, maybe ``timestamp``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return [], []
    column = path.stem if path.stem in rows[0] else [c for c in rows[0] if c not in ("step", "timestamp")][-1]
    return [float(r["step"]) for r in rows], [float(r[column]) for r in rows]


def run_name(folder: Path) -> str:
    """``dvclive/<run>/plots/metrics`` -> ``<run>``."""
    parts = folder.as_posix().rstrip("/").split("/")
    return parts[-3] if parts[-2:] == ["plots", "metrics"] and len(parts) >= 3 else parts[-1]


def read_curves(folders: Iterable[Path]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{run: {metric (path under plots/metrics, no suffix): (steps, values)}} of dvclive plot folders."""
    curves = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            curves[run_name(folder)] = {p.relative_to(folder).with_suffix("").as_posix(): read_curve(p)
                                        for p in sorted(folder.rglob("*.tsv"))}
    return curves


def read_ablations(folder: Path | None) -> dict[str, dict[str, Any]]:
    """The ablation tables (``<table>.json``) of a folder, in :data:`a2gnn.pipeline.ablation_rows.TABLES` order."""
    if folder is None or not Path(folder).is_dir():
        return {}
    found = {p.stem: read_json(p) for p in sorted(Path(folder).glob("*.json"))}
    order = list(TABLES)
    return {k: found[k] for k in sorted(found, key=lambda k: (order.index(k) if k in order else len(order), k))}


def load_inputs(metrics: Sequence[Path] = (), per_class: Sequence[Path] = (), tables: Sequence[Path] = (),
                curves: Sequence[Path] = (), ablations: Path | None = None) -> dict[str, Any]:
    """Everything the report shows, keyed by file stem; paths that do not exist are skipped."""
    existing = lambda paths: [Path(p) for p in paths if Path(p).is_file()]  # noqa: E731
    values = {p.stem: read_json(p) for p in existing(metrics)}
    unavailable = {stem: v.pop(UNAVAILABLE) for stem, v in values.items() if isinstance(v, dict) and UNAVAILABLE in v}
    return {"metrics": values, "unavailable": unavailable,
            "per_class": {p.stem: read_csv(p) for p in existing(per_class)},
            "tables": {p.stem: read_csv(p) for p in existing(tables)},
            "curves": read_curves(curves), "ablations": read_ablations(ablations)}


def downstream(metrics: Mapping[str, Any]) -> tuple[dict[str, dict], dict[str, dict]]:
    """({figure: {labels: value}} of the segmentation model, the same of the instance model), from
    ``segmentation.json`` / ``instance.json`` or the older one-file-per-figure names."""
    seg = metrics.get("segmentation") or {f: metrics[n] for f, n in (("miou", "deeplab_miou"),
                                                                      ("miou_crf", "deeplab_miou_crf")) if n in metrics}
    inst = metrics.get("instance") or {f: metrics[f"instance_{f}"] for f in INSTANCE_FIGURES
                                       if f"instance_{f}" in metrics}
    return dict(seg), dict(inst)


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def pct(value: Any) -> str:
    """A fraction as % with one decimal; '–' for missing or undefined (negative, e.g. COCO's -1) values."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(v) or v < 0 else f"{100 * v:.1f}"


def paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def seed_rows(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{seed map: {figure: fraction}} from ``tables/seeds.csv`` and ``seeds_<figure>.json``."""
    table = data["tables"].get("seeds", [])
    rows: dict[str, dict[str, Any]] = {row["name"]: {} for row in table}  # the table's order: M_I, M_B, M_F, M_g
    for stem, values in data["metrics"].items():
        if stem.startswith("seeds_") and isinstance(values, Mapping):
            for name, value in values.items():
                rows.setdefault(name, {})[stem[len("seeds_"):]] = value
    for row in table:  # every figure (the same stage writes the JSONs)
        rows.setdefault(row["name"], {}).update({k: v for k, v in row.items() if k != "name"})
    return rows


def seeds_section(data: Mapping[str, Any]) -> str:
    rows = seed_rows(data)
    if not rows:
        return ""
    figures = [f for f in ("miou", "miou_labelled", "precision", "recall", "coverage")
               if any(f in r for r in rows.values())]
    body = md_table(["seeds", *(HEADERS.get(f, f) for f in figures)],
                    [[name, *(pct(r.get(f)) for f in figures)] for name, r in rows.items()])
    return "## Seeds (train split)\n\n" + body


def per_class_table(rows: Sequence[Mapping[str, str]]) -> str:
    columns = [c for c in rows[0] if c != "class"]
    return md_table(["class", *columns], [[r["class"], *(pct(r[c]) for c in columns)] for r in rows])


def pseudo_section(data: Mapping[str, Any]) -> str:
    miou = data["metrics"].get("pseudo_labels")
    if not miou:
        return ""
    order = sorted(miou, key=lambda k: (miou[k] is not None, miou[k] or 0.0))
    text = "## Pseudo labels (train split; paper: Table 4(a), VOC train)\n\n"
    text += md_table(["method", "mIoU", "paper"], [[k, pct(miou[k]), paper(PAPER_PSEUDO.get(k))] for k in order])
    if data["per_class"].get("pseudo_labels"):
        text += "\nPer class (IoU):\n\n" + per_class_table(data["per_class"]["pseudo_labels"])
    return text


def pseudo_instances_section(data: Mapping[str, Any]) -> str:
    """Pseudo instance masks against the GT instances, no detector (``metrics/tables/pseudo_instances.csv``)."""
    rows = [r for r in data["tables"].get("pseudo_instances", []) if r.get("box_iou")]
    if not rows:
        return ""
    figures = ("box_iou", "iou_small", "iou_medium", "iou_large", "ap", "ap50", "ap75")
    heads = ["method", "mean IoU per box", "small", "medium", "large", "mask AP", "AP50", "AP75", "boxes"]
    rows = sorted(rows, key=lambda r: float(r["box_iou"]))
    text = ("## Pseudo instances against the ground-truth instances (train split, no detector)\n\n"
            "Each box's pseudo instance (what the `instances` stage writes from each method's labels) scored against "
            "the box's ground-truth instance: mean IoU per box, by COCO object size, and COCO mask AP with every box "
            "a detection of score 1.\n\n")
    return text + md_table(heads, [[r["method"], *(pct(r[f]) if r[f] != "" else "–" for f in figures), r["boxes"]]
                                   for r in rows])


def consistency_section(data: Mapping[str, Any]) -> str:
    checks = data["metrics"].get("consistency")
    if not checks:
        return ""
    return "## Consistency checking (Eq. 27–28, diagnostic against the ground truth)\n\n" + md_table(
        ["figure", "value"], [[k, v] for k, v in sorted(checks.items()) if v is not None])


def downstream_section(data: Mapping[str, Any]) -> str:
    seg, inst = downstream(data["metrics"])
    text = ""
    if seg:
        labels = list(next(iter(seg.values())))
        text += "## Segmentation (val split; paper: Table 1, DeepLab-ResNet101)\n\n" + md_table(
            ["trained on", "mIoU", "with CRF", "paper", "paper with CRF"],
            [[k, pct(seg.get("miou", {}).get(k)), pct(seg.get("miou_crf", {}).get(k)),
              paper(PAPER_SEGMENTATION.get(k, {}).get("miou")), paper(PAPER_SEGMENTATION.get(k, {}).get("miou_crf"))]
             for k in labels])
        if data["per_class"].get("deeplab"):
            text += "\nPer class (IoU):\n\n" + per_class_table(data["per_class"]["deeplab"])
        text += "\n"
    if inst:
        labels = list(next(iter(inst.values())))
        rank = {f: k for k, f in enumerate(HEADERS)}
        figures = [f for f in INSTANCE_FIGURES if f in inst]
        figures += sorted((f for f in inst if f not in INSTANCE_FIGURES), key=lambda f: (rank.get(f, len(rank)), f))
        text += "## Instance segmentation (val split; paper: Table 2, mAP^r)\n\n" + md_table(
            ["trained on", *(HEADERS.get(f, f) for f in figures), *(f"paper {HEADERS[f]}" for f in INSTANCE_FIGURES)],
            [[k, *(pct(inst[f].get(k)) for f in figures), *(paper(PAPER_INSTANCE.get(k, {}).get(f))
                                                              for f in INSTANCE_FIGURES)] for k in labels])
        table = data["tables"].get("instance")
        if table and "instance" not in data["metrics"]:  # the older metric files held mAP^r only
            columns = [c for c in table[0] if c != "name"]
            text += "\nAll figures (`metrics/tables/instance.csv`):\n\n" + md_table(
                ["trained on", *columns], [[r["name"], *(pct(r[c]) for c in columns)] for r in table])
        text += "\n"
    return text


def ablations_section(data: Mapping[str, Any]) -> str:
    text = "## Ablations (paper Table 4, Fig. 7, Table 5; pseudo-label train mIoU unless a table says otherwise)\n\n"
    if not data["ablations"]:
        return text + "No ablation table yet: `make table4a table4b table4d table4e fig7` runs them.\n"
    for result in data["ablations"].values():
        text += f"### {result['title']}\n\n" + format_table(result) + "\n"
    return text


def unavailable_section(data: Mapping[str, Any]) -> str:
    """Why some figures are '–' (e.g. boxes only: no ground truth to evaluate against)."""
    notes = data.get("unavailable") or {}
    if not notes:
        return ""
    return "## Not available\n\n" + "".join(f"- `{stem}`: {reason}\n" for stem, reason in sorted(notes.items()))


def build_markdown(data: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """The report; ``figures``: key of :data:`FIGURES` -> link relative to the report."""
    parts = ["# Results\n\nWritten by the `report` stage (`dvc repro report`) from the pipeline's metric files. "
             "Numbers in %; the paper's are PASCAL VOC 2012, ours are the configured dataset's.\n",
             unavailable_section(data), seeds_section(data), f"![seeds]({figures['seeds']})\n" if seed_rows(data) else "",
             pseudo_section(data), pseudo_instances_section(data), consistency_section(data), downstream_section(data),
             f"## Per-class IoU\n\n![per-class IoU]({figures['per_class']})\n",
             f"## Training curves\n\n![training curves]({figures['curves']})\n",
             ablations_section(data), f"![Fig. 7]({figures['fig7']})\n"]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


# --------------------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def save_figure(fig, path: Path) -> None:
    """PNG whose bytes depend only on the figure (Agg, fixed dpi, no metadata), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def placeholder(message: str):
    fig = _figure(6, 2)
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def curves_figure(curves: Mapping[str, Mapping[str, tuple[list, list]]]):
    metrics = sorted({m for run in curves.values() for m in run})
    if not metrics:
        return placeholder("no dvclive curves")
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(4 * cols, 3 * rows)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        for run, series in sorted(curves.items()):
            if metric in series:
                ax.plot(*series[metric], label=run, linewidth=1)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_class_figure(tables: Mapping[str, Sequence[Mapping[str, str]]]):
    tables = {k: v for k, v in tables.items() if v}
    if not tables:
        return placeholder("no per-class IoU tables")
    heights = [len(rows) * (len(rows[0]) - 1) for rows in tables.values()]
    fig = _figure(5 * len(tables), max(3.0, 0.12 * max(heights) + 1.5))
    for k, (name, rows) in enumerate(tables.items()):
        ax = fig.add_subplot(1, len(tables), k + 1)
        methods = [c for c in rows[0] if c != "class"]
        width = 0.8 / len(methods)
        for m, method in enumerate(methods):
            ys = [len(rows) - 1 - i + 0.4 - width * (m + 0.5) for i in range(len(rows))]
            # an empty cell: the class does not occur in that split (no IoU), drawn as no bar
            ax.barh(ys, [float(r[method]) if r[method] else 0.0 for r in rows], height=width, label=method)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r["class"] for r in reversed(rows)], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(methods), 5))
    fig.tight_layout()
    return fig


def seeds_figure(rows: Mapping[str, Mapping[str, Any]]):
    figures = [f for f in SEED_FIGURES if any(f in r for r in rows.values())]
    if not rows or not figures:
        return placeholder("no seed metrics")
    fig = _figure(7, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    names = list(rows)
    width = 0.8 / len(figures)
    for f, figure in enumerate(figures):
        xs = [i - 0.4 + width * (f + 0.5) for i in range(len(names))]
        ax.bar(xs, [float(rows[n].get(figure, 0) or 0) for n in names], width=width, label=figure)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1)
    ax.set_title("seeds on the train split", fontsize=9)
    ax.legend(fontsize=7, ncol=len(figures), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    return fig


def fig7_bars(result: Mapping[str, Any]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """{layer: {"ce" | "full": (ours, paper)}} of the fig7 table's rows (named <layer>-<ce|full>)."""
    bars: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for row in result["rows"]:
        layer, _, variant = row["name"].rpartition("-")
        bars.setdefault(layer, {})[variant] = (row.get("ours"), row.get("paper"))
    return bars


def fig7_figure(result: Mapping[str, Any] | None):
    if not result:
        return placeholder("Fig. 7: no results yet (run `make fig7`)")
    bars = fig7_bars(result)
    layers = list(bars)
    series = [("ce", 0, "ours, CE"), ("full", 0, "ours, full"), ("ce", 1, "paper, CE"), ("full", 1, "paper, full")]
    fig = _figure(7, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for s, (variant, which, label) in enumerate(series):
        xs, hs = [], []
        for i, layer in enumerate(layers):
            value = bars[layer].get(variant, (None, None))[which]
            if value is not None:
                xs.append(i - 0.4 + width * (s + 0.5))
                hs.append(value)
        drawn = ax.bar(xs, hs, width=width, label=label, hatch="//" if which else None, alpha=0.6 if which else 1.0)
        ax.bar_label(drawn, fmt="%.1f", fontsize=6)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([FIG7_LAYERS.get(k, k) for k in layers])
    ax.set_ylabel("pseudo-label mIoU (%)", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title("Fig. 7: GNN layers (ours: this dataset; paper: VOC train)", fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    fig.tight_layout()
    return fig


def write_figures(data: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    import matplotlib

    made = {"curves": lambda: curves_figure(data["curves"]), "per_class": lambda: per_class_figure(data["per_class"]),
            "seeds": lambda: seeds_figure(seed_rows(data)), "fig7": lambda: fig7_figure(data["ablations"].get("fig7"))}
    paths = {}
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # a user's matplotlibrc must not change the bytes
        for key, make in made.items():
            paths[key] = Path(folder) / FIGURES[key]
            save_figure(make(), paths[key])
    return paths


def write_report(out: Path, figures_dir: Path, **inputs: Any) -> None:
    """Read the inputs (see :func:`load_inputs`), write the figures under ``figures_dir`` and the report ``out``."""
    data = load_inputs(**inputs)
    paths = write_figures(data, figures_dir)
    links = {k: Path(os.path.relpath(p, Path(out).parent)).as_posix() for k, p in paths.items()}
    with atomic_file(out) as tmp:
        tmp.write_text(build_markdown(data, links))
