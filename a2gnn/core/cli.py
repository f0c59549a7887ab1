"""What every ``stages/*.py`` script shares: the argument parser, params loading, seeding, progress.

A stage reads ``params.yaml`` (or ``--params``) and takes its paths from argv, exactly as written in
``dvc.yaml``'s ``cmd``. Progress bars and logs go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from tqdm import tqdm

from a2gnn.core import numerics
from a2gnn.core.config import BaseConfig, RuntimeConfig, load_params, seed_everything
from a2gnn.core.io import DataError

T = TypeVar("T")


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def setup_stage(args: argparse.Namespace) -> tuple[dict[str, Any], BaseConfig, RuntimeConfig]:
    """Load params, seed every RNG (``base``) and apply the ``runtime`` section. Returns (params, base, runtime).

    ``runtime`` (device, processes, threads, batch sizes that do not change results) is read here for every
    stage and is never a DVC param dependency: changing it reruns nothing.
    """
    numerics.check()  # torch/numpy run the pinned kernels (a stage that imported them before a2gnn fails here)
    check_package_origin()
    params = load_params(args.params)
    base = BaseConfig.from_params(params.get("base"))
    runtime = RuntimeConfig.from_params(params.get("runtime"))
    seed_everything(base.seed)
    if runtime.torch_threads:
        import torch

        torch.set_num_threads(runtime.torch_threads)
    return params, base, runtime


def check_package_origin(cwd: Path | None = None) -> None:
    """Refuse to run when the working directory holds an ``a2gnn/`` package other than the one imported.

    DVC runs a stage in the repository (or, for a queued experiment, in a temporary copy of it) and hashes that
    folder's ``a2gnn/`` files in ``dvc.lock``; the code that runs must be those files. ``python -m stages.<name>``
    (the form of every ``cmd``) guarantees it. ``python stages/<name>.py`` by hand does not: an editable install
    of another checkout would supply the package. Raises DataError naming both folders.
    """
    local = (Path.cwd() if cwd is None else Path(cwd)) / "a2gnn" / "__init__.py"
    if not local.is_file():
        return
    import a2gnn

    imported = Path(a2gnn.__file__).resolve()
    if imported != local.resolve():
        raise DataError(local.parent, f"this folder's package is not the one imported ({imported.parent}): run the "
                                      "stage from the repository root as `python -m stages.<name>`, as dvc.yaml does")


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr (quiet when stderr is not a terminal, except start/end lines)."""
    return iter(tqdm(iterable, desc=desc, total=total, file=sys.stderr, mininterval=2.0, dynamic_ncols=True))


def run_stage(main, argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; known input/param errors print one clear line and exit with status 1.

    SIGTERM (e.g. a killed ``dvc repro``) becomes SystemExit, so the atomic writers' cleanup runs and no
    temporary output folders are left behind.
    """
    import signal

    from a2gnn.core.config import ConfigError
    from a2gnn.core.io import DataError

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        main(argv)
    except (DataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
