"""Portable numerics: the same params and data give the same bytes on another x86-64 CPU with AVX2 (strict mode).

torch, oneDNN, MKL, numpy's ufuncs, numpy's OpenBLAS and OpenCV each pick their kernels for the CPU they run
on: an AVX-512 machine sums floats in another order than an AVX2 one, so trained weights, and every output
after them, differ in their last bits and then drift apart. :data:`PIN` fixes that choice to the AVX2 level
(x86-64-v3) that every machine this project targets has. The libraries read these variables once, when they
load or first run a kernel, so the pin is set by ``import a2gnn`` (``a2gnn/__init__.py``), before any of them
is imported; every stage, script, benchmark and the test session import ``a2gnn`` first, and
:func:`check` (called by every stage's ``setup_stage``) fails loudly if one of them loaded before the pin.

What holds where (measured):

* **the same x86-64 machine, with the AVX2 level forced or not**: same bytes (``tests/core/test_numerics.py``).
* **two x86-64 CPUs with AVX2, default pin**: the tiny trainings of ``tests/core/test_training.py`` give the same
  bytes on Zen 3 (EPYC, no AVX-512) and Zen 4 (EPYC, AVX-512), but the full default ``dvc repro`` does **not**: the
  ``cam`` stage's bytes differ (GrabCut's do not) and every trained output after it; the metrics move by up to 0.6
  points for the pseudo labels and up to 1.6 AP for Mask R-CNN (README, "Numerics"). Three causes, found by
  emulating other CPUs (``scripts/emulated_cpu_check.py``, QEMU user mode): oneDNN's AVX2 convolutions block their
  loops by the cache sizes (a dilated 3x3 convolution of the CAM network differs on an emulated Haswell); MKL
  honours ``MKL_CBWR=AVX2`` only on Intel CPUs (on AMD it reports ``CNR:AUTO``), and the two paths differ for
  narrow GEMMs and for exp / log / sqrt; and Adam's square root is MKL's (not correctly rounded).
* **any x86-64 CPU with AVX2, ``A2GNN_NUMERICS=strict``**: oneDNN / NNPACK convolutions off (:func:`configure_torch`),
  MKL on its single SSE2 path (:data:`STRICT_PIN`), fused Adam (:func:`adam_options`). A CAM training step (every
  layer's output, the gradients, the Adam step) and an A²GNN training give the same bytes on this Zen 3 and on an
  emulated Intel Haswell and AMD Milan (``tests/test_emulated_cpu.py``). Convolutions cost about 1.7x
  (the default ``cam`` stage: 120 s against 70 s).
* **x86-64 without AVX2**, **ARM** (aarch64: the pin does not apply, NEON/SVE kernels are used) and **GPUs**
  (cuDNN/cuBLAS pick kernels per device): the same bytes on the same hardware (every RNG is seeded, torch
  runs its deterministic algorithms), and the metrics within run-to-run noise of the committed ones, not bytes.

``A2GNN_NUMERICS=native`` leaves every library to its own choice (to measure what the pin changes and costs);
any other value, or none, pins.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, MutableMapping

SWITCH = "A2GNN_NUMERICS"
"""Environment variable: ``native`` disables the pin (measurement only); ``strict`` adds :data:`STRICT_PIN`,
:func:`configure_torch` and fused Adam (:func:`adam_options`)."""
STRICT = "strict"

PIN: Mapping[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised CPU kernels (ATen DispatchStub)
    "DNNL_MAX_CPU_ISA": "AVX2",  # oneDNN: convolutions, some matmuls
    "MKL_CBWR": "AVX2,STRICT",  # MKL conditional numerical reproducibility: torch's BLAS/LAPACK
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS: the AVX2 kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's dispatched ufunc loops above AVX2
    "OPENCV_CPU_DISABLE": "AVX512-SKX",  # OpenCV's dispatched kernels above AVX2
}
"""Variable -> value, read by the libraries when they load (so set before they are imported)."""

STRICT_PIN: Mapping[str, str] = {
    # MKL's single SSE2 code path, the same on every vendor. MKL honours "AVX2" only on Intel CPUs (on AMD it
    # reports CNR:AUTO and runs its own choice), and the two give other bytes for narrow GEMMs such as a
    # classifier's 1x1 convolution and for exp / log / sqrt (measured: native Zen 3 against emulated Haswell).
    "MKL_CBWR": "COMPATIBLE",
}
"""What ``A2GNN_NUMERICS=strict`` sets over :data:`PIN` (with oneDNN / NNPACK off and fused Adam): the mode
whose bytes do not depend on the CPU's vendor or cache sizes."""

GUARDED = ("torch", "numpy", "cv2")
"""Modules that must not be loaded before :func:`pin` runs."""


class NumericsError(RuntimeError):
    """A numerical library was loaded before the pin: its results would depend on the CPU."""


def applies(machine: str | None = None) -> bool:
    """Whether the pin applies on this architecture (x86-64 only)."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def strict(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``A2GNN_NUMERICS=strict`` also switches oneDNN/NNPACK convolutions off (:func:`configure_torch`)."""
    return environ.get(SWITCH, "").strip().lower() == STRICT


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the pin is wanted (not switched off with ``A2GNN_NUMERICS=native``)."""
    return environ.get(SWITCH, "").strip().lower() != "native"


def cpu_has_avx512(cpuinfo: str | None = None) -> bool:
    """Whether the CPU reports AVX-512 (``avx512f`` in /proc/cpuinfo); True when that cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return True
    return "avx512f" in cpuinfo.split()


def wanted(has_avx512: bool | None = None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """:data:`PIN` for this CPU, with :data:`STRICT_PIN` over it under ``A2GNN_NUMERICS=strict``. OpenCV's switch
    only where AVX-512 exists (elsewhere OpenCV warns on every import that it cannot disable a feature it does not
    have, and runs its AVX2 kernels anyway)."""
    values = dict(PIN)
    if strict(environ):
        values.update(STRICT_PIN)
    if not (cpu_has_avx512() if has_avx512 is None else has_avx512):
        values.pop("OPENCV_CPU_DISABLE")
    return values


def adam_options(environ: Mapping[str, str] = os.environ) -> dict[str, bool]:
    """Keyword arguments of ``torch.optim.Adam`` / ``AdamW`` in this numerics mode: ``fused=True`` under strict.

    The default (for-loop) update takes its square root with ``torch.sqrt``, which torch hands to MKL's vector
    math library; that result is not correctly rounded and moved between a native AMD Zen 3 and an emulated Intel
    Haswell even under ``MKL_CBWR=COMPATIBLE`` (scripts/emulated_cpu_check.py). The fused update is ATen's own
    vectorised loop (pinned to AVX2), whose square root is the exact instruction."""
    return {"fused": True} if strict(environ) else {}


def pin(environ: MutableMapping[str, str] = os.environ, machine: str | None = None) -> dict[str, str]:
    """Set :func:`wanted` in ``environ`` (overriding what was there); returns what was set ({} when off or not x86-64).

    Child processes (workers, DDP ranks, ``dvc repro``'s stages) inherit it through the environment.
    """
    if not (enabled(environ) and applies(machine)):
        return {}
    values = wanted(environ=environ)
    environ.update(values)
    if environ is os.environ and strict(environ):  # this process: torch's own switches too, as soon as torch loads
        _on_torch_import(configure_torch)
    return values


def configure_torch(torch) -> None:
    """torch's switches of the strict pin: convolutions without oneDNN and NNPACK.

    Capped at AVX2, oneDNN's JIT convolutions still size their blocking, and with it the order in which they sum
    over channels, from the CPU's cache sizes (Zen 3 and Zen 4 trained different CAM bytes under the environment
    pin alone; an emulated Haswell changes a dilated 3x3 convolution's output). Without them torch convolves with
    im2col and BLAS (MKL, on its single code path under :data:`STRICT_PIN`)."""
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def _on_torch_import(action) -> None:
    """Run ``action(torch)`` now if torch is loaded, else right after its first import (a meta-path hook)."""
    if "torch" in sys.modules:
        action(sys.modules["torch"])
        return
    if any(isinstance(f, _TorchHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchHook(action))


class _TorchHook:
    """Meta-path finder that wraps torch's loader so that ``action(torch)`` runs once torch has loaded."""

    def __init__(self, action):
        self.action = action

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load, action = spec.loader.exec_module, self.action

        def exec_module(module):
            load(module)
            action(module)

        spec.loader.exec_module = exec_module
        return spec


def state() -> dict[str, str]:
    """What the loaded libraries actually use: torch's CPU capability and numpy's AVX-512 dispatch."""
    out = {}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = torch.backends.cpu.get_cpu_capability()
        out["onednn_conv"] = str(torch.backends.mkldnn.enabled)
    if "numpy" in sys.modules:
        from numpy._core._multiarray_umath import __cpu_features__

        out["numpy_avx512"] = str(any(on for name, on in __cpu_features__.items()
                                      if name in ("X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX512_SKX")))
    return out


def pinned() -> bool:
    """Whether this process runs the pinned kernels (the pin is in the environment and torch/numpy follow it)."""
    now = state()
    return (applies() and all(os.environ.get(k) == v for k, v in wanted().items())
            and now.get("torch", "AVX2") == "AVX2" and now.get("numpy_avx512", "False") == "False"
            and (not strict() or now.get("onednn_conv", "False") == "False"))


def check() -> None:
    """Raise :class:`NumericsError` when the pin is wanted but a loaded library runs above AVX2."""
    if not (enabled() and applies()):
        return
    if any(os.environ.get(k) != v for k, v in wanted().items()):
        raise NumericsError(f"the numerics pin is not in the environment; import a2gnn before {', '.join(GUARDED)}")
    now = state()
    if (now.get("torch", "AVX2") not in ("AVX2", "DEFAULT") or now.get("numpy_avx512") == "True"
            or (strict() and now.get("onednn_conv") == "True")):
        raise NumericsError(
            f"torch/numpy were loaded before the numerics pin (they run {now}): results would depend on this CPU. "
            "Import a2gnn before torch, numpy and cv2 (a2gnn/core/numerics.py)."
        )
