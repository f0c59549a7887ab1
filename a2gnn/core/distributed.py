"""Data-parallel training over processes: one launcher for every training stage.

``launch(fn, processes, device, *args)`` runs ``fn(*args)`` in ``processes`` processes joined in one
``torch.distributed`` group (gloo on the CPU; on CUDA detectron2's ``launch``, one GPU per process, NCCL), or
directly in this process when ``processes <= 1``. The ``runtime.train_processes`` knob sets it; the lab runs
use it with one process per GPU, the 2-core default with two CPU processes (each single-threaded).

Inside ``fn`` every rank builds the same model from the same seed, takes its share of each global batch
(:func:`rank_share`: samples ``rank, rank + world, ...``), and wraps the model with :func:`wrap_ddp`, which
averages the gradients over ranks: a step on the global batch, split. Only rank 0 (:func:`is_main`) writes
outputs, logs and checkpoints.

Determinism: for a fixed process count every rank's arithmetic is fixed and gloo's two-rank sum is
commutative, so outputs are byte-reproducible; a different process count changes the float round-off (and the
batch statistics of BatchNorm, computed per rank), so like ``torch_threads`` the committed ``dvc.lock`` holds
for the process count in params.yaml.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StageJob:
    """What every rank of a training stage needs (picklable: sent to spawned processes). Each training module
    subclasses it with the stage's own paths and config and gives a ``run_*_job(job)`` function to :func:`launch`."""

    data_root: str
    checkpoints: str  # resume folder (checkpoints/<stage>)
    dataset: Any  # a2gnn.data.formats.DatasetConfig
    seed: int
    device: str


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def rank_share(items: Sequence[T]) -> list[T]:
    """This rank's part of a global batch: items ``rank, rank + world, ...`` (all of them in one process)."""
    return list(items[rank() :: world_size()])


def wrap_ddp(model: nn.Module) -> nn.Module:
    """DistributedDataParallel around ``model`` when several processes train (else ``model`` itself)."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)  # buffers (BN statistics) from rank 0


def average_gradients(model: nn.Module, weight: float | None = None) -> None:
    """All-reduce the gradients of ``model`` over ranks (one flat buffer; no-op in one process).

    Each rank contributes ``weight * grad`` (default ``1 / world``); with ``weight = n_rank / n_batch`` for a loss
    that is a mean over the rank's ``n_rank`` samples the result is exactly the gradient of the mean over the
    whole batch, even when the shares differ in size (a rank with no sample passes weight 0). A missing gradient
    counts as zeros. The explicit alternative to :func:`wrap_ddp` for loops that call a model's sub-modules
    directly (DDP only synchronises what goes through its ``forward``). Call it between ``backward()`` and
    ``optimizer.step()``."""
    if world_size() == 1:
        return
    weight = 1.0 / world_size() if weight is None else float(weight)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    flat *= weight
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), as DDP does before each forward."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalar logs over ranks (for logging only); identity in one process."""
    if world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_worker(local_rank: int, fn: Callable, processes: int, url: str, threads: int, args: tuple) -> None:
    torch.set_num_threads(max(1, threads))
    dist.init_process_group("gloo", init_method=url, world_size=processes, rank=local_rank)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], processes: int, device: str, *args: Any, threads: int = 1) -> None:
    """Run ``fn(*args)`` on ``processes`` ranks (see the module docstring); ``threads``: torch threads per rank.

    Under ``torchrun`` (``WORLD_SIZE`` set by it) the processes already exist: the group is joined from the
    environment and ``fn`` runs once in this process, whatever ``processes`` says."""
    if "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if cuda else "gloo")
        try:
            fn(*args)
        finally:
            dist.destroy_process_group()
        return
    if processes <= 1:
        fn(*args)
        return
    if device.startswith("cuda"):
        from detectron2.engine import launch as d2_launch

        d2_launch(fn, processes, dist_url="auto", args=args)
        return
    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    url = f"tcp://127.0.0.1:{_free_port()}"
    mp.start_processes(_cpu_worker, args=(fn, processes, url, threads, args), nprocs=processes, join=True,
                       start_method="spawn")
