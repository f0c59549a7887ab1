"""The default run beside experiments, in a terminal: only the params that differ and the headline metrics.

    python -m a2gnn.pipeline.compare [NAME ...] [--width 120] [--all-commits]      (make compare [EXPS="a b"])

``dvc exp show`` lists every param of params.yaml and every metric (thousands of columns). This prints one row per
run: the default run (HEAD) first, then the experiments (all of HEAD's, or the ``NAME``s), with the headline
metrics in % (:data:`HEADLINE`: A²GNN / RW / Baseline / GrabCut pseudo-label mIoU, DeepLab with CRF, Mask R-CNN
mAP^r 0.5) and then one column per param that differs between them (its shortest unambiguous dotted tail; the
default's value in the first row). Metrics that no run has are left out; a metric a run has not computed is '-'.
Lines are cut at ``--width`` (the params at the right edge go first).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Mapping, Sequence

from a2gnn.pipeline.ablations import exp_show, parse_exp_show

HEADLINE: tuple[tuple[str, str, str], ...] = (  # (column, metrics file, key)
    ("a2gnn", "metrics/pseudo_labels.json", "a2gnn"),
    ("rw", "metrics/pseudo_labels.json", "rw"),
    ("base", "metrics/pseudo_labels.json", "baseline"),
    ("grabcut", "metrics/pseudo_labels.json", "grabcut"),
    ("dl_crf", "metrics/deeplab_miou_crf.json", "*"),  # the model trained on the pseudo labels (key = its labels)
    ("ap50", "metrics/instance_ap50.json", "*"),
)
"""Headline figures; key ``*``: the file's one entry that is not ``gt`` (the model trained on pseudo labels)."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (lists stay values)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def headline(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """The :data:`HEADLINE` figures of one run's metrics ({file: data}), as fractions (None: not computed)."""
    out = {}
    for column, path, key in HEADLINE:
        data = metrics.get(path) or {}
        if key == "*":
            key = next((k for k in sorted(data) if k not in ("gt", "unavailable")), "")
        value = data.get(key)
        out[column] = float(value) if isinstance(value, (int, float)) else None
    return out


def comparison(default: Mapping[str, Any] | None, experiments: Mapping[str, Mapping[str, Any]],
               names: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the default run and the chosen experiments: differing params, then headline metrics."""
    chosen = [(n, experiments[n]) for n in (names or sorted(experiments)) if n in experiments]
    runs = ([("default", default)] if default else []) + chosen
    params = [flatten(r.get("params") or {}) for _, r in runs]
    keys = sorted({k for p in params for k in p})
    differ = [k for k in keys if len({repr(p.get(k)) for p in params}) > 1]
    figures = [headline(r.get("metrics") or {}) for _, r in runs]
    shown = [c for c, _, _ in HEADLINE if any(f[c] is not None for f in figures)]
    header = ["run", *shown, *short_names(differ)]
    rows = [[name, *(_pct(f[c]) for c in shown), *(_text(p.get(k)) for k in differ)]
            for (name, _), p, f in zip(runs, params, figures)]
    return header, rows


def short_names(keys: Sequence[str]) -> list[str]:
    """Each dotted key by its shortest unambiguous tail (``gnn.use_mp`` -> ``use_mp`` unless another key ends so)."""
    out = []
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
                break
        out.append(tail)
    return out


def render(header: Sequence[str], rows: Sequence[Sequence[str]], width: int = 120) -> str:
    """A space-aligned table whose lines are at most ``width`` characters."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (header, *rows)]
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{100 * value:.1f}"


def _text(value: Any) -> str:
    return "-" if value is None else str(value).replace(" ", "")


def main(argv: list[str] | None = None, run: Callable[..., str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments to show (default: all of HEAD's)")
    parser.add_argument("--width", type=int, default=120)
    parser.add_argument("--all-commits", action="store_true", help="experiments of every commit")
    args = parser.parse_args(argv)
    default, experiments = parse_exp_show(exp_show(args.all_commits, run=run))
    missing = [n for n in args.names if n not in experiments]
    if missing:
        parser.error(f"no experiment named {missing}; `dvc exp list` shows them")
    text = render(*comparison(default, experiments, args.names), width=args.width)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
