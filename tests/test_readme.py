"""The README's commands work as written in a fresh shell after the two set-up commands.

DVC's stages call ``python``; in a shell where the project's environment is not active that is another Python,
without a2gnn. So a command that needs the environment (``dvc``, ``python``, ``pip``, ``pytest``, ``torchrun``) may
appear in a code block only after the README has said, in a code block of its own, ``source .venv/bin/activate``;
and ``.venv/bin/dvc`` (which fails without activation, because its stages' ``python`` is not the venv's) never.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = "source .venv/bin/activate"
NEEDS_VENV = ("dvc", "python", "python3", "pip", "pytest", "torchrun")


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the opening fence, command lines) of every fenced shell block; continuations joined."""
    blocks, lines, start, inside = [], [], 0, False
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and not inside:
            inside, start, lines, lang = True, number, [], fence.group(1)
        elif fence and inside:
            inside = False
            if lang in ("bash", "sh", "shell", ""):
                blocks.append((start, lines))
        elif inside:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line.strip())
    return blocks


def commands(line: str) -> list[str]:
    """First words of the commands of one shell line (split at ; && || |, comments dropped)."""
    line = line.split(" #")[0] if not line.startswith("#") else ""
    words = []
    for part in re.split(r"&&|\|\||;|\|", line):
        tokens = [t for t in part.split() if "=" not in t or t.startswith("-")]  # drop VAR=value prefixes
        if tokens and tokens[0] not in ("for", "do", "done"):
            words.append(tokens[0])
        elif len(tokens) > 1 and tokens[0] == "do":
            words.append(tokens[1])
    return words


def violations(text: str) -> list[str]:
    found, active = [], False
    for start, lines in code_blocks(text):
        for line in lines:
            if ".venv/bin/dvc" in line:
                found.append(f"line {start}: {line!r} (.venv/bin/dvc needs the environment active)")
            if line == ACTIVATE:
                active = True
            for word in commands(line):
                if word in NEEDS_VENV and not active:
                    found.append(f"block at line {start}: {line!r} before the README says {ACTIVATE!r}")
    return found


def test_readme_commands_state_the_environment_they_need():
    assert violations((ROOT / "README.md").read_text()) == []


@pytest.mark.parametrize("text, bad", [
    ("```bash\ndvc repro\n```\n```bash\nsource .venv/bin/activate\n```\n", 1),  # used before it is said
    ("```bash\nsource .venv/bin/activate\n```\n```bash\ndvc repro && python -m x\n```\n", 0),
    ("```bash\nmake repro\n.venv/bin/dvc exp show\n```\n", 1),  # never, even after activation
    ("```bash\nfor s in a b; do\n  python x.py \\\n   --y\ndone\n```\n", 1),
    ("```yaml\ndvc: 1\n```\n", 0),  # not a shell block
    ("```bash\nDVC_NO_ANALYTICS=1 dvc pull\n```\n", 1),
])
def test_the_check_itself(text, bad):
    assert len(violations(text)) == bad


DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_docs_commands_state_the_environment_they_need(page):
    assert violations(page.read_text()) == []


def test_readme_is_a_front_door_whose_links_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [link for link in links if not link.startswith("http")]
    assert "docs/deviations.md" in local and "docs/results.md" in local
    assert [link for link in local if not (ROOT / link).exists()] == []
    for page in DOCS:  # every page links back and its relative links resolve
        page_links = [l for l in re.findall(r"\]\(([^)#]+)\)", page.read_text()) if not l.startswith("http")]
        assert [l for l in page_links if not (page.parent / l).exists()] == [], page.name


# README "Headline results" row label -> (metrics file, key) of each "ours" figure, in the cell's order
HEADLINE = {
    "Baseline (Table 4(a))": [("pseudo_labels", "baseline")],
    "RW (Table 4(a))": [("pseudo_labels", "rw")],
    "**A²GNN** (Table 4(a))": [("pseudo_labels", "a2gnn")],
    "box-only competitors": [("pseudo_labels", "boxes"), ("pseudo_labels", "grabcut"), ("pseudo_labels", "grabcut_crf")],
    "mean IoU per box": [("pseudo_iou", "a2gnn"), ("pseudo_iou", "grabcut_crf")],
    "DeepLab on A²GNN labels": [("deeplab_miou", "a2gnn"), ("deeplab_miou_crf", "a2gnn")],
    "DeepLab on ground truth": [("deeplab_miou", "gt"), ("deeplab_miou_crf", "gt")],
    "Mask R-CNN on A²GNN instances": [("instance_ap50", "a2gnn"), ("instance_ap70", "a2gnn"), ("instance_ap75", "a2gnn")],
    "Mask R-CNN on ground-truth instances": [("instance_ap50", "gt"), ("instance_ap70", "gt"), ("instance_ap75", "gt")],
}


def headline_rows(text: str) -> list[tuple[str, str]]:
    """(label, "ours" cell) of each row of the README's headline table."""
    lines = text.split("## Headline results", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start:start + next(i for i, line in enumerate(lines[start:]) if not line.startswith("|"))]
    rows = [line.split("|")[1:-1] for line in table if "---" not in line]
    return [(cells[0].strip(), cells[1].strip()) for cells in rows if cells[1].strip() != "ours"]


def test_readme_headline_figures_are_the_committed_metrics():
    import json

    from a2gnn.reporting.report import pct

    rows = headline_rows((ROOT / "README.md").read_text())
    assert len(rows) == len(HEADLINE)
    for label, cell in rows:
        keys = [spec for tail, spec in HEADLINE.items() if label.endswith(tail) or tail in label]
        assert len(keys) == 1, label
        want = [pct(json.loads((ROOT / "metrics" / f"{file}.json").read_text())[key]) for file, key in keys[0]]
        assert cell.replace("*", "").split(" / ") == want, (label, cell, want)


def test_architecture_names_every_module():
    """docs/ARCHITECTURE.md's layout names every module of the package, under its layer's heading."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    layout = text[text.index("## Layout"):text.index("## Conventions")]
    sections = {}  # layer folder -> the layout lines below its heading
    current = ""
    for line in layout.splitlines():
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("    ") and stripped.split()[0].endswith("/"):
            current = stripped.split()[0].rstrip("/")
        sections.setdefault(current, []).append(line)
    missing = []
    for path in sorted((ROOT / "a2gnn").rglob("*.py")):
        rel = path.relative_to(ROOT / "a2gnn")
        if path.name == "__init__.py":
            continue
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        if not any(path.name in line for line in sections.get(folder, [])):
            missing.append(str(rel))
    assert missing == []


def table_cells(text: str, first_cell_prefix: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell starts with ``first_cell_prefix``."""
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].replace("**", "").startswith(first_cell_prefix):
                return [c.replace("**", "") for c in cells]
    raise AssertionError(f"no table row starting with {first_cell_prefix!r}")


RESULTS_ROWS = {  # docs/results.md: row label prefix -> (column index, metrics file, key), checked against metrics/
    "M_I (CAM": [(1, "seeds_miou", "M_I"), (3, "seeds_precision", "M_I")],
    "M_B (GrabCut": [(1, "seeds_miou", "M_B"), (3, "seeds_precision", "M_B")],
    "M_F (fusion": [(1, "seeds_miou", "M_F"), (3, "seeds_precision", "M_F")],
    "M_g (confident": [(1, "seeds_miou", "M_g"), (3, "seeds_precision", "M_g")],
    "box-as-mask": [(1, "pseudo_labels", "boxes"), (3, "pseudo_iou", "boxes")],
    "GrabCut alone": [(1, "pseudo_labels", "grabcut"), (3, "pseudo_iou", "grabcut")],
    "Baseline (CAM in boxes": [(1, "pseudo_labels", "baseline"), (3, "pseudo_iou", "baseline")],
    "RW (random walk": [(1, "pseudo_labels", "rw"), (3, "pseudo_iou", "rw")],
    "A²GNN, full": [(1, "pseudo_labels", "a2gnn"), (3, "pseudo_iou", "a2gnn")],
    "GrabCut + CRF": [(1, "pseudo_labels", "grabcut_crf"), (3, "pseudo_iou", "grabcut_crf")],
    "default (`params.yaml`)": [(1, "pseudo_labels", "a2gnn"), (2, "pseudo_labels", "rw"),
                                (3, "pseudo_labels", "baseline"), (4, "pseudo_labels", "grabcut_crf")],
}


def test_results_page_figures_are_the_committed_metrics():
    """docs/results.md's seed and pseudo-label tables hold exactly the committed metrics (never copied by hand)."""
    from a2gnn.reporting.report import pct

    text = (ROOT / "docs" / "results.md").read_text()
    wrong = []
    for prefix, checks in RESULTS_ROWS.items():
        cells = table_cells(text, prefix)
        for column, file, key in checks:
            want = pct(json.loads((ROOT / "metrics" / f"{file}.json").read_text())[key])
            if cells[column] != want:
                wrong.append(f"{prefix} column {column}: page {cells[column]}, metrics/{file}.json {want}")
    assert wrong == []


ABLATION_BULLETS = {"Table 4(a)": "table4a", "Table 4(b)": "table4b", "Table 4(c)": "table4c",
                    "Table 4(d)": "table4d", "Table 4(e)": "table4e"}


def bullet(text: str, title: str) -> str:
    """The text of the Markdown bullet that starts with ``* **<title>**``, up to the next bullet."""
    start = text.index(f"* **{title}**")
    end = text.find("\n* **", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_ablation_page_figures_are_the_committed_tables():
    """docs/ablations.md's "paper → ours" pairs of Table 4(a)-(e) are the rows of metrics/ablations/<table>.json,
    in order (never copied by hand)."""
    from a2gnn.reporting.report import pct

    text = (ROOT / "docs" / "ablations.md").read_text()
    wrong = []
    for title, table in ABLATION_BULLETS.items():
        pairs = re.findall(r"(\d+\.\d) → \**(\d+\.\d)\**", " ".join(bullet(text, title).split()))
        rows = json.loads((ROOT / "metrics" / "ablations" / f"{table}.json").read_text())["rows"]
        want = [(f"{r['paper']:.1f}", pct(r["ours"] / 100)) for r in rows if r["paper"] is not None]
        if pairs != want:
            wrong.append(f"{title}: page {pairs}, metrics/ablations/{table}.json {want}")
    assert wrong == []
