"""dvc.yaml and params.yaml tell the truth.

* every stage declares its script, every package module the script imports (transitively, found from the
  source), every data path of its cmd, and exactly the params sections it parses (never ``runtime``);
* params.yaml lists every field of every config, and the dataclass defaults equal params.yaml's values;
* the checker itself catches a missing module, an undeclared section and a declared ``runtime``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
import yaml

import a2gnn
from a2gnn.core.config import Config
from a2gnn.pipeline.stage_deps import import_closure, params_read, stage_problems

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_stage_declares_what_it_reads():
    problems = {name: found for name, found in stage_problems(ROOT, DVC_YAML, PARAMS).items() if found}
    assert not problems, yaml.safe_dump(problems)


def test_closure_follows_imports_inside_functions_and_packages(tmp_path):
    (tmp_path / "a2gnn" / "sub").mkdir(parents=True)
    (tmp_path / "a2gnn" / "__init__.py").write_text("")
    (tmp_path / "a2gnn" / "sub" / "__init__.py").write_text("from a2gnn.sub.inner import f\n")
    (tmp_path / "a2gnn" / "sub" / "inner.py").write_text("def f():\n    from a2gnn import lazy\n")
    (tmp_path / "a2gnn" / "lazy.py").write_text("import numpy\n")
    (tmp_path / "a2gnn" / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("import os\nfrom a2gnn.sub import f\n")
    found = {p.as_posix() for p in import_closure(script, tmp_path)}
    assert found == {"a2gnn/__init__.py", "a2gnn/sub/__init__.py", "a2gnn/sub/inner.py", "a2gnn/lazy.py"}


def test_params_read_finds_get_and_subscript(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text('def main(params):\n    a = params.get("gnn")\n    b = params["crf"]\n    c = other.get("x")\n')
    assert params_read(script) == {"gnn", "crf", "base"}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s["pseudo_labels"]["deps"].remove("stages/pseudo_labels.py"), "missing dep stages/pseudo_labels.py"),
        (lambda s: s["pseudo_labels"]["params"].remove("gnn"), "reads params section 'gnn'"),
        (lambda s: s["pseudo_labels"]["params"].append("runtime"), "declares the 'runtime' section"),
        (lambda s: s["baseline"]["params"].append("gnn"), "declares params 'gnn'"),
        (lambda s: s["baseline"]["deps"].remove("outputs/cam"), "cmd path outputs/cam is neither"),
        (lambda s: s["baseline"].update(cmd=s["baseline"]["cmd"].replace("-m stages.baseline", "stages/baseline.py")),
         "as `python -m stages.<name>`"),
    ],
)
def test_checker_catches_a_lie(mutate, expected):
    broken = copy.deepcopy(DVC_YAML)
    mutate(broken["stages"])
    found = [p for problems in stage_problems(ROOT, broken, PARAMS).values() for p in problems]
    assert any(expected in p for p in found), found


def test_checker_catches_an_unlisted_module(tmp_path):
    """A module imported only by another imported module must be declared too."""
    spec = copy.deepcopy(DVC_YAML["stages"]["baseline"])
    spec["deps"] = [d for d in spec["deps"] if d != "a2gnn/seeds/scores.py"]
    found = stage_problems(ROOT, {"stages": {"baseline": spec}}, PARAMS)["baseline"]
    assert any("missing dep a2gnn/seeds/scores.py" in p for p in found), found


# --------------------------------------------------------------------------------------------------------------
# params.yaml is the single source of every config field
# --------------------------------------------------------------------------------------------------------------


def _all_configs() -> list[type[Config]]:
    for info in pkgutil.walk_packages(a2gnn.__path__, "a2gnn."):
        importlib.import_module(info.name)
    found, frontier = [], list(Config.__subclasses__())
    while frontier:
        cls = frontier.pop()
        if cls.__module__.startswith("a2gnn."):  # not the configs tests define
            found.append(cls)
        frontier.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.SECTION)


NESTED = {"backbone", "optim"}  # configs that only appear inside another section
SECTION_CONFIGS = [c for c in _all_configs() if c.SECTION not in NESTED | {"?"}]


def _compare(default: Config, section: dict, where: str) -> list[str]:
    """Differences between a config's default instance and its params.yaml section (recursing into nested ones)."""
    problems = []
    for field in dataclasses.fields(default):
        key = f"{where}.{field.name}"
        if field.name not in section:
            problems.append(f"{key} is a config field but not in params.yaml")
            continue
        value, want = section[field.name], getattr(default, field.name)
        if isinstance(want, Config):
            problems += _compare(want, value or {}, key)
            continue
        if (list(want) if isinstance(want, tuple) else want) != value:
            problems.append(f"{key}: dataclass default {want!r} != params.yaml {value!r}")
    return problems


def test_every_section_has_a_config():
    sections = {c.SECTION for c in SECTION_CONFIGS}
    assert set(PARAMS) == sections, set(PARAMS) ^ sections


@pytest.mark.parametrize("cls", SECTION_CONFIGS, ids=lambda c: c.SECTION)
def test_params_yaml_lists_every_field_with_the_dataclass_default(cls):
    problems = _compare(cls(), PARAMS.get(cls.SECTION, {}), cls.SECTION)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("cls", SECTION_CONFIGS, ids=lambda c: c.SECTION)
def test_params_yaml_parses(cls):
    cls.from_params(PARAMS.get(cls.SECTION))


def test_no_module_outside_the_stages_reads_params():
    """Stages parse params and hand typed configs to the package; a module reading params.yaml would be
    invisible to the params check."""
    offenders = []
    for path in (ROOT / "a2gnn").rglob("*.py"):
        if path.name in ("config.py", "cli.py", "stage_deps.py", "embedded.py"):  # the loaders themselves
            continue
        text = path.read_text()
        if 'params.get("' in text or "load_params(" in text:
            offenders.append(path.relative_to(ROOT).as_posix())
    assert not offenders


def test_dvc_metrics_show_fits_120_columns():
    """`dvc metrics show` on the committed metrics (issue 18's bar): the widest printed row is at most 120 columns."""
    import os
    import shutil
    import subprocess
    import sys

    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed")
    env = {**os.environ, "COLUMNS": "400"}  # as wide as it wants: the table itself must be narrow
    out = subprocess.run([dvc, "metrics", "show"], cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) >= 6 and lines[0].startswith("Path")
    assert max(len(line.rstrip()) for line in lines) <= 120, out.stdout
