"""Which DVC stages an experiment's ``-S`` switches rerun, computed from ``dvc.yaml``'s params deps and the stage
graph (``python -m a2gnn.pipeline.ablations <table> --dry`` prints it per row)."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Mapping, Sequence

from a2gnn.pipeline.ablation_rows import TARGET
from a2gnn.pipeline.stage_deps import _names, render


def lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; KeyError when a part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def with_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(values))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _overlap(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stage_graph(dvc_yaml: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, set[str]]:
    """Per stage, the stages it reads an output of (its direct upstream)."""
    stages = dvc_yaml["stages"]
    outs = {name: [render(o, values) for key in ("outs", "metrics", "plots") for o in _names(spec.get(key))]
            for name, spec in stages.items()}
    graph = {}
    for name, spec in stages.items():
        deps = [render(d, values) for d in _names(spec.get("deps"))]
        graph[name] = {other for other, produced in outs.items() if other != name
                       and any(_overlap(d, o) for d in deps for o in produced)}
    return graph


def changed_stages(dvc_yaml: Mapping[str, Any], values: Mapping[str, Any], overrides: Mapping[str, Any]) -> set[str]:
    """Stages whose declared params (a section or a key) include an override, or whose templated cmd/paths change."""
    new = with_overrides(values, overrides)
    found = set()
    for name, spec in dvc_yaml["stages"].items():
        declared = _names(spec.get("params"))
        if any(key == d or key.startswith(d + ".") or d.startswith(key + ".") for key in overrides for d in declared):
            found.add(name)
        elif render(json.dumps(spec), values) != render(json.dumps(spec), new):
            found.add(name)
    return found


def _reach(start: Iterable[str], edges: Mapping[str, set[str]]) -> set[str]:
    found, frontier = set(start), list(start)
    while frontier:
        for nxt in edges.get(frontier.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                frontier.append(nxt)
    return found


def downstream(graph: Mapping[str, set[str]], stages: Iterable[str]) -> set[str]:
    """``stages`` and every stage that (transitively) reads one of their outputs."""
    reverse: dict[str, set[str]] = {name: set() for name in graph}
    for name, ups in graph.items():
        for up in ups:
            reverse[up].add(name)
    return _reach(stages, reverse)


def upstream(graph: Mapping[str, set[str]], stage: str) -> set[str]:
    """``stage`` and every stage it (transitively) reads outputs of."""
    return _reach([stage], graph)


def stages_to_rerun(dvc_yaml: Mapping[str, Any], values: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                    target: str | Sequence[str] | None = TARGET) -> set[str]:
    """Stages a row's experiment reruns (the rest are reused from the cache); only ``target``'s upstream if given."""
    if not overrides:
        return set()
    new = with_overrides(values, overrides)
    graph = stage_graph(dvc_yaml, new)
    rerun = downstream(graph, changed_stages(dvc_yaml, values, overrides))
    if not target:
        return rerun
    return rerun & set().union(*(upstream(graph, t) for t in stage_targets(target)))


def stage_targets(target: str | Sequence[str] | None) -> list[str]:
    return [] if not target else [target] if isinstance(target, str) else list(target)
