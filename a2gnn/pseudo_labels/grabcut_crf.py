"""GrabCut refined by a dense CRF: the strongest box-only competitor a user would try without a graph method.

GrabCut alone (M_B of Eq. 3, its unknown in-box pixels set to background) is a hard label. A user refines it
the way pydensecrf's own examples do (``unary_from_labels``): the label a pixel has gets probability
``confidence``, the other classes of the image share the rest, and the dense CRF on the photo decides. Here the
soft label goes through exactly the post-processing of the A²GNN pseudo labels (:mod:`a2gnn.pseudo_labels.postprocess`:
box constraint, the ``crf`` section's kernels, ``postprocess.resolution``), so the two differ only in their class
scores.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Sequence

import numpy as np

from a2gnn.data.labels import LabelFolder
from a2gnn.core.config import Config
from a2gnn.data.voc import Annotation
from a2gnn.core.io import DataError
from a2gnn.pseudo_labels.postprocess import image_channels, soft_label


@dataclasses.dataclass(frozen=True)
class GrabCutCRFConfig(Config):
    """``grabcut_crf`` section: how the GrabCut label becomes the CRF's unary."""

    SECTION: typing.ClassVar[str] = "grabcut_crf"
    confidence: float = 0.7  # probability of the GrabCut label (pydensecrf's unary_from_labels example: 0.7)

    def validate(self) -> None:
        self.check(0 < self.confidence < 1, "confidence", "in (0, 1)")


@dataclasses.dataclass
class GrabCutScorer:
    """:class:`a2gnn.pseudo_labels.postprocess.Scorer` of GrabCut: the soft M_B of each image, at the working size."""

    m_b_dir: Path
    cfg: GrabCutCRFConfig

    def __call__(self, ids: Sequence[str], annotations: Sequence[Annotation]) -> list[np.ndarray]:
        out, folder = [], LabelFolder(self.m_b_dir, "M_B")
        for image_id, annotation in zip(ids, annotations):
            m_b = folder.read(image_id, (annotation.height, annotation.width))
            try:
                out.append(soft_label(m_b, image_channels(annotation), self.cfg.confidence))
            except ValueError as exc:
                raise DataError(folder.path(image_id), str(exc)) from exc
        return out
