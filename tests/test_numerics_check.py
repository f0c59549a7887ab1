"""scripts/numerics_check.py: the digest and the verdict it prints (the stage runs themselves are the cam stage's)."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
check = load_script("numerics_check")


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_tree_digest_sees_bytes_and_names_but_not_creation_order(tmp_path):
    a = _tree(tmp_path / "a", {"model.pt": b"w", "scores/1.npz": b"x"})
    b = _tree(tmp_path / "b", {"scores/1.npz": b"x", "model.pt": b"w"})
    assert check.tree_digest(a) == check.tree_digest(b)
    assert check.tree_digest(a) != check.tree_digest(_tree(tmp_path / "c", {"model.pt": b"W", "scores/1.npz": b"x"}))
    assert check.tree_digest(a) != check.tree_digest(_tree(tmp_path / "d", {"model.pt": b"w", "scores/2.npz": b"x"}))


def test_verdict_compares_each_mode_only_on_the_same_inputs():
    found = {"inputs": "i", "modes": {"pinned": {"digest": "a" * 64, "seconds": 60.0},
                                      "strict": {"digest": "b" * 64, "seconds": 120.0}}}
    reference = {"inputs": "i", "modes": {"pinned": {"digest": "a" * 64}, "strict": {"digest": "c" * 64}}}
    lines = check.verdict(found, reference)
    assert lines[0].startswith("pinned") and lines[0].endswith("same bytes")
    assert lines[1].startswith("strict") and lines[1].endswith("other bytes")
    assert all("not comparable" in line for line in check.verdict(found, dict(reference, inputs="j")))
    assert all(line.endswith("no reference") for line in check.verdict(found, None))


def test_the_committed_reference_names_its_cpu_and_both_modes():
    import json

    reference = json.loads(check.REFERENCE.read_text())
    assert reference["cpu"] and set(reference["modes"]) == set(check.MODES)
    assert all(len(m["digest"]) == 64 for m in reference["modes"].values())
    assert check.lock_outs(yaml.safe_load((ROOT / "dvc.lock").read_text())) == reference["pinned_repro_outs"], (
        "dvc.lock changed: on the machine that made it run `python scripts/numerics_check.py --record`")
    pinned = reference["pinned_repro_outs"]
    assert set(reference.get("strict_repro_outs", pinned)) == set(pinned)


def test_lock_differences_lists_changed_and_missing_stages():
    lock = {"stages": {"cam": {"outs": [{"path": "outputs/cam", "md5": "1"}]}, "report": {"deps": []},
                       "seeds": {"outs": [{"path": "outputs/seeds/M_g", "md5": "2"}]}}}
    found = check.lock_outs(lock)
    assert found == {"cam": {"outputs/cam": "1"}, "seeds": {"outputs/seeds/M_g": "2"}}
    reference = {"cam": {"outputs/cam": "1"}, "seeds": {"outputs/seeds/M_g": "3"}, "affinity": {"outputs/a": "4"}}
    assert check.lock_differences(found, reference) == ["seeds", "affinity"]
    assert check.lock_differences(found, {"cam": {"outputs/cam": "1"}}) == []


def test_lock_mode_prints_the_verdict_and_the_cpus_that_matched(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"stages": {"cam": {"outs": [{"path": "outputs/cam", "md5": "1"}]}}}))
    reference = tmp_path / "reference.json"
    import json

    reference.write_text(json.dumps({"cpu": "CPU A", "strict_repro_outs": {"cam": {"outputs/cam": "1"}},
                                     "strict_repro_matched_on": ["CPU B"]}))
    monkeypatch.setattr(check, "REFERENCE", reference)
    monkeypatch.setattr(check, "ROOT", tmp_path)
    assert check.main(["--lock", str(lock), "--mode", "strict"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["reference CPU: CPU A; strict run", "  the same run matched it on: CPU B",
                   "every output: same bytes"]
    reference.write_text(json.dumps({"cpu": "CPU A", "strict_repro_outs": {"cam": {"outputs/cam": "2"}}}))
    check.main(["--lock", str(lock), "--mode", "strict"])
    assert capsys.readouterr().out.splitlines()[-1] == "stages with other bytes: cam"
