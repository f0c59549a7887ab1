r"""Seed fusion :math:`M_F` (Eq. 4), confident CAM labels :math:`M'_I` and selected seeds :math:`M_g` (Eq. 5).

Zhang et al., "Affinity Attention Graph Neural Network for Weakly Supervised Semantic
Segmentation", TPAMI (arXiv:2106.04054), sections 3 and 4.2.

.. math::

    M_F(i) = \begin{cases} M_B(i), & i \notin B \\
             M_I(i), & i \in B \text{ and } M_B(i) = M_I(i) \\
             M_{B_k}(i), & i \in B_k \text{ and } L_{B_k} \notin S(M_{I-B_k}) \\
             255, & \text{else} \end{cases}                                          \quad (4)

    M_g(i) = \begin{cases} M_F(i), & M_F(i) = M_B(i) \text{ or } M_F(i) = M'_I(i) \\
             255, & \text{else} \end{cases}                                          \quad (5)

where :math:`S(M_{I-B_k})` is the set of classes :math:`M_I` predicts inside :math:`B_k` and
:math:`M'_I` keeps the top 40 % most confident pixels of each class of :math:`M_I` (following RRM).

Choices the paper leaves open:

* **Cases are tried in order**; the first that applies gives :math:`M_F(i)`.
* **M_{B_k} from M_B.** Only :math:`M_B` is stored, so :math:`M_{B_k}(i)` is recovered as
  :math:`L_{B_k}` where :math:`M_B(i) = L_{B_k}` inside :math:`B_k`, else 255. On overlaps this differs
  from the per-box GrabCut mask of Eq. (2) only where a smaller box of another class won the pixel
  (see :mod:`a2gnn.seeds.grabcut`); there the smaller box's class is kept (case 2) or the pixel is 255.
* **Overlapping boxes in case 3.** A pixel in several boxes takes case 3 if *any* box containing it
  whose class :math:`M_I` misses entirely has :math:`M_{B_k}(i) \neq 255`, i.e. if some box
  :math:`B_k \ni i` with :math:`L_{B_k} \notin S(M_{I-B_k})` has :math:`L_{B_k} = M_B(i)`; the label is
  then :math:`M_B(i)`. Otherwise (all such boxes give 255, or none exists) the pixel falls to case 4.
* **M'_I population** (``top_population``): ``"label"`` (default) ranks class c's CAM score among the
  pixels :math:`M_I` labels c, so 40 % of each class's labelled pixels survive whatever the object size
  (the paper: "top 40 % confident pixel labels ... from the pixel label M_I"); ``"image"`` ranks it
  among all pixels of the image (the reading "above the 60th percentile of the class's CAM inside the
  image"). Either way a pixel enters :math:`M'_I` only where :math:`M_I` = c. Background is treated as
  class 0 with score :math:`1 - \max_k \mathrm{CAM}_k`; classes of :math:`M_I` without a CAM channel
  and :math:`M_I` = 255 give 255. The threshold is ``np.quantile(population, 1 - top_ratio)`` (linear
  interpolation) and scores equal to it are kept.
* **Eq. (5) taken literally is the identity on our M_F**: every labelled pixel of Eq. (4) equals
  :math:`M_B` there (case 1 is :math:`M_B`, case 2 has :math:`M_I = M_B`, case 3 is :math:`M_B` by the
  recovery above), so ":math:`M_F = M_B`" keeps everything and :math:`M'_I` never matters — against the
  paper's stated aim ("only select those highly confident pixel-level seed labels in :math:`M_F`").
  With ``confirm_in_boxes`` (default) the test ":math:`M_F = M_B`" counts only where :math:`M_B` alone
  decided :math:`M_F` (outside boxes, case 1; boxes the CAM missed, case 3); pixels where CAM and
  GrabCut agree inside a box (case 2) must also be in :math:`M'_I`. ``confirm_in_boxes: false`` is the
  literal Eq. (5).
* **GrabCut's background inside a box** is 255 in :math:`M_B` (Eq. 3), so case 2 ":math:`M_B(i) = M_I(i)`"
  never holds there and :math:`M_g` holds *no* in-box background label: the A²GNN learns in-box background
  only from the background outside the boxes. ``in_box_background`` (ours, default off = the paper) reads that
  255 as :math:`c_0` for case 2's agreement test: an in-box pixel that GrabCut and the CAM both call background
  becomes background in :math:`M_F`, and enters :math:`M_g` only if it is also in :math:`M'_I` (Eq. 5).
  Pixels of boxes GrabCut gave up on (whole-box fallback) are object in :math:`M_B` and stay unaffected.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Sequence

import numpy as np

from a2gnn.data.labels import read_label_checked
from a2gnn.core.config import Config
from a2gnn.data.voc import Box, VOCDataset
from a2gnn.core.io import IGNORE_INDEX, DataError
from a2gnn.data.boxes import BACKGROUND, box_union_mask
from a2gnn.seeds.scores import load_cam_scores

TOP_POPULATIONS = ("label", "image")


@dataclasses.dataclass(frozen=True)
class SeedsConfig(Config):
    """``seeds`` section: M'_I selection and Eq. (5)."""

    SECTION: typing.ClassVar[str] = "seeds"
    top_ratio: float = 0.4  # fraction of most confident CAM pixels per class kept in M'_I (paper: top 40 %)
    top_population: str = "label"  # M'_I ranks class c among: "label" pixels with M_I = c | "image" all pixels
    confirm_in_boxes: bool = True  # Eq. 5: in-box CAM/GrabCut agreements also need M'_I (false: literal Eq. 5)
    in_box_background: bool = False  # Eq. 4 case 2 reads M_B's in-box 255 (GrabCut background) as c_0 (ours)

    def validate(self) -> None:
        self.check(0.0 < self.top_ratio <= 1.0, "top_ratio", "in (0, 1]")
        self.check(self.top_population in TOP_POPULATIONS, "top_population", f"one of {TOP_POPULATIONS}")


def box_class_predicted(m_i: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Whether L_{B_k} is in S(M_{I-B_k}), the classes M_I predicts inside B_k (Eq. 4).

    Shapes: m_i (H, W) uint8, boxes M -> (M,) bool.
    """
    return np.array([bool(np.any(m_i[b.y1 : b.y2, b.x1 : b.x2] == b.label)) for b in boxes], dtype=bool)


def missed_box_seeds(m_i: np.ndarray, m_b: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Case 3 of Eq. (4): pixels i of some B_k with L_{B_k} not in S(M_{I-B_k}) and M_{B_k}(i) != 255.

    M_{B_k}(i) is recovered from M_B as L_{B_k} where M_B(i) = L_{B_k} (module docstring); a pixel in
    several such boxes qualifies if any of them does. Shapes: m_i, m_b (H, W) uint8 -> (H, W) bool.
    """
    region = np.zeros(m_b.shape, dtype=bool)
    predicted = box_class_predicted(m_i, boxes)
    for box, hit in zip(boxes, predicted):
        if not hit:
            window = (slice(box.y1, box.y2), slice(box.x1, box.x2))
            region[window] |= m_b[window] == box.label
    return region


def fuse_seeds(m_i: np.ndarray, m_b: np.ndarray, boxes: Sequence[Box], in_box_background: bool = False
               ) -> np.ndarray:
    """Eq. (4): M_F from the CAM seeds M_I and the box seeds M_B (cases tried in order).

    ``in_box_background``: case 2 compares M_I with M_B whose in-box 255 reads as background c_0 (module
    docstring), so in-box pixels both call background become c_0. Shapes: m_i (H, W) uint8 (0..C-1, 255),
    m_b (H, W) uint8, boxes M -> (H, W) uint8.
    """
    if m_i.shape != m_b.shape:
        raise ValueError(f"M_I {m_i.shape} and M_B {m_b.shape} differ in shape")
    inside = box_union_mask(boxes, m_b.shape)
    m_b_case2 = np.where(m_b == IGNORE_INDEX, np.uint8(BACKGROUND), m_b) if in_box_background else m_b
    case2 = inside & (m_b_case2 == m_i)
    case3 = inside & ~case2 & missed_box_seeds(m_i, m_b, boxes)
    m_f = np.full(m_b.shape, IGNORE_INDEX, dtype=np.uint8)
    m_f[~inside] = m_b[~inside]
    m_f[case2] = m_i[case2]
    m_f[case3] = m_b[case3]
    return m_f


def confidence_scores(cams: np.ndarray) -> np.ndarray:
    """Per-class confidence: background 1 - max_k CAM_k, then the K foreground CAMs.

    Shapes: cams (K, H, W) in [0, 1] -> (K + 1, H, W) float32 (row 0 = background c_0).
    """
    cams = np.asarray(cams, dtype=np.float32)
    background = 1.0 - (cams.max(axis=0) if len(cams) else np.zeros(cams.shape[1:], dtype=np.float32))
    return np.concatenate([background[None], cams], axis=0)


def top_confident_labels(
    m_i: np.ndarray, cams: np.ndarray, labels: np.ndarray, top_ratio: float, population: str = "label"
) -> np.ndarray:
    """M'_I (section 4.2): per class c, the pixels with M_I = c whose score is in the top ``top_ratio``.

    The threshold of class c is the (1 - top_ratio) quantile of its score over ``population``
    ("label": pixels with M_I = c; "image": all pixels); scores >= it are kept. Background uses
    1 - max CAM. Shapes: m_i (H, W) uint8, cams (K, H, W), labels (K,) class indices -> (H, W) uint8.
    """
    if population not in TOP_POPULATIONS:
        raise ValueError(f"population must be one of {TOP_POPULATIONS}, got {population!r}")
    scores = confidence_scores(cams)
    classes = np.concatenate([[BACKGROUND], np.asarray(labels, dtype=np.int64)])
    m_top = np.full(m_i.shape, IGNORE_INDEX, dtype=np.uint8)
    for score, c in zip(scores, classes):
        labelled = m_i == c
        pool = score[labelled] if population == "label" else score.reshape(-1)
        if pool.size == 0:
            continue
        threshold = np.quantile(pool, 1.0 - top_ratio)
        m_top[labelled & (score >= threshold)] = c
    return m_top


def select_confident_seeds(
    m_f: np.ndarray, m_b: np.ndarray, m_i_top: np.ndarray, box_trusted: np.ndarray | None = None
) -> np.ndarray:
    """Eq. (5): M_g = M_F where M_F = M_B or M_F = M'_I, else 255.

    ``box_trusted`` (H, W) bool restricts where "M_F = M_B" suffices (None: everywhere, literal Eq. 5).
    Shapes: m_f, m_b, m_i_top (H, W) uint8 -> (H, W) uint8.
    """
    agrees_b = m_f == m_b
    if box_trusted is not None:
        agrees_b &= box_trusted
    keep = (agrees_b | (m_f == m_i_top)) & (m_f != IGNORE_INDEX)
    return np.where(keep, m_f, np.uint8(IGNORE_INDEX)).astype(np.uint8)


def seed_labels(
    m_i: np.ndarray, cams: np.ndarray, labels: np.ndarray, m_b: np.ndarray, boxes: Sequence[Box], cfg: SeedsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """M_F (Eq. 4) and M_g (Eq. 5) of one image. Shapes: (H, W) maps, cams (K, H, W) -> ((H, W), (H, W)) uint8."""
    m_f = fuse_seeds(m_i, m_b, boxes, cfg.in_box_background)
    m_i_top = top_confident_labels(m_i, cams, labels, cfg.top_ratio, cfg.top_population)
    trusted = None
    if cfg.confirm_in_boxes:
        trusted = ~box_union_mask(boxes, m_b.shape) | missed_box_seeds(m_i, m_b, boxes)
    return m_f, select_confident_seeds(m_f, m_b, m_i_top, trusted)


# ----------------------------------------------------------------------------------------------------
# Reading the inputs of one image (used by stages/seeds.py)


def read_cam_scores(path: Path, shape: tuple[int, int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read ``scores/<id>.npz`` (``cams`` (K, H, W) in [0, 1], ``labels`` (K,) in 1..C-1, unique).

    Returns (cams float32 (K, H, W), labels int64 (K,)); anything else raises DataError naming the file.
    """
    cams, labels = load_cam_scores(path)
    if cams.shape[1:] != shape:
        raise DataError(path, f"cams {cams.shape} / labels {labels.shape} do not match image size {shape}")
    if labels.size and (labels.min() < 1 or labels.max() >= num_classes or len(set(labels.tolist())) != labels.size):
        raise DataError(path, f"labels {labels.tolist()} must be unique foreground classes 1..{num_classes - 1}")
    if not np.all(np.isfinite(cams)) or (cams.size and (cams.min() < 0 or cams.max() > 1)):
        raise DataError(path, "cams must be finite and in [0, 1]")
    return cams, labels


def read_seed_map(path: Path, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """Read a seed label PNG (M_I or M_B) and check its size and values (0..C-1 or 255)."""
    return read_label_checked(path, shape, num_classes, "seed map")


def image_seed_labels(
    dataset: VOCDataset, image_id: str, cam_dir: Path, m_b_dir: Path, cfg: SeedsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Read M_I, the CAM scores and M_B of one image (layout of docs/ARCHITECTURE.md) -> (M_F, M_g)."""
    ann = dataset.annotation(image_id)
    shape, n = (ann.height, ann.width), dataset.num_classes
    m_i = read_seed_map(Path(cam_dir) / "M_I" / f"{image_id}.png", shape, n)
    cams, labels = read_cam_scores(Path(cam_dir) / "scores" / f"{image_id}.npz", shape, n)
    m_b = read_seed_map(Path(m_b_dir) / f"{image_id}.png", shape, n)
    return seed_labels(m_i, cams, labels, m_b, ann.boxes, cfg)
