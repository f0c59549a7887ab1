"""The paper's ablations (Table 4, Fig. 7) as named DVC experiments, printed beside the paper's numbers.

    python -m a2gnn.pipeline.ablations <table> [...]            # collect the experiments by name, print + write the table
    python -m a2gnn.pipeline.ablations <table> --run [--jobs N]  # queue every row, run the queue, then collect
    python -m a2gnn.pipeline.ablations <table> --queue           # only queue them (then `dvc queue start`)
    python -m a2gnn.pipeline.ablations <table> --dry             # the `dvc exp run` commands and the stages each row reruns
    python -m a2gnn.pipeline.ablations --list                    # the tables and their rows

``<table>``: one of :data:`TABLES` or ``all``. Each row is one experiment named ``<table>-<row>`` (``dvc exp run
--queue -n table4b-ce-mp -S gnn.use_reg=false ...``); rows with no switch are the default run itself (read from
the baseline commit, no experiment) and rows whose switch does not exist yet have ``overrides=None`` and are
printed as "not implemented". Every row's number is the pseudo-label mIoU on the train split
(``metrics/pseudo_labels.json``, key ``a2gnn`` unless the row says ``rw`` / ``baseline``), in %, as the paper's.

By default an experiment reproduces only what that metric needs (target ``evaluate_pseudo_labels`` and its
upstream), so a GNN-only row reruns ``pseudo_labels`` and ``evaluate_pseudo_labels`` and reuses the cached CAM,
GrabCut, seeds and affinity stages (``--dry`` prints this per row, computed from ``dvc.yaml``'s params deps);
``--full`` runs the whole pipeline per row. Rows of different tables with the same switches reuse each other's
results through DVC's run cache when the queue runs them one at a time (``--jobs 1``, the default).

Results go to ``metrics/ablations/<table>.md`` and ``<table>.json`` (committed to git; the ``report`` stage
reads the JSON). Experiments are looked up among those of the current baseline commit (``dvc exp show``; after
``--run``, of the commit they were queued on, even if a commit was made meanwhile); ``--all-commits`` looks at
every commit's. Collecting without any experiment of a table found keeps an existing
JSON (``--write`` overwrites it anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from a2gnn.pipeline.ablation_rows import METRIC_FILE, TABLES, TARGET, Row, row_metric
from a2gnn.pipeline.reruns import stage_targets, lookup, stages_to_rerun

OUT_DIR = Path("metrics/ablations")
NOT_IMPLEMENTED = "not implemented"
DEFAULT_RUN = "default run"


# --------------------------------------------------------------------------------------------------------------
# rows -> commands
# --------------------------------------------------------------------------------------------------------------


def experiment_name(table: str, row: Row) -> str:
    return f"{table}-{row.exp or row.name}"


def format_value(value: Any) -> str:
    """A params value as `-S key=value` text (parsed as YAML by DVC)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def switches(row: Row) -> str:
    if row.overrides is None:
        return NOT_IMPLEMENTED
    if not row.overrides:
        return DEFAULT_RUN
    return " ".join(f"{key}={format_value(value)}" for key, value in row.overrides.items())


def queue_command(table: str, row: Row, target: str | Sequence[str] | None = TARGET) -> list[str]:
    """``dvc`` arguments that queue the row's experiment (empty for the default run and unimplemented rows)."""
    if not row.overrides:
        return []
    cmd = ["exp", "run", "--queue", "-n", experiment_name(table, row)]
    for key, value in row.overrides.items():
        cmd += ["-S", f"{key}={format_value(value)}"]
    return cmd + stage_targets(target)


# --------------------------------------------------------------------------------------------------------------
# which stages a row reruns (from dvc.yaml's params deps and templated paths)
# --------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------
# dvc exp show --json -> one record per experiment name
# --------------------------------------------------------------------------------------------------------------


def _record(entry: Mapping[str, Any], state: str) -> dict[str, Any]:
    data = entry.get("data") or {}
    metrics = {path: (m or {}).get("data") or {} for path, m in (data.get("metrics") or {}).items()}
    values = {path: (p or {}).get("data") or {} for path, p in (data.get("params") or {}).items()}
    if entry.get("error") and state == "success":
        state = "failed"
    return {"rev": entry.get("rev"), "state": state, "metrics": metrics, "params": values.get("params.yaml", {})}


def parse_exp_show(show: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """(the default run, {experiment name: record}) from ``dvc exp show --json``.

    The default run is the first baseline commit (HEAD) that has metrics, else the workspace. A record holds the
    experiment's state (success | queued | running | failed), its metrics {file: data} and params.yaml values.
    """
    default, workspace, experiments = None, None, {}
    for entry in show:
        if entry.get("rev") == "workspace":
            workspace = _record(entry, "success")
            continue
        record = _record(entry, "success")
        if default is None and record["metrics"]:
            default = record
        for exp in entry.get("experiments") or []:
            state = ((exp.get("executor") or {}).get("state") or "success").lower()
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name")
                if name and name not in experiments:
                    experiments[name] = _record(rev, state)
    return default or workspace, experiments


def exp_show(all_commits: bool = False, run: Callable[..., str] | None = None,
             rev: str | None = None) -> list[dict[str, Any]]:
    """``dvc exp show --json`` of HEAD, of every commit (``all_commits``) or of the baseline commit ``rev``."""
    args = ["--all-commits"] if all_commits else ["--rev", rev] if rev else []
    out = (run or run_dvc)(["exp", "show", "--json"] + args, capture=True)
    return json.loads(out[out.index("["):]) if "[" in out else []


# --------------------------------------------------------------------------------------------------------------
# results and the Markdown table
# --------------------------------------------------------------------------------------------------------------


def _percent(value: Any) -> float | None:
    return round(100.0 * float(value), 2) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def row_result(table: str, row: Row, default: Mapping[str, Any] | None,
               experiments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One row's result: the row's definition plus ``ours`` (%, or None) and its ``state``."""
    result = {"name": row.name, "label": row.label, "switches": switches(row), "paper": row.paper,
              "overrides": None if row.overrides is None else dict(row.overrides),
              "metric": ":".join(row_metric(TABLES[table], row)), "note": row.note, "ours": None,
              "experiment": experiment_name(table, row) if row.overrides else None}
    if row.overrides is None:
        result["state"] = NOT_IMPLEMENTED
        return result
    record = default if not row.overrides else experiments.get(experiment_name(table, row))
    if record is None:
        result["state"] = "not run"
        return result
    result["state"] = DEFAULT_RUN if not row.overrides else record["state"]
    differ = [f"{k}={format_value(lookup_or(record['params'], k))}" for k, v in row.overrides.items()
              if lookup_or(record["params"], k) != v]
    if differ and record["params"]:
        result["state"] = "params differ: " + " ".join(differ)  # an older experiment of that name
        return result
    if result["state"] in ("success", DEFAULT_RUN):
        file, key = row_metric(TABLES[table], row)
        result["ours"] = _percent(lookup_or(record["metrics"].get(file, {}), key))
    return result


def lookup_or(tree: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    try:
        return lookup(tree, dotted)
    except KeyError:
        return default


def collect(table: str, default: Mapping[str, Any] | None, experiments: Mapping[str, Mapping[str, Any]]) -> dict:
    """A table's machine-readable result (what ``metrics/ablations/<table>.json`` holds)."""
    spec = TABLES[table]
    return {"table": table, "title": spec.title, "paper_metric": spec.paper_metric, "metric": spec.metric,
            "metric_file": spec.metric_file,
            "rows": [row_result(table, row, default, experiments) for row in spec.rows]}


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown table of a collected result, in the paper's row order: row | switches | paper | ours | note."""
    lines = ["| row | switches (`-S`) | paper (%) | ours (%) | note |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        ours = _cell(row["ours"]) if row["ours"] is not None else row["state"]
        sw = row["switches"] if row["switches"] in (NOT_IMPLEMENTED, DEFAULT_RUN) else f"`{row['switches']}`"
        file, _, key = row["metric"].rpartition(":")
        default = file == result.get("metric_file", METRIC_FILE) and key == "a2gnn"
        where = key if file == result.get("metric_file", METRIC_FILE) else row["metric"]
        note = "; ".join(n for n in ("" if default else f"ours: `{where}`", row["note"]) if n)
        lines.append(f"| {row['label']} | {sw} | {_cell(row['paper'])} | {ours} | {note} |")
    return "\n".join(lines) + "\n"


def format_markdown(result: Mapping[str, Any]) -> str:
    return (f"## {result['title']}\n\npaper: {result['paper_metric']}; ours: {result['metric']} "
            f"(`{result.get('metric_file', METRIC_FILE)}`), written by `python -m a2gnn.pipeline.ablations {result['table']}`.\n\n"
            + format_table(result))


def write_result(result: Mapping[str, Any], out_dir: Path = OUT_DIR) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{result['table']}.md", out_dir / f"{result['table']}.json"
    md.write_text(format_markdown(result))
    js.write_text(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return md, js


# --------------------------------------------------------------------------------------------------------------
# running dvc
# --------------------------------------------------------------------------------------------------------------


def _dvc() -> str:
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


LOCK_RETRIES = 60  # a running queue worker holds the repo lock for moments: retry a locked command this often
LOCK_WAIT_S = 5.0
LOCKED = ("Unable to acquire lock", "is being blocked by")  # what dvc says when another dvc process holds the repo


def run_dvc(args: list[str], capture: bool = False) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONHASHSEED="0")
    print("+ dvc " + " ".join(args), file=sys.stderr)
    for _ in range(LOCK_RETRIES):
        proc = subprocess.run([_dvc(), *args], env=env, text=True, stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE)
        if proc.returncode == 0 or not any(msg in (proc.stderr or "") for msg in LOCKED):
            break
        time.sleep(LOCK_WAIT_S)
    sys.stderr.write(proc.stderr or "")
    if proc.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed ({proc.returncode})")
    return proc.stdout or ""


def run_table(tables: Sequence[str], jobs: int, target: str | None, run: Callable[..., str] = run_dvc,
              start: bool = True) -> None:
    """Queue every implemented, non-default row of ``tables`` (replacing experiments of the same names), run them
    (``start=False``: leave them queued, for ``dvc queue start`` or a worker that is already running)."""
    rows, seen = [], set()
    for table, row in ((t, r) for t in tables for r in TABLES[t].rows if r.overrides):
        if experiment_name(table, row) not in seen:  # rows that share an experiment queue it once
            seen.add(experiment_name(table, row))
            rows.append((table, row))
    _, existing = parse_exp_show(exp_show(run=run))
    stale = sorted({experiment_name(t, r) for t, r in rows} & set(existing))
    if stale:
        run(["exp", "remove", *stale])
    for table, row in rows:
        run(queue_command(table, row, target and TABLES[table].target))
    if rows and start:
        run(["queue", "start", "--jobs", str(jobs)])  # detached workers: the repo stays unlocked for more queueing
        wait_for(sorted(seen), run)


def git_head() -> str | None:
    """The checked-out commit (the baseline of experiments queued now), or None outside a git repository."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], text=True, capture_output=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


POLL_S = 30.0
PENDING = ("Queued", "Running")


def pending(status: str, names: Iterable[str]) -> set[str]:
    """Names among ``names`` that ``dvc queue status`` lists as queued or running."""
    wanted = set(names)
    found = set()
    for line in status.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in wanted and any(state in parts for state in PENDING):
            found.add(parts[1])
    return found


def wait_for(names: Sequence[str], run: Callable[..., str] = run_dvc, poll_s: float = POLL_S) -> None:
    """Block until none of the experiments ``names`` is queued or running (they run in the queue's workers)."""
    while True:
        left = pending(run(["queue", "status"], capture=True), names)
        if not left:
            return
        print(f"waiting for {len(left)} experiment(s): {', '.join(sorted(left))}", file=sys.stderr)
        time.sleep(poll_s)


def check_rows(values: Mapping[str, Any]) -> list[str]:
    """Override keys of the registry that params.yaml does not have."""
    return [f"{t}/{r.name}: {key}" for t, spec in TABLES.items() for r in spec.rows for key in (r.overrides or {})
            if lookup_or(values, key, KeyError) is KeyError]


def dry_run(tables: Sequence[str], root: Path, target: str | None) -> str:
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    values = yaml.safe_load((root / "params.yaml").read_text())
    lines = []
    for table in tables:
        lines.append(f"# {table}: {TABLES[table].title}")
        for row in TABLES[table].rows:
            name = experiment_name(table, row)
            if row.overrides is None:
                lines.append(f"{name}: {NOT_IMPLEMENTED}")
            elif not row.overrides:
                lines.append(f"{name}: {DEFAULT_RUN} (reads {':'.join(row_metric(TABLES[table], row))} of the "
                             f"baseline commit)")
            else:
                own = target and TABLES[table].target
                rerun = stages_to_rerun(dvc_yaml, values, row.overrides, own)
                order = list(dvc_yaml["stages"])
                lines.append("dvc " + " ".join(queue_command(table, row, own)))
                lines.append(f"    reruns: {', '.join(sorted(rerun, key=order.index))}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", metavar="table", help=f"{', '.join(TABLES)} or all")
    parser.add_argument("--run", action="store_true", help="queue and run the rows' experiments, then collect")
    parser.add_argument("--queue", action="store_true", help="only queue the rows (run later: dvc queue start)")
    parser.add_argument("--dry", action="store_true", help="print the commands and the stages each row reruns")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="experiments run at a time (default 1)")
    parser.add_argument("--full", action="store_true",
                        help=f"run the whole pipeline per row (default: the table's target, mostly {TARGET})")
    parser.add_argument("--all-commits", action="store_true", help="collect experiments of every commit")
    parser.add_argument("--write", action="store_true", help="write the table even if no experiment was found")
    parser.add_argument("--list", action="store_true", help="print the tables and their rows")
    args = parser.parse_args(argv)
    if args.list:
        for table, spec in TABLES.items():
            print(f"{table}: {spec.title}")
            for row in spec.rows:
                print(f"  {experiment_name(table, row)}: {row.label} [{switches(row)}] paper {_cell(row.paper)}")
        return 0
    tables = list(TABLES) if args.tables == ["all"] else args.tables
    unknown = [t for t in tables if t not in TABLES]
    if not tables or unknown:
        parser.error(f"tables: {', '.join(TABLES)} or all (got {unknown or 'none'})")
    root = Path.cwd()
    missing = check_rows(yaml.safe_load((root / "params.yaml").read_text()))
    if missing:
        print("override keys not in params.yaml: " + ", ".join(missing), file=sys.stderr)
        return 1
    target = None if args.full else TARGET
    if args.dry:
        print(dry_run(tables, root, target), end="")
        return 0
    if args.queue:
        run_table(tables, args.jobs, target, start=False)
        return 0
    baseline = None
    if args.run:
        baseline = None if args.all_commits else git_head()  # the queue's baseline, even if HEAD moves meanwhile
        run_table(tables, args.jobs, target)
    default, experiments = parse_exp_show(exp_show(args.all_commits, rev=baseline))
    for table in tables:
        result = collect(table, default, experiments)
        print(format_markdown(result))
        found = any(r["experiment"] and r["state"] != "not run" for r in result["rows"])
        existing = OUT_DIR / f"{table}.json"
        if not (found or args.run or args.write) and existing.exists():
            print(f"(no experiment of {table} found: kept {existing}; --write overwrites it)\n", file=sys.stderr)
            continue
        for path in write_result(result):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
