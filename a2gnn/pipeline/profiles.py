"""Profiles: a small YAML overlay of params (e.g. ``profiles/real_photos.yaml``) merged into params.yaml.

``python -m a2gnn.pipeline.profiles PROFILE [--params params.yaml] [--set key.path=value ...]`` writes the merge
back into params.yaml with its comments, key order and layout kept (ruamel round trip), so the result is
an ordinary params.yaml that ``dvc repro`` / ``dvc exp run`` and ``git diff`` read as usual. Keys of the
overlay must already exist in params.yaml (a typo is an error, not a silently ignored setting); mappings
merge key by key, everything else (scalars, lists) replaces. ``--set`` values are parsed as YAML
(``--set dataset.root=/data/mine``, ``--set cam.epochs=5``) and applied after the profile.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from a2gnn.core.io import DataError, atomic_file


def merge_into(target: MutableMapping, overlay: Mapping, where: str = "") -> list[str]:
    """Merge ``overlay`` into ``target`` in place; returns the dotted keys whose value changed.

    Raises KeyError naming the dotted key when ``overlay`` has a key ``target`` lacks."""
    changed = []
    for key, value in overlay.items():
        path = f"{where}{key}"
        if key not in target:
            raise KeyError(path)
        if isinstance(value, Mapping) and isinstance(target[key], MutableMapping):
            changed += merge_into(target[key], value, path + ".")
        elif target[key] != value:
            if isinstance(value, list) and isinstance(target[key], CommentedSeq):
                flow = target[key].fa.flow_style()
                value = CommentedSeq(value)
                if flow:
                    value.fa.set_flow_style()
            target[key] = value
            changed.append(path)
    return changed


def parse_set(item: str) -> dict[str, Any]:
    """``"a.b.c=value"`` -> ``{"a": {"b": {"c": yaml(value)}}}``."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects key.path=value, got {item!r}")
    value: Any = yaml.safe_load(raw) if raw else None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def apply_profile(params_path: Path, overlays: Sequence[Mapping]) -> list[str]:
    """Merge each overlay into the params file (atomically, comments kept); returns the changed keys."""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    data = rt.load(params_path.read_text())
    changed: list[str] = []
    for overlay in overlays:
        try:
            changed += merge_into(data, overlay)
        except KeyError as exc:
            raise DataError(params_path, f"has no key {exc.args[0]!r} (typo in the profile or --set?)") from None
    buffer = io.StringIO()
    rt.dump(data, buffer)
    with atomic_file(params_path) as tmp:
        Path(tmp).write_text(buffer.getvalue())
    return changed


def load_profile(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "profile file is missing")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, f"is not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(path, "must be a mapping of params sections")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, nargs="?", help="YAML overlay of params (omit to apply only --set)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra setting (repeatable)")
    args = parser.parse_args(argv)
    try:
        overlays = ([load_profile(args.profile)] if args.profile else []) + [parse_set(s) for s in args.set]
        changed = apply_profile(args.params, overlays)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.params}: {len(changed)} value(s) changed" + "".join(f"\n  {k}" for k in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
