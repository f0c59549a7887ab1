"""Helpers shared by several test files (import as ``from helpers import ...``; tests/ is on sys.path because
tests/conftest.py lives there): the repository root, the tiny embedded dataset's config, running stage scripts and
commands, a stand-in backbone, and small single-image conveniences the tests compare the batched code with."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

import numpy as np
from PIL import Image

from a2gnn.affinity.train import AffinityConfig
from a2gnn.backbones.base import BackboneConfig
from a2gnn.core.io import write_label
from a2gnn.core.training import OptimConfig
from a2gnn.data.embedded import EmbeddedConfig
from a2gnn.seeds.cam import CAMConfig

from a2gnn.gnn.consistency import member_seed_candidates, nodes_outside
from a2gnn.graph.nodes import box_nodes


class DummyBackbone(nn.Module):
    """Tiny stand-in with the Backbone interface: three post-ReLU taps of ``channels`` at ``stride`` (4 or 8)."""

    def __init__(self, stride: int = 8, channels: tuple[int, int, int] = (4, 6, 8)):
        super().__init__()
        first, second, third = channels
        self.tap_channels = tuple(channels)
        self.stride = stride
        self.stem = nn.Sequential(nn.Conv2d(3, first, 3, stride // 2, 1), nn.ReLU(),
                                  nn.Conv2d(first, first, 3, 2, 1), nn.ReLU())
        self.b = nn.Conv2d(first, second, 3, 1, 1)
        self.c = nn.Conv2d(second, third, 3, 1, 1)

    def forward(self, x):
        t1 = self.stem(x)
        t2 = torch.relu(self.b(t1))
        return t1, t2, torch.relu(self.c(t2))


def box_seed_candidates(labels: Tensor, boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The (box, node) pairs Eq. (28) checks: nodes inside box j whose seed label is box j's class (grid nodes).

    Shapes: labels (N,), boxes (M, 5) -> cand_box (Q,), cand_node (Q,), sorted by box then node.
    """
    box, node = box_nodes(boxes, grid)
    return member_seed_candidates(labels, boxes, box, node)


def outside_boxes(boxes: Tensor, grid: tuple[int, int]) -> Tensor:
    """Nodes outside every box (background by box supervision). Shapes: boxes (M, 5) -> (R,) node ids."""
    return nodes_outside(box_nodes(boxes, grid)[1].to(boxes.device), grid[0] * grid[1])


def probs_to_grid(probs: Tensor, grid: tuple[int, int]) -> Tensor:
    """Node probabilities (N, C) -> class maps (C, h, w) on the node grid (node n at (n // w, n % w))."""
    return probs.t().reshape(probs.shape[1], grid[0], grid[1])


TINY_EMBEDDED = {"n_train": 6, "n_val": 2, "min_size": 64, "max_size": 96}
"""The ``embedded`` params of the tiny test dataset (everything else at its default)."""


def tiny_embedded_config(**overrides) -> EmbeddedConfig:
    """EmbeddedConfig of the tiny test dataset, with ``overrides`` applied (validated)."""
    return EmbeddedConfig.from_params({**TINY_EMBEDDED, **overrides})


ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""


TINY = Path(__file__).parent / "profiles" / "tiny.yaml"


def load_stage(name: str):
    """The module of ``stages/<name>.py`` (stage scripts are not a package), to call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd`` in ``cwd`` with this venv's tools first on PATH; stdout + stderr, AssertionError on failure."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    """Stages a ``dvc repro`` / ``dvc exp run`` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@functools.lru_cache(maxsize=None)
def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not a package), loaded once."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``root`` (to prove a shared fixture unchanged):
    ``scripts/numerics_check.py``'s digest, the one its tests check."""
    return load_script("numerics_check").tree_digest(Path(root))


SQUARE_DISC_CLASSES = ("background", "square", "disc")


TINY_CAM = CAMConfig(
    backbone=BackboneConfig(name="small", width=4),
    epochs=10,
    batch_size=2,
    optim=OptimConfig(name="sgd", lr=0.1),
    crop_size=32,
    scale_range=(1.0, 1.0),
)


def make_tiny_voc(root: Path, n: int = 4, size: int = 32) -> Path:
    """n PNG images: a red square (class 1) and/or a blue disc (class 2) on a grey background."""
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SQUARE_DISC_CLASSES) + "\n")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    ids = []
    for i in range(n):
        image = np.full((size, size, 3), 128, np.uint8) + rng.integers(0, 20, (size, size, 3)).astype(np.uint8)
        label = np.zeros((size, size), np.uint8)
        objects = []
        if i % 2 == 0:  # square, top-left quadrant
            x0, y0 = 2 + i, 3
            label[y0 : y0 + 10, x0 : x0 + 10] = 1
            objects.append(("square", x0, y0, x0 + 10, y0 + 10))
        if i != 2:  # disc, bottom-right quadrant
            cx, cy = 22, 20 + i
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = 2
            objects.append(("disc", cx - 5, cy - 5, cx + 6, cy + 6))
        image[label == 1] = (220, 30, 30)
        image[label == 2] = (30, 30, 220)
        image_id = f"img{i}"
        ids.append(image_id)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.png")
        write_label(root / "SegmentationClass" / f"{image_id}.png", label)
        objs = "".join(
            f"<object><name>{name}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for name, x1, y1, x2, y2 in objects
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{size}</width><height>{size}</height></size>{objs}</annotation>"
        )
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


# ---------------------------------------------------------------------------------------------- training
def tiny_affinity_cfg(**overrides) -> AffinityConfig:
    params = {
        "backbone": {"name": "small", "stride": 4, "width": 4},
        "radius": 2, "reduce_channels": [4, 4, 4], "embed_channels": 8, "crop_size": 32, "batch_size": 2,
        "epochs": 1, "optim": {"name": "adam", "lr": 0.01, "head_lr_mult": 1.0}, "flip": True,
    }
    return AffinityConfig.from_params({**params, **overrides})


def two_images():
    """Two 32x32 images: a bright square (seed 1 in its core) on a dark background (seed 0 away from it),
    with an unknown (255) ring around the square's border."""
    pairs = []
    for n, (y0, x0) in enumerate([(6, 8), (12, 4)]):
        rng = np.random.default_rng(n)
        img = (rng.random((32, 32, 3)) * 40).astype(np.uint8)
        img[y0 : y0 + 14, x0 : x0 + 14] = (200, 60 + 40 * n, 30)
        seed = np.zeros((32, 32), np.uint8)
        seed[y0 - 2 : y0 + 16, x0 - 2 : x0 + 16] = 255
        seed[y0 + 2 : y0 + 12, x0 + 2 : x0 + 12] = 1
        pairs.append((img, seed))
    return pairs
