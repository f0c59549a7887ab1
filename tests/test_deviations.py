"""The ledger of departures from the paper (docs/deviations.md) names only params that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAM = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)(?:[=:][^`]*)?`")  # `section.key` or `section.key=value`


def ledger_params(text: str) -> list[str]:
    """Dotted param names in the **param** column (the fifth) of every ledger table row."""
    names = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not cells[0].isdigit():
            continue
        names += PARAM.findall(cells[4])
    return names


def has_param(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_ledger_rows_name_params_that_exist():
    names = ledger_params((ROOT / "docs" / "deviations.md").read_text(encoding="utf-8"))
    assert len(names) >= 25  # the ledger is read, not an empty table
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    missing = sorted({n for n in names if not has_param(params, n)})
    assert not missing, f"docs/deviations.md names params missing from params.yaml: {missing}"


def test_ledger_parser_by_hand():
    row = "| 3 | Eq. 9 | a | b | `gnn.lr`: x / `crf.gaussian_sxy=2`; `not_dotted` | c | d |"
    assert ledger_params(row) == ["gnn.lr", "crf.gaussian_sxy"]
    assert ledger_params("| # | where | paper | code | `gnn.lr` | d | e |") == []  # the header row
    assert not has_param({"gnn": {"lr": 1}}, "gnn.beta") and has_param({"gnn": {"lr": 1}}, "gnn.lr")
