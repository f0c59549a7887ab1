"""Shared pytest fixtures.

``tiny_voc``: a tiny embedded dataset (VOC layout, see :mod:`a2gnn.data.embedded`), generated once per session
and shared read-only — 6 train + 2 val images of 64-96 px, 5 foreground classes, a few objects each. Use it
wherever a test needs real images with boxes, class GT and instance GT::

    def test_something(tiny_voc):
        ds = VOCDataset(tiny_voc, "train")

A test that changes the dataset takes ``tiny_voc_copy`` (its own copy under ``tmp_path``); a test that changes the
shared one fails (its files are hashed before and after). ``helpers.tiny_embedded_config(**overrides)`` returns the
config behind it (override fields for variants).

``pipeline_repo`` / ``reproduced_repo`` (session scope): a scratch git + DVC repo of the whole pipeline on the
tiny profile (tests/profiles/tiny.yaml), before / after its one ``dvc repro``; ``run`` and ``stages_run`` are the
helpers the end-to-end tests (test_pipeline.py, test_remote.py) drive it with.
"""

from __future__ import annotations

import a2gnn  # noqa: F401  (first: the numerics pin, a2gnn/core/numerics.py)
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml
from helpers import ROOT, TINY, deep_merge, run, tiny_embedded_config, tree_digest

from a2gnn.data.embedded import generate


@pytest.fixture(scope="session")
def _shared_tiny_voc(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("shared") / "tiny_voc"
    generate(tiny_embedded_config(), root)
    return root, tree_digest(root)


@pytest.fixture
def tiny_voc(_shared_tiny_voc) -> Path:
    """Root of the session's tiny embedded dataset (train: 6 images, val: 2). Read-only: checked after the test."""
    root, digest = _shared_tiny_voc
    yield root
    assert tree_digest(root) == digest, "this test changed the shared tiny dataset: use the tiny_voc_copy fixture"


@pytest.fixture
def tiny_voc_copy(_shared_tiny_voc, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset under ``tmp_path``, for tests that change it."""
    root = tmp_path / "tiny_voc"
    shutil.copytree(_shared_tiny_voc[0], root)
    return root


# --- the tiny-profile pipeline repo, shared by the end-to-end tests (test_pipeline.py, test_remote.py) ---------------


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
