"""The one plug-in mechanism of the package: a named table of choices that params select by name.

Every plug-in point (backbones, GNN layer kinds, edge kinds, node layouts, supervision forms, dataset formats,
optimizers, norms, consistency rules, ...) is one :class:`Registry`. An entry is added once, by decorating
it (``@LAYERS.register("a2gnn")``) or with :meth:`Registry.add`; a second entry under the same name is an
error. A config validates its name field against the registry (``name in REGISTRY``), and a lookup of an
unknown name raises :class:`UnknownChoice` listing the valid ones::

    NORMS = Registry("norm")

    @NORMS.register("bn")
    def batch_norm(channels: int) -> nn.Module: ...

    NORMS["bn"](64)        # the registered object
    NORMS.names()          # ("bn", ...) in registration order
    NORMS["bx"]            # UnknownChoice: unknown norm 'bx'; one of ('bn', ...)

Entries keep their registration order, so ``names()`` (and error messages, and docs generated from them)
are stable.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownChoice(KeyError, ValueError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Names -> plug-in objects of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; ValueError if the name is taken. Returns ``obj``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REGISTRY.register("name")`` above a function or class."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownChoice(f"unknown {self.kind} {name!r}; one of {self.names()}") from None

    get = __getitem__

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
