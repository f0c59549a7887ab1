"""A²GNN as a pseudo-label method (§4.1 step 3, §5): graphs -> per-image A²GNNs -> class scores on the image.

:class:`A2GNNScorer` is the :class:`a2gnn.pseudo_labels.postprocess.Scorer` of the paper's method; it also scores what
consistency checking (Eq. 27-28) removed against the ground truth (:class:`SeedCheckCounts`, a diagnostic:
the method itself never reads the ground truth). Node outputs go back to the image through the graph's node
layout (``graph.nodes``, :mod:`a2gnn.graph.nodes`): bilinear up-sampling for grid nodes (§5), the superpixel id
map for superpixel nodes (Table 4(c) "S.P."), so their label maps are constant on every superpixel.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np
from torch import Tensor

from a2gnn.graph.build import build_graphs
from a2gnn.graph.types import ImageGraph
from a2gnn.gnn.train import train_a2gnn
from a2gnn.core.io import IGNORE_INDEX, unavailable_figures
from a2gnn.pseudo_labels.postprocess import image_channels


def graph_probs_to_image(graph: ImageGraph, probs: Tensor, channels: np.ndarray) -> np.ndarray:
    """A²GNN output O (N, C) of ``graph`` -> (len(channels), H, W) with the graph's node layout (``graph.nodes``):
    bilinear up-sampling of grid nodes, or every pixel takes its superpixel's value."""
    return graph.layout.to_image(graph, probs, channels)


@dataclasses.dataclass
class SeedCheckCounts:
    """Consistency checking (Eq. 27-28) against the ground truth, summed over images (graph nodes)."""

    seeds: int = 0  # labelled nodes of V^l (with a ground truth) before the check
    seeds_wrong: int = 0  # ... whose label differs from the ground truth
    removed: int = 0  # seeds the last step's check removed
    removed_wrong: int = 0  # ... that were wrong
    images: int = 0
    unavailable: str | None = None  # why there is no ground truth to score against (boxes only), else None

    def add(self, before: Tensor, after: Tensor, truth: Tensor) -> None:
        """before/after/truth: (N,) node labels (255 = none) before and after the check, and the GT on the nodes."""
        labelled = (before != IGNORE_INDEX) & (truth != IGNORE_INDEX)
        wrong = labelled & (before != truth)
        removed = labelled & (after == IGNORE_INDEX)
        self.seeds += int(labelled.sum())
        self.seeds_wrong += int(wrong.sum())
        self.removed += int(removed.sum())
        self.removed_wrong += int((removed & wrong).sum())
        self.images += 1

    def summary(self) -> dict[str, float]:
        """Readable figures: seeds removed per image, the share of the removed that were wrong, and the seed
        error rate before and after the check (all seeds vs the kept ones)."""
        if self.unavailable is not None:
            return unavailable_figures(("removed", "removed_wrong", "seed_err", "seed_err_kept"), self.unavailable)
        kept = self.seeds - self.removed
        return {
            "removed": self.removed / max(self.images, 1),  # per image
            "removed_wrong": self.removed_wrong / max(self.removed, 1),  # share of the removed
            "seed_err": self.seeds_wrong / max(self.seeds, 1),  # before the check
            "seed_err_kept": (self.seeds_wrong - self.removed_wrong) / max(kept, 1),  # after it
        }


@dataclasses.dataclass
class A2GNNScorer:
    """The paper's method: one A²GNN per image graph (Eq. 14-28), trained ``batch_images`` images at a time."""

    dataset: typing.Any
    model: typing.Any  # AffinityNet
    seed_dir: Path  # node labels V^l: outputs/seeds/${gnn.seeds}
    graph_cfg: typing.Any  # GraphConfig
    cfg: typing.Any  # GNNConfig
    device: str
    seed: int
    workers: int
    batch_images: int
    checks: SeedCheckCounts = dataclasses.field(default_factory=SeedCheckCounts)

    def __call__(self, ids, annotations):
        graphs = build_graphs(self.model, self.dataset, self.seed_dir, self.graph_cfg, self.device, ids=list(ids))
        probs, final = train_a2gnn(graphs, self.cfg, self.dataset.num_classes, self.device, self.seed,
                                   workers=self.workers, return_labels=True, batch_images=self.batch_images)
        missing = self.dataset.missing_ground_truth("semantic")
        for i, g, after in zip(ids, graphs, final):
            if missing is not None:  # boxes only: the diagnostics are skipped
                self.checks.unavailable = missing
                break
            truth = g.layout.node_labels(g, self.dataset.semantic_gt(i), self.graph_cfg.label_downsample)
            self.checks.add(g.labels, after, truth)
        return [graph_probs_to_image(g, p, image_channels(a)) for p, g, a in zip(probs, graphs, annotations)]
