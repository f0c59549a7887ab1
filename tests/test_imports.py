"""Every package module imports on its own, first (no latent import cycle that only a lucky import order hides)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import a2gnn

PROBE = r"""
import importlib, sys
import torch, numpy, cv2  # heavy third-party modules stay loaded; only a2gnn's are re-imported
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "a2gnn" or m.startswith("a2gnn.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def package_modules() -> list[str]:
    root = Path(a2gnn.__file__).parent
    return sorted(m.name for m in pkgutil.walk_packages([str(root)], prefix="a2gnn."))


def test_every_module_imports_first_on_its_own():
    modules = package_modules()
    assert "a2gnn.gnn.losses" in modules and "a2gnn.gnn.train" in modules
    skip = {"a2gnn.instance.maskrcnn", "a2gnn.instance.lite_fpn"}  # need detectron2, installed separately
    try:
        import detectron2  # noqa: F401

        skip = set()
    except ImportError:
        pass
    names = [m for m in modules if m not in skip and not m.endswith("__main__")]
    done = subprocess.run([sys.executable, "-c", PROBE, *names], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
