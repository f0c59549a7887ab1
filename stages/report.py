"""Write the results report (every table beside the paper's numbers) and its figures (DVC plots).

    python -m stages.report --out <md> --figures <dir> [--metrics <json> ...] [--per-class <csv> ...]
        [--tables <csv> ...] [--curves <dvclive plots dir> ...] [--ablations <dir>]

``--metrics``: metric JSONs named as the pipeline writes them (seeds_miou, seeds_precision, pseudo_labels,
consistency, segmentation / deeplab_miou*, instance / instance_ap*); ``--per-class``: per-class IoU CSVs;
``--tables``: metrics/tables CSVs (seeds, instance); ``--curves``: dvclive ``plots/metrics`` folders;
``--ablations``: the folder of ``python -m a2gnn.pipeline.ablations`` tables. The figures are the PNGs of
``a2gnn.reporting.report.FIGURES`` under ``--figures``. Params: base.
"""

from __future__ import annotations

from a2gnn.core.cli import run_stage, setup_stage, stage_parser
from a2gnn.reporting.report import write_report


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, metavar="md")
    parser.add_argument("--figures", required=True, metavar="dir")
    parser.add_argument("--metrics", nargs="+", default=[], metavar="json")
    parser.add_argument("--per-class", nargs="+", default=[], metavar="csv")
    parser.add_argument("--tables", nargs="+", default=[], metavar="csv")
    parser.add_argument("--curves", nargs="+", default=[], metavar="dir")
    parser.add_argument("--ablations", default=None, metavar="dir")
    args = parser.parse_args(argv)
    setup_stage(args)
    write_report(args.out, args.figures, metrics=args.metrics, per_class=args.per_class, tables=args.tables,
                 curves=args.curves, ablations=args.ablations)


if __name__ == "__main__":
    run_stage(main)
