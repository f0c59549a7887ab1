"""Order-preserving parallel map over processes for per-image CPU work (GrabCut, dense CRF)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Sequence, TypeVar

from a2gnn.core.cli import progress

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str = "") -> list[R]:
    """``[fn(x) for x in items]`` using ``workers`` processes (0 or 1: in this process).

    Results keep the input order, so outputs do not depend on scheduling. ``fn`` must be a
    module-level function (picklable). Worker processes use one thread each.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in progress(items, desc=desc, total=len(items))]
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "cv2", "torch", "a2gnn.core.parallel"])
    with ctx.Pool(processes=min(workers, len(items)), initializer=_single_thread) as pool:
        return list(progress(pool.imap(fn, items, chunksize=1), desc=desc, total=len(items)))


def _single_thread() -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
