#!/usr/bin/env python
"""Install a pure-Python detectron2 v0.6 into the running interpreter.

Usage: ``.venv/bin/python scripts/install_detectron2.py [--force] [--sdist PATH]``

detectron2's authors do not publish it on PyPI. ``pb1-detectron2==0.6`` is a source distribution
of detectron2 v0.6 (Apache-2.0) without its C++/CUDA sources; it needs these fixes to install and
run on Python 3.11, numpy 2, Pillow >= 10 and a setuptools without ``pkg_resources``:

1. ``setup.py`` declares no extension module (the C++ sources are missing), does not import torch,
   does not install the stray top-level ``tools`` package, and drops ``black``/``future``/``pydot``
   and the ``panopticapi @ <url>`` extra from its requirements (they are not runtime deps of
   Mask R-CNN; the URL requirement is rejected by pip >= 26.3).
2. ``detectron2/_C.py`` stands in for the compiled extension: any op from it raises a clear
   error. Mask R-CNN R50/R101-FPN does not need it (RoIAlign and NMS come from torchvision.ops);
   rotated boxes, deformable convolution and ``COCOEvaluator(use_fast_impl=True)`` do.
3. ``Image.LINEAR`` (removed in Pillow 10) becomes ``Image.BILINEAR``.
4. The numpy aliases ``np.int/np.float/np.bool/np.str/np.object`` (removed in numpy 1.24) become
   the builtins they aliased.
5. ``model_zoo.get_config_file`` finds configs next to its own file instead of via
   ``pkg_resources``.
6. The model-zoo configs (``detectron2/model_zoo/configs``) are declared as package data.

Every edit is an exact text replacement with an expected number of matches, so a different
sdist fails loudly instead of being half-patched; the sdist's sha256 is checked first anyway.
pip runs setup.py without build isolation, both to download (the original setup.py imports
torch, which an isolated build environment lacks) and to install; that needs setuptools >= 70.1
(or the ``wheel`` package), which the script installs if missing. The package is installed with
``--no-deps``: its runtime dependencies are pinned in ``requirements/base.txt``. Downloading needs
pip < 26.3 (or pass ``--sdist``). A marker module ``detectron2/_install_info.py`` records the patch
level, so a second run exits at once.

A machine with a compiler and CUDA can instead install upstream detectron2 from source; this
script then leaves it alone.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

DIST_NAME = "pb1-detectron2"
DIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# Bump when the patches below change: an install with an older level is redone.
PATCH_LEVEL = 1
MARKER_MODULE = "_install_info"
# pip 26.3 refuses PyPI sdists that declare direct-URL requirements (this one has an extra with one).
PIP_MAX_EXCLUSIVE = (26, 3)
# Building without isolation uses this interpreter's setuptools; older ones need the `wheel` package.
SETUPTOOLS_MIN = (70, 1)  # the first setuptools with its own bdist_wheel
CHECK_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
# Import names of the runtime dependencies (pinned in requirements/base.txt) -> distribution names.
RUNTIME_DEPS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "PIL": "pillow",
    "matplotlib": "matplotlib",
    "pycocotools": "pycocotools",
    "fvcore": "fvcore",
    "iopath": "iopath",
    "yacs": "yacs",
    "termcolor": "termcolor",
    "tabulate": "tabulate",
    "cloudpickle": "cloudpickle",
    "tqdm": "tqdm",
    "tensorboard": "tensorboard",
    "omegaconf": "omegaconf",
    "hydra": "hydra-core",
}


class InstallError(RuntimeError):
    """A step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in ``path`` (relative to the sdist root); ``old`` must occur ``count`` times."""

    path: str
    old: str
    new: str
    count: int = 1


SETUP_EDITS = (
    Edit(
        "setup.py",
        "import torch\nfrom torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension\n\n"
        'torch_ver = [int(x) for x in torch.__version__.split(".")[:2]]\n'
        'assert torch_ver >= [1, 8], "Requires PyTorch >= 1.8"\n',
        "# install_detectron2.py: no torch import, no C++ extension (its sources are not in the sdist).\n",
    ),
    Edit(
        "setup.py",
        'ext_modules=get_extensions(),\n    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n',
        "ext_modules=[],\n",
    ),
    Edit(
        "setup.py",
        '\nsetup(\n    name="pb1-detectron2",',
        "\n# install_detectron2.py: the model-zoo configs live inside the package in this sdist.\n"
        '_MODEL_ZOO_DIR = path.join(path.dirname(path.abspath(__file__)), "detectron2", "model_zoo")\n'
        "_MODEL_ZOO_CONFIGS = sorted(\n"
        "    path.relpath(p, _MODEL_ZOO_DIR)\n"
        '    for pattern in ("*.yaml", "*.py")\n'
        '    for p in glob.glob(path.join(_MODEL_ZOO_DIR, "configs", "**", pattern), recursive=True)\n'
        ")\n"
        '\nsetup(\n    name="pb1-detectron2",',
    ),
    Edit(
        "setup.py",
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": _MODEL_ZOO_CONFIGS},',
    ),
    Edit(
        "setup.py",
        'find_packages(exclude=("configs", "tests*"))',
        'find_packages(exclude=("configs", "tests*", "tools", "tools.*"))',
    ),
    Edit("setup.py", '        "future",  # used by caffe2\n', ""),
    Edit("setup.py", '        "pydot",  # used to save caffe2 SVGs\n', ""),
    Edit("setup.py", '        "black==21.4b2",\n', ""),
    Edit(
        "setup.py",
        '            "panopticapi @ https://github.com/cocodataset/panopticapi/archive/master.zip",\n',
        "",
    ),
)

SOURCE_EDITS = (
    Edit(
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR,",
        "interp=Image.BILINEAR,",
    ),
    Edit("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", ""),
    Edit(
        "detectron2/model_zoo/model_zoo.py",
        "    cfg_file = pkg_resources.resource_filename(\n"
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        "    )\n",
        '    cfg_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", config_path)\n',
    ),
)

# numpy < 1.24 aliases of builtins. The word boundary keeps np.int64, np.float32, np.bool_ intact.
NUMPY_ALIAS = re.compile(r"\bnp\.(int|float|bool|str|object|complex)\b")
NUMPY_ALIAS_COUNTS = {
    "detectron2/data/build.py": 2,
    "detectron2/data/datasets/pascal_voc.py": 1,
    "detectron2/evaluation/pascal_voc_evaluation.py": 2,
    "detectron2/evaluation/sem_seg_evaluation.py": 7,
    "detectron2/structures/masks.py": 3,
    "detectron2/utils/video_visualizer.py": 1,
    "detectron2/utils/visualizer.py": 3,
}
# Text that must be absent from every patched .py file.
FORBIDDEN = (NUMPY_ALIAS, re.compile(r"\bImage\.LINEAR\b"), re.compile(r"\bpkg_resources\b"))

C_STUB = '''\
"""Stand-in for detectron2's compiled extension, written by a2gnn's scripts/install_detectron2.py.

This detectron2 was installed from the pb1-detectron2 0.6 sdist, which has no C++/CUDA sources.
Mask R-CNN with ResNet-FPN does not need the extension (RoIAlign and NMS come from torchvision.ops);
the ops that do (rotated boxes, deformable convolution, the fast COCO evaluator) raise
MissingExtensionError when used. Install upstream detectron2 from source to get them.
"""

_HINTS = {
    "InstanceAnnotation": "use COCOEvaluator(..., use_fast_impl=False)",
    "COCOevalEvaluateImages": "use COCOEvaluator(..., use_fast_impl=False)",
    "COCOevalAccumulate": "use COCOEvaluator(..., use_fast_impl=False)",
}


class MissingExtensionError(AttributeError):
    """An op of detectron2's C++ extension was used, but this install has none."""


def get_compiler_version():
    return "none (pure-Python detectron2 from pb1-detectron2 0.6, no C++ extension)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    hint = _HINTS.get(name, "rotated boxes and deformable convolution are unavailable")
    raise MissingExtensionError(
        f"detectron2._C.{name} is unavailable: this detectron2 is a pure-Python install "
        f"(pb1-detectron2 0.6 without its C++ extension, made by scripts/install_detectron2.py); "
        f"{hint}, or install upstream detectron2 from source."
    )
'''

MARKER = f'''\
"""Written by a2gnn's scripts/install_detectron2.py: this detectron2 is the patched pure-Python build."""

SOURCE = "{DIST_NAME}=={DIST_VERSION}"
SDIST_SHA256 = "{SDIST_SHA256}"
PATCH_LEVEL = {PATCH_LEVEL}
'''


def log(message: str) -> None:
    print(f"[install_detectron2] {message}", flush=True)


def run(args: list[str]) -> None:
    """Run a command (printed first), raising InstallError if it fails."""
    log("$ " + shlex.join(args))
    result = subprocess.run(args, check=False)
    if result.returncode != 0:
        raise InstallError(f"command failed with exit status {result.returncode}: {shlex.join(args)}")


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release components, e.g. '23.2.1' -> (23, 2, 1), '26.3b1' -> (26, 3)."""
    parts = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def installed_patch_level() -> int | None:
    """PATCH_LEVEL recorded in detectron2/_install_info.py, read without importing detectron2."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    marker = Path(list(spec.submodule_search_locations)[0]) / f"{MARKER_MODULE}.py"
    if not marker.is_file():
        return None
    for node in ast.parse(marker.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PATCH_LEVEL"]:
            return ast.literal_eval(node.value)
    return None


def owner_distributions() -> list[str]:
    """Distributions that provide the top-level ``detectron2`` package."""
    return sorted(set(importlib.metadata.packages_distributions().get("detectron2", [])))


def detectron2_works() -> str | None:
    """None if ``import detectron2.modeling`` works in this interpreter, else the error text."""
    try:
        with warnings.catch_warnings():  # detectron2 0.6 triggers torch's jit.script FutureWarning
            warnings.simplefilter("ignore")
            import detectron2.modeling  # noqa: F401
    except Exception as error:  # any failure means: (re)install
        return f"{type(error).__name__}: {error}"
    return None


def check_runtime_deps() -> None:
    missing = [dist for module, dist in RUNTIME_DEPS.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise InstallError(
            "missing runtime dependencies of detectron2: " + ", ".join(missing)
            + ". Install them first: python -m pip install -r requirements/base.txt"
        )


def check_pip() -> None:
    version = dist_version("pip") or "0"
    if version_tuple(version) >= PIP_MAX_EXCLUSIVE:
        limit = ".".join(map(str, PIP_MAX_EXCLUSIVE))
        raise InstallError(
            f"pip {version} refuses to download {DIST_NAME} (its sdist declares a direct-URL extra). "
            f"Run: {sys.executable} -m pip install 'pip<{limit}'  (or pass --sdist with a downloaded "
            f"{DIST_NAME}-{DIST_VERSION}.tar.gz, sha256 {SDIST_SHA256})"
        )


def ensure_build_tools() -> None:
    """pip runs setup.py with this interpreter's setuptools (no build isolation, both to download and to
    install). A fresh Python 3.11 venv has setuptools 65.5 and no `wheel`, which cannot build a wheel."""
    version = dist_version("setuptools")
    if version is not None and (version_tuple(version) >= SETUPTOOLS_MIN or dist_version("wheel") is not None):
        return
    minimum = ".".join(map(str, SETUPTOOLS_MIN))
    log(f"setuptools {version or '(missing)'} without `wheel` cannot build wheels; installing setuptools>={minimum}")
    run([sys.executable, "-m", "pip", "install", "--quiet", f"setuptools>={minimum}"])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(dest: Path) -> Path:
    """Fetch the sdist with pip. pip prepares its metadata by running setup.py, which imports torch:
    hence --no-build-isolation (torch is already in this interpreter)."""
    check_pip()
    run([
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        "--no-build-isolation", f"{DIST_NAME}=={DIST_VERSION}", "-d", str(dest),
    ])
    found = sorted(dest.glob("pb1[-_]detectron2-0.6.tar.gz"))
    if len(found) != 1:
        raise InstallError(f"expected one {DIST_NAME}-{DIST_VERSION}.tar.gz in {dest}, found {found}")
    return found[0]


def extract(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist, "r:gz") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # Python < 3.11.4; the archive's checksum was verified above
            archive.extractall(dest)
    roots = [p for p in dest.iterdir() if p.is_dir()]
    if len(roots) != 1 or not (roots[0] / "setup.py").is_file():
        raise InstallError(f"unexpected layout in {sdist}: {[p.name for p in roots]}")
    return roots[0]


def apply_edit(root: Path, edit: Edit) -> None:
    path = root / edit.path
    text = path.read_text()
    found = text.count(edit.old)
    if found != edit.count:
        raise InstallError(f"{edit.path}: expected {edit.count} occurrence(s) of {edit.old!r}, found {found}")
    path.write_text(text.replace(edit.old, edit.new))


def python_files(root: Path) -> list[Path]:
    return sorted((root / "detectron2").rglob("*.py")) + sorted((root / "projects").rglob("*.py"))


def patch(root: Path) -> None:
    """Apply every fix listed in the module docstring; raise InstallError if any text is not as expected."""
    for edit in SETUP_EDITS + SOURCE_EDITS:
        apply_edit(root, edit)
    log(f"patched setup.py ({len(SETUP_EDITS)} edits), Image.LINEAR, pkg_resources")

    counts = {}
    for path in python_files(root):
        text = path.read_text()
        new_text, found = NUMPY_ALIAS.subn(lambda m: m.group(1), text)
        if found:
            counts[path.relative_to(root).as_posix()] = found
            path.write_text(new_text)
    if counts != NUMPY_ALIAS_COUNTS:
        raise InstallError(f"numpy alias replacements {counts} differ from the expected {NUMPY_ALIAS_COUNTS}")
    log(f"replaced {sum(counts.values())} removed numpy aliases in {len(counts)} files")

    stub = root / "detectron2" / "_C.py"
    if stub.exists() or list((root / "detectron2").glob("_C.*")):
        raise InstallError("the sdist unexpectedly contains detectron2/_C.*")
    stub.write_text(C_STUB)
    (root / "detectron2" / f"{MARKER_MODULE}.py").write_text(MARKER)
    shutil.rmtree(root / "pb1_detectron2.egg-info", ignore_errors=True)  # stale build metadata
    log("wrote detectron2/_C.py (stub) and detectron2/_install_info.py (marker)")

    for path in python_files(root):
        text = path.read_text()
        for pattern in FORBIDDEN:
            if pattern.search(text):
                raise InstallError(f"{path.relative_to(root)} still contains {pattern.pattern!r} after patching")
    if not (root / "detectron2" / "model_zoo" / "configs" / CHECK_CONFIG).is_file():
        raise InstallError(f"the sdist has no detectron2/model_zoo/configs/{CHECK_CONFIG}")


VERIFY = f"""
import os, detectron2, detectron2.modeling
from detectron2 import model_zoo, {MARKER_MODULE} as info
assert info.PATCH_LEVEL == {PATCH_LEVEL}, info.PATCH_LEVEL
assert os.path.isfile(model_zoo.get_config_file({CHECK_CONFIG!r}))
print(detectron2.__version__, os.path.dirname(detectron2.__file__))
"""


def verify_sdist(sdist: Path) -> None:
    if not sdist.is_file():
        raise InstallError(f"{sdist}: no such file")
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise InstallError(f"{sdist}: sha256 {digest} != expected {SDIST_SHA256}; refusing to install it")
    log(f"sha256 ok: {sdist.name}")


def install(sdist_path: Path | None) -> None:
    """Download (unless ``sdist_path`` is given), verify, patch and pip-install the sdist, then check it works."""
    check_runtime_deps()
    if sdist_path is not None:
        verify_sdist(sdist_path)
    ensure_build_tools()
    with tempfile.TemporaryDirectory(prefix="install-detectron2-") as tmp:
        tmp = Path(tmp)
        if sdist_path is None:
            log(f"downloading {DIST_NAME}=={DIST_VERSION} (sdist)")
            sdist_path = download_sdist(tmp / "download")
            verify_sdist(sdist_path)
        root = extract(sdist_path, tmp / "src")
        patch(root)
        run([
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--force-reinstall", "--no-cache-dir", str(root),
        ])
    log("verifying in a fresh interpreter")
    result = subprocess.run([sys.executable, "-c", VERIFY], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError("the installed detectron2 does not work:\n" + result.stdout + result.stderr)
    log(f"detectron2 {result.stdout.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help=f"reinstall {DIST_NAME} even if it works")
    parser.add_argument("--sdist", type=Path, help=f"use this {DIST_NAME}-{DIST_VERSION}.tar.gz instead of downloading")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if importlib.util.find_spec("detectron2") is not None:
            if dist_version(DIST_NAME) is None:  # another detectron2, e.g. upstream built from source
                where = owner_distributions() or "an unknown distribution (editable or on PYTHONPATH?)"
                error = detectron2_works()
                if error is None and not args.force:
                    log(f"detectron2 from {where} is installed and works; leaving it alone")
                    return 0
                raise InstallError(
                    f"detectron2 from {where} is installed" + (f" but broken ({error})" if error else "")
                    + "; uninstall it first (python -m pip uninstall detectron2), then rerun this script"
                )
            if args.force:
                log("--force: reinstalling")
            elif dist_version(DIST_NAME) == DIST_VERSION and installed_patch_level() == PATCH_LEVEL:
                error = detectron2_works()
                if error is None:
                    log(f"already installed: {DIST_NAME} {DIST_VERSION}, patch level {PATCH_LEVEL}")
                    return 0
                log(f"installed detectron2 does not import ({error}); reinstalling")
            else:
                log("installed detectron2 is not at this patch level; reinstalling")
        install(args.sdist)
    except InstallError as error:
        print(f"install_detectron2: error: {error}", file=sys.stderr)
        return 1
    log(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
