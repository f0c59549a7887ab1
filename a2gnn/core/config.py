"""Typed configuration: ``params.yaml`` sections -> frozen dataclasses.

Every module that has hyper-parameters declares a frozen dataclass deriving from :class:`Config`
next to the code that uses it (the field comments name the paper's symbol). Stages build them
with ``XConfig.from_params(params["section"])``, which rejects unknown keys, coerces lists to
tuples and runs the class's ``validate()`` so out-of-range values fail before any work is done.
"""

from __future__ import annotations

import dataclasses
import os
import random
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A parameter is unknown, has the wrong type or is out of range; the message names it."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of all typed configs."""

    #: params.yaml section name, used in error messages (override in subclasses).
    SECTION: typing.ClassVar[str] = "?"

    @classmethod
    def from_params(cls: type[C], section: Mapping[str, Any] | None) -> C:
        section = dict(section or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ConfigError(f"params.yaml [{cls.SECTION}]: unknown key(s) {unknown}; known: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in section.items():
            kwargs[key] = _coerce(cls.SECTION, key, value, hints[key])
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values. Subclasses extend this."""

    def check(self, condition: bool, key: str, requirement: str) -> None:
        """Helper for ``validate``: fail with a message naming ``section.key``."""
        if not condition:
            raise ConfigError(
                f"params.yaml [{self.SECTION}] {key}={getattr(self, key)!r}: must be {requirement}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(section: str, key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Config):
        if not isinstance(value, Mapping):
            raise ConfigError(f"params.yaml [{section}] {key}: expected a mapping, got {value!r}")
        return hint.from_params(value)
    if value is None:
        if type(None) in args or hint is Any:
            return None
        raise ConfigError(f"params.yaml [{section}] {key}: may not be null")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(section, key, value, non_none[0])
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params.yaml [{section}] {key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(section, key, v, inner) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"params.yaml [{section}] {key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params.yaml [{section}] {key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params.yaml [{section}] {key}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"params.yaml [{section}] {key}: expected a string, got {value!r}")
        return value
    return value


def load_params(path: os.PathLike | str = "params.yaml") -> dict[str, Any]:
    """Read params.yaml (the only place hyper-parameters come from)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file is missing")
    with open(path) as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return params


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic algorithms (CPU runs are exact)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep io-only use light
        return
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclasses.dataclass(frozen=True)
class BaseConfig(Config):
    """``base`` section: the one result-changing setting every stage shares."""

    SECTION: typing.ClassVar[str] = "base"
    seed: int = 0  # global RNG seed (python, numpy, torch)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig(Config):
    """``runtime`` section: how fast, not what. No stage lists it as a DVC param dependency.

    Changing any of these leaves every output byte-identical (tested), with two caveats: torch's CPU
    kernels may reduce floats in a thread-count-dependent order, and ``train_processes`` splits each batch
    over processes (different round-off, per-process BatchNorm statistics), so ``torch_threads`` and
    ``train_processes`` are pinned in params.yaml and the committed ``dvc.lock`` is byte-reproducible at
    those values (see README).
    """

    SECTION: typing.ClassVar[str] = "runtime"
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    workers: int = 2  # processes for per-image CPU work (GrabCut, dense CRF, A²GNN batches); 0 = in this process
    torch_threads: int = 1  # torch intra-op threads (0 = torch's default: all cores)
    gnn_batch_images: int = 16  # images whose A²GNNs are optimised together (stacked per-image parameters)
    chunk_images: int = 200  # images whose graphs are held in memory at once (bounds memory at VOC scale)
    train_processes: int = 2  # data-parallel processes of the training stages (DDP; one per GPU on a lab machine)

    def validate(self) -> None:
        self.check(self.workers >= 0, "workers", ">= 0")
        self.check(self.torch_threads >= 0, "torch_threads", ">= 0")
        self.check(self.device == "cpu" or self.device.startswith("cuda"), "device", "'cpu' or 'cuda[:N]'")
        self.check(self.gnn_batch_images >= 1, "gnn_batch_images", ">= 1")
        self.check(self.chunk_images >= 1, "chunk_images", ">= 1")
        self.check(self.train_processes >= 1, "train_processes", ">= 1")


PSEUDO_LABEL_METHODS = ("a2gnn", "rw", "baseline", "grabcut", "boxes")
"""Pseudo-label folders ``outputs/pseudo_labels_<method>`` a downstream model can train on (``deeplab.labels``,
``instances.labels``): A²GNN, the random walk, the Table 4(a) Baseline, GrabCut alone and box-as-mask."""
