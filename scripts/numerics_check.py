#!/usr/bin/env python
"""Does this CPU compute the bytes the committed results were made with? The first trained stage, twice.

Usage (from the repository root, after the README's set-up and ``make data``)::

    python scripts/numerics_check.py            # or: make numerics-check
    python scripts/numerics_check.py --record   # the reference machine: write scripts/numerics_reference.json
    python scripts/numerics_check.py --lock dvc.lock --mode strict   # after `A2GNN_NUMERICS=strict dvc repro --force`

Runs the ``cam`` stage (the first stage whose output depends on floating-point kernels; its only input is the
embedded dataset, which ``make data`` regenerates byte for byte anywhere) into a scratch folder, once under the
default numerics pin and once under ``A2GNN_NUMERICS=strict`` (a2gnn/core/numerics.py), and compares a digest of
each output with the one recorded on the reference machine. Prints, per mode, the stage time and ``same bytes`` or
``other bytes``. ``same`` in the pinned mode means this machine reproduces ``dvc.lock`` from the CAM on; ``same``
only under strict means strict is what makes results portable to this CPU. Nothing in the repository changes
(except the reference file with ``--record``). About 4 minutes on 2 cores.

``--lock`` instead compares every output a whole run recorded in a ``dvc.lock`` with the reference machine's whole
run in that mode (``pinned_repro_outs``: the committed ``dvc.lock``; ``strict_repro_outs``: a run under
``A2GNN_NUMERICS=strict``), and lists the stages whose outputs differ; with ``--record`` it stores that lock's
outputs as the reference's run in that mode. ``<mode>_repro_matched_on`` lists the other CPUs whose whole run in
that mode gave every output the same bytes (written by hand after such a check).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "scripts" / "numerics_reference.json"
MODES = {"pinned": "", "strict": "strict"}
"""Mode name -> value of A2GNN_NUMERICS for the run ("" = the default pin)."""
SECTIONS = ("base", "dataset", "embedded", "cam")
"""params.yaml sections the cam stage's bytes depend on (a changed one makes the comparison meaningless)."""


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``root``, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def inputs_digest(root: Path) -> str:
    """What the cam stage reads: the params sections of :data:`SECTIONS` and the dataset folder."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    h = hashlib.sha256(json.dumps({s: params.get(s) for s in SECTIONS}, sort_keys=True).encode())
    h.update(tree_digest(root / params["dataset"]["root"]).encode())
    return h.hexdigest()


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, with whether it has AVX-512 (else the platform string)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in info.splitlines():  # the first processor's fields
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    avx512 = "AVX-512" if "avx512f" in fields.get("flags", "").split() else "no AVX-512"
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    return f"{fields.get('model name', '?')} (family {family} model {model}, {avx512})"


def run_cam(mode: str, out: Path) -> float:
    """The cam stage into ``out`` under ``A2GNN_NUMERICS=MODES[mode]``; returns its wall time in seconds."""
    env = dict(os.environ, A2GNN_NUMERICS=MODES[mode], PYTHONHASHSEED="0")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["dataset"]["root"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stages.cam", data, str(out / "cam"), "--checkpoints", str(out / "ckpt")],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def verdict(found: dict, reference: dict | None) -> list[str]:
    """One line per mode: time, digest prefix, and same / other bytes than the reference (or no reference)."""
    lines = []
    for mode, result in found["modes"].items():
        ref = (reference or {}).get("modes", {}).get(mode)
        if ref is None:
            word = "no reference"
        elif reference.get("inputs") != found["inputs"]:
            word = "not comparable: params or data differ from the reference's"
        else:
            word = "same bytes" if ref["digest"] == result["digest"] else "other bytes"
        lines.append(f"{mode:7s} {result['seconds']:7.1f} s  {result['digest'][:12]}  {word}")
    return lines


def lock_outs(lock: dict) -> dict[str, dict[str, str]]:
    """``{stage: {output path: md5}}`` of a parsed ``dvc.lock``."""
    return {name: {o["path"]: o["md5"] for o in spec.get("outs", [])}
            for name, spec in lock["stages"].items() if spec.get("outs")}


def lock_differences(found: dict[str, dict[str, str]], reference: dict[str, dict[str, str]]) -> list[str]:
    """Stages (in the reference's order) whose recorded outputs differ from the reference's, or are missing."""
    return [name for name, outs in reference.items() if found.get(name) != outs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {REFERENCE.relative_to(ROOT)} from this machine")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    parser.add_argument("--lock", help="compare this dvc.lock's outputs with the reference's whole run instead")
    parser.add_argument("--mode", choices=sorted(MODES), default="pinned", help="--lock: the mode it was made in")
    args = parser.parse_args(argv)
    reference = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else None
    if args.lock:
        outs = lock_outs(yaml.safe_load(Path(args.lock).read_text()))
        if args.record:  # the reference machine, after a whole run in this mode
            REFERENCE.write_text(json.dumps({**(reference or {}), f"{args.mode}_repro_outs": outs}, indent=1) + "\n")
            print(f"wrote {args.mode}_repro_outs to {REFERENCE.relative_to(ROOT)}")
            return 0
        differ = lock_differences(outs, reference[f"{args.mode}_repro_outs"])
        print(f"reference CPU: {reference['cpu']}; {args.mode} run")
        for cpu in reference.get(f"{args.mode}_repro_matched_on", []):
            print(f"  the same run matched it on: {cpu}")
        print(f"stages with other bytes: {', '.join(differ)}" if differ else "every output: same bytes")
        return 0
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if not (ROOT / params["dataset"]["root"]).is_dir():
        print(f"error: {ROOT / params['dataset']['root']}: no dataset; run `make data` first", file=sys.stderr)
        return 1
    found = {"cpu": cpu_name(), "inputs": inputs_digest(ROOT), "modes": {}}
    scratch = Path(tempfile.mkdtemp(prefix="numerics_check_"))
    try:
        for mode in args.modes:
            seconds = run_cam(mode, scratch / mode)
            found["modes"][mode] = {"digest": tree_digest(scratch / mode / "cam"), "seconds": round(seconds, 1)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"this CPU: {found['cpu']}")
    if reference is not None:
        print(f"reference CPU: {reference['cpu']}")
    print("\n".join(verdict(found, reference)))
    if args.record:  # the committed dvc.lock's outputs are the pinned whole run; a strict one recorded for another
        pinned = lock_outs(yaml.safe_load((ROOT / "dvc.lock").read_text()))  # lock no longer belongs: dropped
        kept = {} if reference is None or reference.get("pinned_repro_outs") != pinned else {
            k: v for k, v in reference.items() if k.startswith("strict_repro_")}
        REFERENCE.write_text(json.dumps({**found, "pinned_repro_outs": pinned, **kept}, indent=1) + "\n")
        print(f"wrote {REFERENCE.relative_to(ROOT)}" + ("" if kept or reference is None else
              "; dvc.lock changed, so the strict whole run's outputs were dropped (record them with --lock)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
