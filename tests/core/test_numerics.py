"""a2gnn.core.numerics: the kernel pin (same bytes whatever CPU level is forced) and its strict mode.

The demonstration runs a small convolutional training and numpy's transcendental/BLAS functions in fresh
processes: without the pin a forced other CPU level changes the bytes; with it, whatever the environment
forces, the bytes are those of an AVX2 machine.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a2gnn.core import numerics

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import hashlib, a2gnn, numpy as np, torch
torch.manual_seed(0); torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, padding=2,
                          dilation=2), torch.nn.Softmax(1))
opt = torch.optim.Adam(net.parameters(), 1e-2)
x = torch.randn(4, 3, 24, 24)
for _ in range(4):
    opt.zero_grad(); net(x).log().mean().neg().backward(); opt.step()
h = hashlib.sha256()
for v in net.state_dict().values():
    h.update(v.detach().numpy().tobytes())
a = np.random.default_rng(0).standard_normal((200, 200)).astype(np.float32)
h.update(np.exp(a).tobytes()); h.update(np.log1p(np.abs(a)).tobytes()); h.update((a @ a).tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest()[:16])
"""

AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT",
                "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENCV_CPU_DISABLE": "AVX512-SKX"}
"""What an AVX2-only CPU chooses by itself, forced on this one (written out here, not read from the module)."""

x86_avx2 = pytest.mark.skipif(not (numerics.applies() and "avx2" in Path("/proc/cpuinfo").read_text()),
                              reason="the pin applies to x86-64 CPUs with AVX2")


def run_probe(**env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.PIN and k != numerics.SWITCH}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    capability, digest = out.stdout.split()
    return capability, digest


def test_pin_sets_the_environment_on_x86_only():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "OTHER": "x"}
    assert numerics.pin(env, machine="x86_64") == numerics.wanted()
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["OTHER"] == "x"  # a forced level is overridden
    arm = {}
    assert numerics.pin(arm, machine="aarch64") == {} and arm == {}
    off = {numerics.SWITCH: "native", "ATEN_CPU_CAPABILITY": "avx512"}
    assert numerics.pin(off, machine="x86_64") == {} and off["ATEN_CPU_CAPABILITY"] == "avx512"


def test_opencv_switch_only_where_avx512_exists():
    assert numerics.cpu_has_avx512("flags : fpu sse2 avx2 avx512f avx512bw") is True
    assert numerics.cpu_has_avx512("flags : fpu sse2 avx2 fma") is False
    assert numerics.wanted(has_avx512=True) == dict(numerics.PIN)
    without = numerics.wanted(has_avx512=False)
    assert "OPENCV_CPU_DISABLE" not in without  # OpenCV would warn on every import that it lacks AVX512-SKX
    assert without == {k: v for k, v in numerics.PIN.items() if k != "OPENCV_CPU_DISABLE"}


def test_strict_pin_takes_mkl_single_code_path_and_fused_adam():
    strict, default = {numerics.SWITCH: "strict"}, {}
    assert numerics.wanted(has_avx512=False, environ=strict)["MKL_CBWR"] == "COMPATIBLE"
    assert numerics.wanted(has_avx512=False, environ=default)["MKL_CBWR"] == numerics.PIN["MKL_CBWR"]
    assert numerics.pin(env := dict(strict), machine="x86_64")["MKL_CBWR"] == "COMPATIBLE" == env["MKL_CBWR"]
    assert numerics.adam_options(strict) == {"fused": True} and numerics.adam_options(default) == {}


def test_optimizers_follow_the_numerics_mode(monkeypatch):
    import torch

    from a2gnn.core.training import build_optimizer
    from a2gnn.gnn.model import GNNConfig
    from a2gnn.gnn.train import _optimizer

    params = [torch.nn.Parameter(torch.ones(3))]
    for mode, fused in (("strict", True), ("", None)):
        monkeypatch.setenv(numerics.SWITCH, mode)
        for name in ("adam", "adamw"):
            assert build_optimizer([{"params": params}], name, 0.1).defaults["fused"] is fused
        assert _optimizer(params, GNNConfig()).defaults["fused"] is fused


@x86_avx2
def test_strict_pin_loads_torch_without_onednn_convolutions():
    code = "import a2gnn, torch; print(torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled())"
    clean = {k: v for k, v in os.environ.items() if k not in numerics.PIN and k != numerics.SWITCH}
    strict = subprocess.run([sys.executable, "-c", code], env={**clean, numerics.SWITCH: "strict"},
                            capture_output=True, text=True, check=True)
    assert strict.stdout.split() == ["False", "False"]
    default = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    assert default.stdout.split()[0] == "True"  # torch's own default: only the strict pin switches it off


@x86_avx2
def test_this_test_session_is_pinned():
    import numpy  # noqa: F401
    import torch  # noqa: F401

    assert numerics.pinned() or os.environ.get(numerics.SWITCH) == "native"


@pytest.mark.slow
@x86_avx2
def test_same_bytes_whatever_level_is_forced():
    avx2_machine = run_probe(**AVX2_MACHINE, A2GNN_NUMERICS="native")
    assert avx2_machine[0] == "AVX2"
    # pinned: the bytes of the AVX2 machine, whatever this CPU has or the environment forces
    assert run_probe() == avx2_machine
    assert run_probe(ATEN_CPU_CAPABILITY="avx512", DNNL_MAX_CPU_ISA="AVX512_CORE", NPY_DISABLE_CPU_FEATURES="",
                     OPENBLAS_CORETYPE="SkylakeX") == avx2_machine
    assert run_probe(ATEN_CPU_CAPABILITY="default", DNNL_MAX_CPU_ISA="SSE41") == avx2_machine
    # without the pin, another level gives other bytes (the reason for the pin)
    assert run_probe(A2GNN_NUMERICS="native", ATEN_CPU_CAPABILITY="default", DNNL_MAX_CPU_ISA="SSE41",
                     OPENBLAS_CORETYPE="Prescott", NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
                     )[1] != avx2_machine[1]


@pytest.mark.skipif("avx512f" not in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else True,
                    reason="needs a CPU with AVX-512 (its native kernels differ from the pinned AVX2 ones)")
@pytest.mark.slow
def test_native_avx512_differs_from_the_pin():
    assert run_probe(A2GNN_NUMERICS="native")[1] != run_probe()[1]


def test_loading_torch_first_is_caught():
    code = "import torch, a2gnn\nfrom a2gnn.core import numerics\nnumerics.check()"
    env = {k: v for k, v in os.environ.items() if k not in numerics.PIN and k != numerics.SWITCH}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if numerics.applies() and "avx512f" in Path("/proc/cpuinfo").read_text():
        assert out.returncode != 0 and "Import a2gnn before torch" in out.stderr
    else:  # without AVX-512 the late pin changes nothing, and nothing is wrong
        assert out.returncode == 0 or "Import a2gnn before torch" in out.stderr


THIRD_PARTY = ("numpy", "torch", "cv2", "PIL", "pycocotools", "pydensecrf", "detectron2", "matplotlib", "pandas",
               "scipy", "timm")


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for d in ("stages", "scripts", "benchmarks")
                                        for p in (ROOT / d).glob("*.py")))
def test_entry_points_import_a2gnn_before_numerical_libraries(path):
    """Every script DVC or a user runs imports a2gnn (the pin) before any numerical library."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            top = {n.split(".")[0] for n in names}
            if "a2gnn" in top:
                return
            assert not top & set(THIRD_PARTY), f"{path} imports {sorted(top)} before a2gnn (the numerics pin)"
