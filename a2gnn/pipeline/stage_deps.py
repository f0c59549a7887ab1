"""What a DVC stage really reads: the package modules its script imports and the params sections it parses.

``dvc.yaml`` must declare, for every stage, its script, every module of the package that the script imports
(directly or through other modules, including imports inside functions and the packages' ``__init__``), every
data path of its ``cmd`` that is not an output, and exactly the params sections its script reads. This module
computes those from the source (``ast``, nothing is imported or run) and compares them with ``dvc.yaml``:

    python -m a2gnn.stage_deps            # prints what each stage must declare and any mismatch; exit 1 on one
    python -m a2gnn.stage_deps --write    # rewrites the code deps (script + package modules) in dvc.yaml

Each stage's ``cmd`` runs one stage script as a module, ``python -m stages.<name> ...`` (see :data:`STAGE_MODULE`).

``tests/pipeline/test_dvc_truth.py`` runs the same check. Params sections are found as ``params.get("<section>")`` /
``params["<section>"]`` in the stage script (stages are the only place params are parsed); the ``runtime``
section (speed knobs that do not change results) is read by every stage and must never be declared.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

PACKAGE = "a2gnn"
RUNTIME_SECTION = "runtime"  # read by every stage, never a DVC param dependency
SETUP_SECTIONS = ("base",)  # read by a2gnn.core.cli.setup_stage for every stage (the seed)
UNTRACKED = "checkpoints"  # resume state of interrupted trainings: deliberately neither a dep nor an output
_TEMPLATE = re.compile(r"\$\{([^}]+)\}")
STAGE_MODULE = re.compile(r"stages\.\w+")
"""How a ``cmd`` names its stage: ``python -m stages.<name>``. Run as a module, the stage imports the ``a2gnn`` of the
folder DVC runs it in (the working directory comes first on ``sys.path``). ``python stages/<name>.py`` would put
``stages/`` there instead, and an editable install of another checkout, or the workspace's when DVC runs a queued
experiment in a temporary copy, would supply the package while ``dvc.lock`` hashes this folder's files."""


def script_path(module: str) -> str:
    """``stages.cam`` -> ``stages/cam.py``: the stage script a ``python -m`` module name runs."""
    return module.replace(".", "/") + ".py"


def module_path(root: Path, name: str) -> Path | None:
    """File of module ``name`` (dotted) under ``root``: ``a/b.py`` or ``a/b/__init__.py``; None if absent."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the package modules that ``path`` imports (anywhere in the file), parents included.

    ``from a2gnn.x import y`` counts ``a2gnn.x`` and, when ``y`` is itself a module, ``a2gnn.x.y``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == PACKAGE:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    with_parents = set()
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return with_parents


def import_closure(script: Path, root: Path) -> set[Path]:
    """Package files (relative to ``root``) that running ``script`` imports, transitively."""
    seen: set[Path] = set()
    frontier = [script]
    while frontier:
        for name in _imported_modules(frontier.pop()):
            path = module_path(root, name)
            if path is not None and path not in seen:
                seen.add(path)
                frontier.append(path)
    return {p.relative_to(root) for p in seen}


def params_read(script: Path) -> set[str]:
    """Params sections a stage script parses: literal keys of ``params.get(...)`` / ``params[...]``."""
    tree = ast.parse(script.read_text(), filename=str(script))
    found: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "params" and node.args
                and isinstance(node.args[0], ast.Constant)):
            found.add(str(node.args[0].value))
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "params"
              and isinstance(node.slice, ast.Constant)):
            found.add(str(node.slice.value))
    return found | set(SETUP_SECTIONS)


def render(value: str, params: Mapping[str, Any]) -> str:
    """Substitute ``${a.b}`` templates in a dvc.yaml string with values from params."""

    def lookup(match: re.Match) -> str:
        node: Any = params
        for key in match.group(1).strip().split("."):
            node = node[key]
        return str(node)

    return _TEMPLATE.sub(lookup, value)


def _names(entries: Iterable[Any]) -> list[str]:
    return [next(iter(e)) if isinstance(e, Mapping) else str(e) for e in entries or []]


def stage_problems(root: Path, dvc_yaml: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per stage, what ``dvc.yaml`` gets wrong (empty lists when it tells the truth)."""
    problems: dict[str, list[str]] = {}
    for name, spec in dvc_yaml["stages"].items():
        found: list[str] = []
        cmd = render(" ".join(spec["cmd"].split()), params)
        deps = [render(d, params).rstrip("/") for d in _names(spec.get("deps"))]
        outs = [render(o, params).rstrip("/") for key in ("outs", "metrics", "plots") for o in _names(spec.get(key))]
        words = cmd.split()
        modules = [k for k, w in enumerate(words[:-1]) if w == "-m" and STAGE_MODULE.fullmatch(words[k + 1])]
        if len(modules) != 1 or any(w.startswith("stages/") for w in words):
            problems[name] = [f"cmd should run exactly one stage module, as `python -m stages.<name>`: {cmd!r}"]
            continue
        scripts = [script_path(words[modules[0] + 1])]
        script = root / scripts[0]
        code = {scripts[0], *(p.as_posix() for p in import_closure(script, root))}
        code_deps = {d for d in deps if d.startswith("stages/") or d.split("/")[0] == PACKAGE}

        def covered(path: str) -> bool:
            return any(path == d or path.startswith(d + "/") for d in code_deps)

        found += [f"missing dep {p} (imported)" for p in sorted(code) if not covered(p)]
        for dep in sorted(code_deps):
            inside = [p for p in code if p == dep or p.startswith(dep + "/")]
            if not inside:
                found.append(f"dep {dep} is not imported by {scripts[0]}")
            elif (root / dep).is_dir():
                unused = sorted(p.relative_to(root).as_posix() for p in (root / dep).rglob("*.py")
                                if p.relative_to(root).as_posix() not in code)
                if unused:
                    found.append(f"dep folder {dep} holds modules {scripts[0]} does not import: {unused}")
        data_deps = [d for d in deps if d not in code_deps]
        for word in words[modules[0] + 2:]:
            arg = word.split("=", 1)[-1].rstrip("/")
            if word.startswith("-") or not (root / arg).exists() and "/" not in arg:
                continue
            if arg.split("/")[0] == UNTRACKED:
                continue
            produced = any(o == arg or o.startswith(arg + "/") for o in outs)
            if arg not in data_deps and not produced:
                found.append(f"cmd path {arg} is neither a dep nor an output")
        found += [f"dep {d} is not a path in the cmd" for d in data_deps if d not in words
                  and not any(w.endswith("=" + d) for w in words)]
        declared = [render(p, params) for p in _names(spec.get("params"))]
        sections = {p.split(".")[0] for p in declared}
        read = params_read(script)
        found += [f"reads params section {s!r} but does not declare it" for s in sorted(read - sections - {RUNTIME_SECTION})]
        found += [f"declares params {s!r} that {scripts[0]} does not read" for s in sorted(sections - read)]
        if RUNTIME_SECTION in sections:
            found.append(f"declares the {RUNTIME_SECTION!r} section (speed knobs must not rerun stages)")
        problems[name] = found
    return problems


def rewrite_code_deps(text: str, root: Path) -> str:
    """dvc.yaml text with each stage's code deps replaced by its script and import closure (comments kept).

    Code deps are the ``      - stages/...`` and ``      - a2gnn/...`` lines of a stage's ``deps:`` list; the
    new ones go first, in sorted order, the data deps stay as they were.
    """
    out: list[str] = []
    lines = text.splitlines()
    script = None
    k = 0
    while k < len(lines):
        line = lines[k]
        match = re.search(r"python -m (stages\.\w+)", line)
        if match:
            script = script_path(match.group(1))
        out.append(line)
        if line.strip() == "deps:" and script is not None:
            indent = line[: len(line) - len(line.lstrip())] + "  "
            k += 1
            data = []
            while k < len(lines) and lines[k].startswith(indent + "- "):
                entry = lines[k].strip()[2:]
                if not (entry.startswith("stages/") or entry.split("/")[0] == PACKAGE):
                    data.append(lines[k])
                k += 1
            closure = sorted(p.as_posix() for p in import_closure(root / script, root))
            out += [f"{indent}- {script}"] + [f"{indent}- {p}" for p in closure] + data
            script = None
            continue
        k += 1
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    if "--write" in argv:
        (root / "dvc.yaml").write_text(rewrite_code_deps((root / "dvc.yaml").read_text(), root))
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    bad = 0
    for name, spec in dvc_yaml["stages"].items():
        words = spec["cmd"].split()
        script = script_path(next(w for w in words if STAGE_MODULE.fullmatch(w)))
        closure = sorted(p.as_posix() for p in import_closure(root / script, root))
        print(f"{name}: {script} imports {closure}; reads params {sorted(params_read(root / script))}")
    for name, found in stage_problems(root, dvc_yaml, params).items():
        for problem in found:
            print(f"  {name}: {problem}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
