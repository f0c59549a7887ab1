"""a2gnn.core.cli: a stage runs the ``a2gnn`` of the folder it runs in (what ``dvc.lock`` hashes).

The hazard: ``python stages/<name>.py`` puts ``stages/`` first on ``sys.path``, so in a copy of the repository
(another clone, or the temporary folder of a queued ``dvc exp run``) an editable install of this checkout supplies
the package. Every ``dvc.yaml`` cmd is ``python -m stages.<name>``, which imports the copy's; ``setup_stage``
refuses the other case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from a2gnn.core.cli import check_package_origin
from a2gnn.core.io import DataError

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import a2gnn, pathlib; print(pathlib.Path(a2gnn.__file__).resolve().parent)\n"


def test_origin_check_passes_in_the_repository_and_outside_any(tmp_path):
    check_package_origin(ROOT)
    check_package_origin(tmp_path)  # no a2gnn/ here: nothing to compare with


def test_origin_check_refuses_a_copy_whose_package_is_not_imported(tmp_path):
    (tmp_path / "a2gnn").mkdir()
    (tmp_path / "a2gnn" / "__init__.py").write_text("")
    with pytest.raises(DataError, match="not the one imported") as err:
        check_package_origin(tmp_path)
    assert str(tmp_path / "a2gnn") in str(err.value)


@pytest.fixture
def copy_with_probe(tmp_path) -> Path:
    """A copy of a2gnn/ and stages/ with a probe stage printing where its a2gnn comes from."""
    for name in ("a2gnn", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "stages" / "where.py").write_text(PROBE)
    return tmp_path


def _where(args: list[str], cwd: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_module_form_imports_the_copys_package(copy_with_probe):
    """What dvc.yaml runs: ``python -m stages.<name>`` in the copy imports the copy's a2gnn."""
    assert _where(["-m", "stages.where"], copy_with_probe) == (copy_with_probe / "a2gnn").resolve()


def test_a_stage_run_by_path_from_a_copy_fails_clearly(copy_with_probe):
    """``python stages/grabcut.py`` in a copy: the package may come from elsewhere (this venv's editable install of
    the repository, when there is one); the stage then stops with one line naming the copy's package, before
    reading anything."""
    if _where(["stages/where.py"], copy_with_probe) == (copy_with_probe / "a2gnn").resolve():
        pytest.skip("this interpreter has no install of another checkout: the by-path form imports the copy too")
    proc = subprocess.run([sys.executable, "stages/grabcut.py", "data", "out"], cwd=copy_with_probe,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "not the one imported" in proc.stderr and str(copy_with_probe / "a2gnn") in proc.stderr
    assert not (copy_with_probe / "out").exists()
