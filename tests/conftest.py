"""Shared pytest fixtures.

``tiny_voc``: a tiny embedded dataset (VOC layout, see :mod:`a2gnn.data.embedded`) generated in
``tmp_path`` — 6 train + 2 val images of 64-96 px, 5 foreground classes, a few objects each. Use it
wherever a test needs real images with boxes, class GT and instance GT::

    def test_something(tiny_voc):
        ds = VOCDataset(tiny_voc, "train")

``tiny_embedded_config(**overrides)`` returns the config behind it (override fields for variants).

``pipeline_repo`` / ``reproduced_repo`` (session scope): a scratch git + DVC repo of the whole pipeline on the
tiny profile (tests/profiles/tiny.yaml), before / after its one ``dvc repro``; ``run`` and ``stages_run`` are the
helpers the end-to-end tests (test_pipeline.py, test_remote.py) drive it with.
"""

from __future__ import annotations

import a2gnn  # noqa: F401  (first: the numerics pin, a2gnn/core/numerics.py)
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml

from a2gnn.data.embedded import EmbeddedConfig, generate

TINY_EMBEDDED = {"n_train": 6, "n_val": 2, "min_size": 64, "max_size": 96}
"""The ``embedded`` params of the tiny test dataset (everything else at its default)."""


def tiny_embedded_config(**overrides) -> EmbeddedConfig:
    """EmbeddedConfig of the tiny test dataset, with ``overrides`` applied (validated)."""
    return EmbeddedConfig.from_params({**TINY_EMBEDDED, **overrides})


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    """Root of a freshly generated tiny embedded dataset (train: 6 images, val: 2) under tmp_path."""
    root = tmp_path / "tiny_voc"
    generate(tiny_embedded_config(), root)
    return root


# --- the tiny-profile pipeline repo, shared by the end-to-end tests (test_pipeline.py, test_remote.py) ---------------

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "profiles" / "tiny.yaml"


def load_stage(name: str):
    """The module of ``stages/<name>.py`` (stage scripts are not a package), to call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd`` in ``cwd`` with this venv's tools first on PATH; stdout + stderr, AssertionError on failure."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    """Stages a ``dvc repro`` / ``dvc exp run`` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory) -> Path:
    """A scratch git + DVC repo: a2gnn/, stages/, dvc.yaml, metrics/ablations/, params.yaml (tiny profile) and
    data.dvc, committed.

    Nothing is reproduced yet (``reproduced_repo`` does that once per session).
    """
    repo = tmp_path_factory.mktemp("pipeline")
    for name in ("a2gnn", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(ROOT / "metrics" / "ablations", repo / "metrics" / "ablations")  # committed input of `report`
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(TINY.read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "test@example.com"], repo)
    run(["git", "config", "user.name", "test"], repo)
    run(["dvc", "init", "-q"], repo)
    run([sys.executable, "-m", "a2gnn.data.embedded", "--params", "params.yaml", "--out", "data"], repo)
    run(["dvc", "add", "-q", "data"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "init"], repo)
    return repo


class Reproduced(NamedTuple):
    path: Path  # the repo; HEAD is the reproduced state (dvc.lock, metrics, plots committed)
    output: str  # what the one `dvc repro` printed


@pytest.fixture(scope="session")
def reproduced_repo(pipeline_repo) -> Reproduced:
    """``pipeline_repo`` after one full ``dvc repro`` (minutes), committed; shared by the whole session.

    Tests that change params, code or outputs here restore them; tests that need a pristine copy clone it.
    """
    output = run(["dvc", "repro"], pipeline_repo)
    run(["git", "add", "-A"], pipeline_repo)
    run(["git", "commit", "-qm", "dvc repro"], pipeline_repo)
    return Reproduced(pipeline_repo, output)


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add (large, on a busy machine) synchronisation costs. Modules use it
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
