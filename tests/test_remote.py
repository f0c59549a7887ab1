"""Sharing results through remotes (README "Sharing results through remotes").

Reuses the session's reproduced tiny-profile repo (tests/conftest.py: ``reproduced_repo``); nothing here
reruns the pipeline. A publisher pushes the reproduced commit to a local-directory DVC remote and a bare git
repo; a teammate's fresh clone then ``dvc pull``s and ``dvc repro`` recomputes nothing (the artifacts are the
publisher's, byte for byte). An experiment goes the same way with ``dvc exp push`` / ``dvc exp pull``.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from helpers import run, stages_run

pytestmark = pytest.mark.slow

EXP = "remote-check"
EXP_PARAM, EXP_VALUE = "bg_alpha", 2.0  # baseline.bg_alpha: read only by `baseline` (then evaluate_pseudo_labels)


class Shared(NamedTuple):
    publisher: Path  # the clone that pushed (workspace = the reproduced commit + the remote config)
    origin: Path  # bare git repo
    storage: Path  # local-directory DVC remote
    branch: str


def clone(origin: Path, dest: Path, branch: str) -> Path:
    run(["git", "clone", "-q", "-b", branch, str(origin), str(dest)], dest.parent)
    run(["git", "config", "user.email", "teammate@example.com"], dest)
    run(["git", "config", "user.name", "teammate"], dest)
    return dest


def status_up_to_date(repo: Path) -> bool:
    out = run(["dvc", "status", "--json"], repo)
    return json.loads(out[out.index("{"):]) == {}


@pytest.fixture(scope="module")
def shared(reproduced_repo, tmp_path_factory) -> Shared:
    """The reproduced commit, pushed: git to a bare ``origin``, the DVC cache to a local ``storage`` remote.

    The publisher is a clone of the reproduced repo that uses that repo's cache, so it holds exactly the
    reproduced commit whatever other tests do to the shared workspace (they restore it, but this does not
    rely on that) and it leaves the shared repo's git state alone.
    """
    base = tmp_path_factory.mktemp("remotes")
    storage, origin, publisher = base / "storage", base / "origin.git", base / "publisher"
    run(["git", "clone", "-q", str(reproduced_repo.path), str(publisher)], base)
    run(["git", "config", "user.email", "publisher@example.com"], publisher)
    run(["git", "config", "user.name", "publisher"], publisher)
    run(["dvc", "cache", "dir", "--local", str(reproduced_repo.path / ".dvc" / "cache")], publisher)
    run(["dvc", "checkout"], publisher)
    assert status_up_to_date(publisher)
    # what the README shows: a default remote, committed, then dvc push and git push
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], publisher)
    run(["git", "commit", "-qm", "DVC remote", "--", ".dvc/config"], publisher)
    pushed = run(["dvc", "push"], publisher)
    assert "pushed" in pushed, pushed
    run(["git", "init", "-q", "--bare", str(origin)], base)
    run(["git", "remote", "set-url", "origin", str(origin)], publisher)
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], publisher).strip()
    run(["git", "push", "-q", "origin", branch], publisher)
    return Shared(publisher, origin, storage, branch)


def same_tree(a: Path, b: Path) -> bool:
    """Same files (names and bytes) under a and b."""
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(n) for n in names], shallow=False)
    return not mismatch and not errors and len(match) == len(names)


def test_pull_in_a_fresh_clone_recomputes_nothing(shared, tmp_path):
    teammate = clone(shared.origin, tmp_path / "teammate", shared.branch)
    assert not (teammate / "data").exists() and not (teammate / "outputs/affinity/model.pt").exists()  # git only
    assert run(["dvc", "remote", "default"], teammate).strip() == "storage"  # the committed remote config
    run(["dvc", "pull"], teammate)
    assert status_up_to_date(teammate)
    out = run(["dvc", "repro"], teammate)
    assert stages_run(out) == set(), out
    assert "up to date" in out, out
    # the artifacts are the publisher's, byte for byte: data, a model, a directory output, a training output
    for path in ("data", "outputs/affinity/model.pt", "outputs/pseudo_labels_a2gnn", "outputs/maskrcnn/model.pth"):
        a, b = shared.publisher / path, teammate / path
        assert same_tree(a, b) if a.is_dir() else filecmp.cmp(a, b, shallow=False), path


def find_experiment(node, name: str) -> dict | None:
    """The entry of experiment ``name`` in ``dvc exp show --json`` output (searched at any depth)."""
    if isinstance(node, dict):
        if node.get("name") == name and isinstance(node.get("data"), dict):
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = find_experiment(child, name)
            if found is not None:
                return found
    return None


def exp_params(entry: dict) -> dict:
    return entry["data"]["params"]["params.yaml"]["data"]


def test_experiment_round_trip_through_git_remote(shared, tmp_path):
    publisher = shared.publisher
    params_before = (publisher / "params.yaml").read_text()
    assert yaml.safe_load(params_before)["baseline"][EXP_PARAM] != EXP_VALUE
    try:
        out = run(["dvc", "exp", "run", "-n", EXP, "-S", f"baseline.{EXP_PARAM}={EXP_VALUE}"], publisher)
        ran = stages_run(out)  # seconds: baseline, its evaluation (and any report after it), nothing upstream
        assert {"baseline", "evaluate_pseudo_labels"} <= ran, out
        assert not ran & {"cam", "grabcut", "seeds", "affinity", "pseudo_labels", "random_walk"}, ran
        assert not any(stage.startswith("train_") for stage in ran), ran
        run(["dvc", "exp", "push", "origin", EXP], publisher)  # git refs to origin, its outputs to `storage`
    finally:  # the publisher's workspace back to the pushed commit
        run(["git", "checkout", "--", "."], publisher)
        run(["dvc", "checkout", "--force"], publisher)
    assert (publisher / "params.yaml").read_text() == params_before

    teammate = clone(shared.origin, tmp_path / "teammate", shared.branch)
    assert EXP in run(["dvc", "exp", "list", "origin"], teammate)
    assert find_experiment(json.loads(run(["dvc", "exp", "show", "--json"], teammate)), EXP) is None
    run(["dvc", "exp", "pull", "origin", EXP], teammate)
    entry = find_experiment(json.loads(run(["dvc", "exp", "show", "--json"], teammate)), EXP)
    assert entry is not None, f"{EXP} not in dvc exp show after dvc exp pull"
    assert exp_params(entry)["baseline"][EXP_PARAM] == EXP_VALUE
    # its outputs came along (dvc exp pull fetches them from `storage`): applied, nothing is stale or missing
    run(["dvc", "exp", "apply", EXP], teammate)
    assert yaml.safe_load((teammate / "params.yaml").read_text())["baseline"][EXP_PARAM] == EXP_VALUE
    assert status_up_to_date(teammate)
    assert stages_run(run(["dvc", "repro"], teammate)) == set()
