r"""What every trained network shares (CAM of Eq. 1, the affinity CNN of Eq. 6-13, DeepLab): optimizer
construction, the poly learning-rate schedule, and checkpoints that let an interrupted training resume.

Optimizer (:func:`build_optimizer`): ``"sgd"`` (momentum; PSA / SEAM / DeepLab), ``"adam"`` or ``"adamw"`` over
parameter groups (:func:`param_groups`: backbone at the base rate, new layers at ``head_lr_mult`` times it, as
DeepLab and the A²GNN authors' affinity code do). Each group remembers its ``initial_lr``.

Poly schedule (:class:`PolySchedule`, DeepLab-v2 §4 / PSA / SEAM), for optimiser step :math:`t` of :math:`T`:

.. math::
    \mathrm{lr}_t = \mathrm{lr}_0 \,(1 - t / T)^{p}

with :math:`p` = ``poly_power`` (0.9 in all the papers).

One shape for the three trainings: :class:`OptimConfig`, the ``optim`` block of the ``cam``, ``affinity`` and
``deeplab`` sections (optimizer name, base rate, new-layer multiple, momentum, weight decay, poly power);
:func:`make_optimizer` and :func:`make_schedule` build from it.

Checkpoints and resume (:class:`Checkpointer`): after every epoch the training writes ``<dir>/last.pt`` holding
the model, optimizer and schedule state, the number of finished epochs, the state of every RNG the loop draws
from (torch CPU (+ CUDA), python ``random``, numpy's global RNG and the loop's own ``numpy.random.Generator``)
and a *fingerprint* (config, seed, image ids). A rerun whose fingerprint matches continues after the last
finished epoch and reaches bit-identical weights on the CPU (tested); a different fingerprint starts over.

**Where checkpoints live**: ``checkpoints/<stage>/last.pt`` under the repository root, which is *not* a DVC
output (DVC deletes a stage's declared outputs before running it, so a checkpoint inside them could never be
resumed from). The :class:`Checkpointer` writes ``checkpoints/.gitignore`` (``*``) on first use, so git ignores
the folder without touching the repository's ``.gitignore``. A finished training leaves its last checkpoint
in place: a stage that crashes after training (e.g. while writing outputs) reruns without retraining. Delete
``checkpoints/`` to reclaim the space; nothing else reads it.

Writes are atomic (:func:`a2gnn.core.io.save_torch`): a kill during a save leaves the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from a2gnn.core import distributed, numerics
from a2gnn.core.config import Config
from a2gnn.core.io import load_torch, save_torch
from a2gnn.core.registry import Registry

log = logging.getLogger(__name__)

OPTIMIZERS: Registry = Registry("optimizer")
"""``<section>.optim.name`` of the cam / affinity / deeplab sections -> ``fn(groups, lr, momentum, weight_decay)``."""
CHECKPOINT_ROOT = Path("checkpoints")
"""Default root of resumable checkpoints (relative to the working directory = the repository root under DVC)."""
CHECKPOINT_FILE = "last.pt"


# ------------------------------------------------------------------------------------------------------------
# Optimizer
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OptimConfig(Config):
    """``optim`` block of the ``cam``, ``affinity`` and ``deeplab`` sections: the optimiser and its poly schedule.

    The defaults are the embedded CPU profile's (Adam 1e-3 from scratch); the papers' trainings are SGD with
    momentum 0.9, weight decay 5e-4, poly power 0.9 and new layers at 10x (PSA / SEAM / DeepLab-v2).
    """

    SECTION: ClassVar[str] = "optim"
    name: str = "adam"  # OPTIMIZERS: sgd (momentum; PSA / SEAM / DeepLab-v2) | adam | adamw
    lr: float = 1e-3  # base learning rate lr_0 of the poly schedule
    head_lr_mult: float = 1.0  # lr multiple of the new layers (classifier / 1x1 heads; papers: 10 with SGD)
    momentum: float = 0.9  # SGD momentum (unused by Adam / AdamW)
    weight_decay: float = 5e-4  # L2 weight decay (AdamW: decoupled)
    poly_power: float = 0.9  # p of lr_t = lr_0 (1 - t / T)^p (0 = constant rate)

    def validate(self) -> None:
        self.check(self.name in OPTIMIZERS, "name", f"one of {OPTIMIZERS.names()}")
        self.check(self.lr > 0, "lr", "> 0")
        self.check(self.head_lr_mult > 0, "head_lr_mult", "> 0")
        self.check(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        self.check(self.weight_decay >= 0, "weight_decay", ">= 0")
        self.check(self.poly_power >= 0, "poly_power", ">= 0")


def make_optimizer(model: nn.Module, cfg: OptimConfig, head: Iterable[nn.Parameter] | None = None
                   ) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names over ``model``'s trainable parameters, ``head`` at ``head_lr_mult`` times
    the base rate (:func:`param_groups`)."""
    groups = param_groups(model, cfg.lr, head, cfg.head_lr_mult)
    return build_optimizer(groups, cfg.name, cfg.lr, cfg.momentum, cfg.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig) -> "PolySchedule":
    """The poly schedule of ``cfg`` over ``total_steps`` optimiser steps."""
    return PolySchedule(optimizer, total_steps, cfg.poly_power)


def param_groups(
    model: nn.Module, lr: float, head: Iterable[nn.Parameter] | None = None, head_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Parameter groups: everything not in ``head`` at ``lr``, then ``head`` at ``lr * head_lr_mult``.

    Without ``head`` it is one group of all parameters. Order inside a group is ``model.parameters()``'s.
    Parameters that do not require gradients (a frozen backbone) are left out.
    """
    trained = [p for p in model.parameters() if p.requires_grad]
    if head is None:
        return [{"params": trained, "lr": lr}]
    head = [p for p in head if p.requires_grad]
    ids = {id(p) for p in head}
    groups = [
        {"params": [p for p in trained if id(p) not in ids], "lr": lr},
        {"params": head, "lr": lr * head_lr_mult},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    groups: Sequence[dict[str, Any]], name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``OPTIMIZERS[name]`` over ``groups`` (each keeps its own ``lr``; ``initial_lr`` is set from it)."""
    make = OPTIMIZERS[name]
    groups = [dict(g) for g in groups]
    for g in groups:
        g.setdefault("lr", lr)
        g["initial_lr"] = g["lr"]
    return make(groups, lr, momentum, weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict[str, Any]], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum (PSA / SEAM / DeepLab)."""
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict[str, Any]], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, L2 weight decay added to the gradient (``momentum`` unused)."""
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **numerics.adam_options())


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict[str, Any]], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, decoupled weight decay (``momentum`` unused)."""
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **numerics.adam_options())


# ------------------------------------------------------------------------------------------------------------
# Poly schedule
# ------------------------------------------------------------------------------------------------------------
def poly_factor(step: int, total_steps: int, power: float) -> float:
    """``(1 - step / total_steps) ** power`` (1 at step 0, 0 at the end for power > 0)."""
    return (1.0 - step / total_steps) ** power


class PolySchedule:
    """Poly learning rate: call :meth:`apply` before each optimiser step, :meth:`step` after it.

    ``apply`` sets every group's ``lr = initial_lr * (1 - t / T) ** power`` for the current step t.
    ``state_dict`` holds t, so a resumed training continues the decay where it stopped.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, power: float):
        if total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.last_step = 0
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])

    def apply(self) -> float:
        scale = poly_factor(self.last_step, self.total_steps, self.power)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * scale
        return scale

    def step(self) -> None:
        self.last_step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "total_steps": self.total_steps, "power": self.power}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["total_steps"]) != self.total_steps:
            raise ValueError(f"schedule length differs: checkpoint {state['total_steps']}, now {self.total_steps}")
        self.last_step = int(state["last_step"])


# ------------------------------------------------------------------------------------------------------------
# RNG state
# ------------------------------------------------------------------------------------------------------------
def rng_state(generators: Mapping[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Every RNG a training loop may draw from (torch CPU / CUDA, python, numpy global, named Generators)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "generators": {k: g.bit_generator.state for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, np.random.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured (the named Generators in place)."""
    torch.set_rng_state(state["torch"])
    version, internal, *rest = state["python"]
    random.setstate((version, tuple(internal), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    for key, gen in (generators or {}).items():
        gen.bit_generator.state = state["generators"][key]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------------------
def fingerprint(**parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (config dicts, seed, image ids): what a checkpoint must match to resume."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_arrays(arrays: Iterable[np.ndarray]) -> str:
    """sha256 over the shapes, dtypes and bytes of ``arrays`` (in memory training data, for :func:`fingerprint`)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def digest_files(paths: Iterable[os.PathLike | str]) -> str:
    """sha256 over the names and bytes of ``paths`` (input files of a training, for :func:`fingerprint`)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def checkpoint_dir(stage: str, root: os.PathLike | str = CHECKPOINT_ROOT) -> Path:
    """``<root>/<stage>``: where the stage ``stage`` keeps its resumable checkpoint."""
    return Path(root) / stage


def prepare_checkpoint_dir(directory: os.PathLike | str) -> Path:
    """Create ``directory``; under ``checkpoints/`` also the ``.gitignore`` that keeps checkpoints out of git."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ignore = directory.parent / ".gitignore"
    if directory.parent.name == CHECKPOINT_ROOT.name and not ignore.exists():
        ignore.write_text("# resumable training checkpoints (a2gnn.core.training): never committed\n*\n")
    return directory


def clear_checkpoint(directory: os.PathLike | str | None, patterns: Sequence[str] = (CHECKPOINT_FILE,)) -> None:
    """Delete the files of ``directory`` matching ``patterns`` (default ``last.pt``) once a stage has written its
    outputs.

    A checkpoint only serves to resume an *interrupted* run; one left after success would let a later rerun of
    the stage (e.g. after a code change, which the fingerprint does not see) resume a finished, stale training.
    """
    if directory is None or not Path(directory).is_dir():
        return
    for pattern in patterns:
        for path in sorted(Path(directory).glob(pattern)):
            path.unlink()


class Checkpointer:
    """Save / restore the full training state in ``directory/last.pt`` (``directory=None``: do nothing).

    ``fingerprint`` identifies the run (see :func:`fingerprint`); :meth:`restore` ignores a checkpoint of a
    different run (logged) and returns 0, so the training starts over.
    """

    def __init__(self, directory: os.PathLike | str | None, fingerprint: str):
        self.directory = None if directory is None else Path(directory)
        self.fingerprint = fingerprint

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / CHECKPOINT_FILE

    def save(
        self,
        epoch: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: PolySchedule,
        generators: Mapping[str, np.random.Generator] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the state after ``epoch`` finished epochs (atomic; rank 0 only when several processes train)."""
        if self.directory is None or not distributed.is_main():
            return
        prepare_checkpoint_dir(self.directory)
        state = {
            "fingerprint": self.fingerprint,
            "epoch": int(epoch),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": rng_state(generators),
            "extra": dict(extra or {}),
        }
        save_torch(self.path, state)

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: PolySchedule,
        generators: Mapping[str, np.random.Generator] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Load the checkpoint into the given objects -> (finished epochs, extra); (0, {}) if there is none
        or it belongs to another run. A corrupt checkpoint raises DataError naming the file."""
        if self.path is None or not self.path.is_file():
            return 0, {}
        state = load_torch(self.path, "training checkpoint")
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            log.warning("%s: checkpoint of another run (config, seed or data differ): starting over", self.path)
            return 0, {}
        device = next(iter(model.parameters())).device
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"], generators)
        model.to(device)
        log.info("%s: resuming after epoch %d", self.path, state["epoch"])
        return int(state["epoch"]), dict(state.get("extra", {}))


@contextlib.contextmanager
def live_curves(live_dir: os.PathLike | str, prefix: str, resume: bool) -> Iterator[Callable[[int, Mapping[str, float]], None]]:
    """dvclive logging of training curves: yields ``log(step, {name: value})`` that writes ``<prefix>/<name>`` at
    ``step`` (a DVC plot). ``resume``: continue the curves of an interrupted training (else start afresh)."""
    from dvclive import Live

    with Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None) as live:

        def log(step: int, values: Mapping[str, float]) -> None:
            live.step = step
            for name, value in values.items():
                live.log_metric(f"{prefix}/{name}", value)
            live.next_step()

        yield log
