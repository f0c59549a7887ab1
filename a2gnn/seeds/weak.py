r"""Seeds from scribbles, points or image-level labels (paper §7.1, Table 5), chosen by ``weak.supervision``.

§7: "we need to ignore our proposed MP loss and the consistency-checking as they rely on bounding box
supervision. Besides, we need to convert different weak supervised signals to pixel-level seed labels. All
other steps and parameters are the same as that in the BSSS task." Per supervision, two seed maps, one for the
affinity CNN (``affinity.seeds: weak/affinity``) and one for the A²GNN's node labels (``gnn.seeds: weak/gnn``):

==========  ===============================================  ============================================
supervision affinity CNN seeds                               A²GNN node labels M_g
==========  ===============================================  ============================================
scribble    M_S where known, else M'_I                       M_S (superpixel-expanded scribbles)
point       M'_I                                             M_P where known, else M'_I (our reading)
image       M'_I                                             M'_I (+ RW fused 1:3 at the end, ``rw_fusion``)
box         (the paper's main task: Eq. 4-5 seeds of stages/seeds.py; this stage writes nothing)
==========  ===============================================  ============================================

M'_I is the top-40 % confident CAM labels of Eq. (5) (:func:`a2gnn.seeds.fusion.top_confident_labels`, the
``seeds`` section). **Points, our reading**: the paper says M_g for points "is generated using the same setting
with the scribble task"; points carry no background annotation, so M_P alone would give the A²GNN no background
node; we take the scribble task's merge rule (M_P, else M'_I). Each supervision form's seed rule is one :data:`WEAK_SEEDS` entry.

Annotations: synthetic ones drawn from the ground truth (:mod:`a2gnn.data.weak_labels`) unless ``annotation_dir``
names a folder of the dataset with the user's own ``<id>.png`` annotation maps (class ids, 255 = none).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from a2gnn.core.io import DataError  # noqa: F401  (re-exported: tests raise it through this module)
from a2gnn.data.labels import read_label_checked
from a2gnn.core.registry import Registry
from a2gnn.data.supervision import SUPERVISION_FORMS, WeakConfig
from a2gnn.seeds.fusion import SeedsConfig, read_cam_scores, read_seed_map, top_confident_labels
from a2gnn.ops.slic import slic
from a2gnn.data.weak_labels import expand_by_superpixels, image_rng, merge_seeds, synthetic_points, synthetic_scribbles

WEAK_SEEDS: Registry = Registry("weak seed rule")
"""``weak.supervision`` (not ``box``) -> ``rule(ImageInputs, WeakConfig) -> (affinity seeds, A²GNN node labels)``."""


@dataclasses.dataclass(frozen=True)
class ImageInputs:
    """What one image's weak seeds are made from (all (H, W) maps of the image)."""

    image: np.ndarray  # (H, W, 3) uint8
    m_i_top: np.ndarray  # M'_I, uint8, 255 = not confident
    annotation: np.ndarray | None  # scribble / point map, uint8, 255 = none (None for image-level)


def _expanded(inputs: ImageInputs, cfg: WeakConfig) -> np.ndarray:
    return expand_by_superpixels(inputs.annotation, slic(inputs.image, cfg.sp_segments, cfg.sp_compactness))


@WEAK_SEEDS.register("scribble")
def scribble_seeds(inputs: ImageInputs, cfg: WeakConfig) -> tuple[np.ndarray, np.ndarray]:
    """§7.1 scribbles: (affinity seeds M_S else M'_I, node labels M_S)."""
    m_s = _expanded(inputs, cfg)
    return merge_seeds(m_s, inputs.m_i_top), m_s


@WEAK_SEEDS.register("point")
def point_seeds(inputs: ImageInputs, cfg: WeakConfig) -> tuple[np.ndarray, np.ndarray]:
    """§7.1 points: (affinity seeds M'_I, node labels M_P else M'_I)."""
    return inputs.m_i_top, merge_seeds(_expanded(inputs, cfg), inputs.m_i_top)


@WEAK_SEEDS.register("image")
def image_seeds(inputs: ImageInputs, cfg: WeakConfig) -> tuple[np.ndarray, np.ndarray]:
    """§7.1 image-level labels: M'_I for both."""
    return inputs.m_i_top, inputs.m_i_top


def synthetic_annotation(kind: str, semantic: np.ndarray, instance: np.ndarray, image_id: str, seed: int,
                         cfg: WeakConfig) -> np.ndarray:
    """The synthetic ``kind`` ("scribbles" | "points") annotation of one image, from its ground truth."""
    rng = image_rng(seed, image_id)
    if kind == "points":
        return synthetic_points(semantic, instance, rng, cfg.point_centre)
    return synthetic_scribbles(semantic, instance, rng, cfg.scribble_points, cfg.scribble_width, cfg.margin,
                               cfg.min_background_area)


def read_annotation(path: Path, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """A user's annotation map: same size as the image, class ids 0..C-1 or 255; clear DataError otherwise."""
    return read_label_checked(path, shape, num_classes, "annotation map",
                              hint="(weak.annotation_dir names a folder with <id>.png per image)")


def image_weak_seeds(dataset, image_id: str, cam_dir: Path, data_root: Path, cfg: WeakConfig, seeds: SeedsConfig,
                     seed: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(annotation or None, affinity seeds, A²GNN node labels) of one image for ``cfg.supervision`` (not box)."""
    kind = SUPERVISION_FORMS[cfg.supervision].annotation
    ann = dataset.annotation(image_id)
    shape, n = (ann.height, ann.width), dataset.num_classes
    m_i = read_seed_map(Path(cam_dir) / "M_I" / f"{image_id}.png", shape, n)
    cams, labels = read_cam_scores(Path(cam_dir) / "scores" / f"{image_id}.npz", shape, n)
    m_i_top = top_confident_labels(m_i, cams, labels, seeds.top_ratio, seeds.top_population)
    annotation = None
    if kind is not None:
        if cfg.annotation_dir:
            annotation = read_annotation(Path(data_root) / cfg.annotation_dir / f"{image_id}.png", shape, n)
        else:
            annotation = synthetic_annotation(kind, dataset.semantic_gt(image_id),
                                              dataset.instance_gt(image_id), image_id, seed, cfg)
    affinity, node = WEAK_SEEDS[cfg.supervision](ImageInputs(dataset.image(image_id), m_i_top, annotation), cfg)
    return annotation, affinity, node

