"""Table 4(a) "Baseline": CAM foreground seeds inside the boxes, background from the boxes.

The simplest use of boxes plus CAMs: inside a box the CAM scores compete with the PSA/SEAM background score
(1 - max CAM)^alpha; a class is kept only inside its own boxes and every pixel outside all boxes is background.
The result then goes through the same post-processing as A²GNN and RW (:mod:`a2gnn.pseudo_labels.postprocess`).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np

from a2gnn.core.config import Config
from a2gnn.data.voc import Annotation
from a2gnn.pseudo_labels.postprocess import aligned_cams, box_constraint, image_channels, normalise
from a2gnn.seeds.scores import with_background


@dataclasses.dataclass(frozen=True)
class BaselineConfig(Config):
    """``baseline`` section: Table 4(a) "Baseline"."""

    SECTION: typing.ClassVar[str] = "baseline"
    bg_alpha: float = 3.0  # alpha of the in-box background score (1 - max CAM)^alpha (SEAM RW: 6; tuned here: 3)

    def validate(self) -> None:
        self.check(self.bg_alpha > 0, "bg_alpha", "> 0")


def baseline_scores(cams: np.ndarray, annotation: Annotation, bg_alpha: float) -> np.ndarray:
    """Baseline class distribution: [(1 - max CAM)^alpha; CAMs] inside the boxes, background outside them.

    The background comes from the boxes whatever ``postprocess.box_constraint`` says (that is what makes it
    a box-supervised baseline). Shapes: cams (K, H, W) for ``annotation.image_labels`` -> (1 + K, H, W).
    """
    return box_constraint(normalise(with_background(cams, bg_alpha)), image_channels(annotation), annotation)


@dataclasses.dataclass
class BaselineScorer:
    """Baseline scores of a chunk of images from the cam stage's ``<cam_dir>/scores/<id>.npz``."""

    cam_dir: Path
    cfg: BaselineConfig

    def __call__(self, ids, annotations):
        return [
            baseline_scores(aligned_cams(self.cam_dir / "scores" / f"{i}.npz", a), a, self.cfg.bg_alpha)
            for i, a in zip(ids, annotations)
        ]
