"""Shared pytest fixtures.

``tiny_voc``: a tiny embedded dataset (VOC layout, see :mod:`a2gnn.datasets.embedded`) generated in
``tmp_path`` — 6 train + 2 val images of 64-96 px, 5 foreground classes, a few objects each. Use it
wherever a test needs real images with boxes, class GT and instance GT::

    def test_something(tiny_voc):
        ds = VOCDataset(tiny_voc, "train")

``tiny_embedded_config(**overrides)`` returns the config behind it (override fields for variants).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from a2gnn.datasets.embedded import EmbeddedConfig, generate

TINY_EMBEDDED = {"n_train": 6, "n_val": 2, "min_size": 64, "max_size": 96}
"""The ``embedded`` params of the tiny test dataset (everything else at its default)."""


def tiny_embedded_config(**overrides) -> EmbeddedConfig:
    """EmbeddedConfig of the tiny test dataset, with ``overrides`` applied (validated)."""
    return EmbeddedConfig.from_params({**TINY_EMBEDDED, **overrides})


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    """Root of a freshly generated tiny embedded dataset (train: 6 images, val: 2) under tmp_path."""
    root = tmp_path / "tiny_voc"
    generate(tiny_embedded_config(), root)
    return root
