"""scripts/emulated_cpu_check.py: under A2GNN_NUMERICS=strict, an emulated Intel CPU computes this CPU's bytes.

QEMU user mode reports another vendor, model and cache sizes to the libraries that choose kernels from them (MKL,
oneDNN, torch), and computes every instruction's IEEE result itself: a stand-in for another x86-64 CPU. The
emulated run is slow (about a minute), so the test is marked slow and skips where qemu-user is not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import load_script

from a2gnn.core import numerics

ROOT = Path(__file__).resolve().parents[1]
check = load_script("emulated_cpu_check")


def _probe(layers: dict[str, str], **parts: str) -> dict:
    return {"layers": layers, **{"grads": "g", "weights": "w", "gnn": "n", **parts}}


def test_compare_names_the_first_layer_in_forward_order_and_each_part():
    native = _probe({"stem": "a", "block": "b", "head": "c"})
    assert check.compare(native, _probe({"stem": "a", "block": "b", "head": "c"})) == {
        "layers": "same", "grads": "same", "weights": "same", "gnn": "same"}
    got = check.compare(native, _probe({"stem": "a", "block": "B", "head": "C"}, weights="W"))
    assert got == {"layers": "other from block", "grads": "same", "weights": "other", "gnn": "same"}
    assert check.compare(native, _probe({"stem": "a", "block": "b"}))["layers"] == "other from head"  # missing


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(check.QEMU) is None or not numerics.applies()
                    or "avx2" not in Path("/proc/cpuinfo").read_text().split(),
                    reason="needs qemu-user (qemu-x86_64) on an x86-64 machine with AVX2 (the pin's level)")
def test_strict_training_step_gives_the_same_bytes_on_an_emulated_intel_cpu():
    native = check.run_probe("strict", 2, None)
    emulated = check.run_probe("strict", 2, "Haswell-v4")
    assert len(native["layers"]) > 30  # every leaf module of the CAM network reported
    assert check.compare(native, emulated) == {"layers": "same", "grads": "same", "weights": "same", "gnn": "same"}
