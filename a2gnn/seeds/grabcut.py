r"""Box seeds :math:`M_B` from GrabCut, Eq. (2)-(3) of A2GNN.

Zhang et al., "Affinity Attention Graph Neural Network for Weakly Supervised Semantic
Segmentation", TPAMI (arXiv:2106.04054), section 3.

For every box :math:`B_k` with class :math:`L_{B_k}`, GrabCut (Rother et al., 2004; ``cv2.grabCut``
initialised from the box rectangle, as in SDI) separates the object from the rest of the box:

.. math::

    M_{B_k}(i) = \begin{cases} L_{B_k}, & i \in B_k \text{ and } \mathrm{Grab}(i) \neq c_0 \\
                 255, & \text{else} \end{cases}                                   \quad (2)

    M_B(i) = \begin{cases} c_0 = 0, & i \notin B = \bigcup_k B_k \\
             M_{B_k}(i), & i \in B \end{cases}                                    \quad (3)

Choices the paper leaves open (each documented where it is made):

* **Fallbacks** (SDI): if GrabCut finds no foreground in the box, or its foreground covers less than
  ``min_box_iou`` IoU of the box, the whole box counts as object. Because the GrabCut mask lies inside
  the box, that IoU is simply the fraction of the box it fills. Boxes narrower or shorter than
  ``min_box_side`` pixels skip GrabCut (whole box), and so does a box that leaves no pixel of the image
  outside it (GrabCut needs background pixels to fit its background colour model).
* **Overlapping boxes** (Eq. 3 does not say which :math:`B_k` a pixel in several boxes takes): boxes are
  painted from the largest area to the smallest, so smaller objects are cut out of larger ones — where
  several boxes claim a pixel as object, the smallest box wins (ties in area: the later box of the
  annotation wins). A pixel inside some box that no box claims as object is 255 (unknown), even if it
  lies in the background of a smaller box and in the object of none.
* **Zoom on small boxes** (ours, off by default: ``zoom_side`` 0): a box whose longer side is below
  ``zoom_side`` pixels runs GrabCut on its neighbourhood (a margin of ``zoom_margin`` times that side around
  it) enlarged so that the side is ``zoom_side`` pixels, and the mask is shrunk back. GrabCut's colour models
  and its pairwise term see a few hundred pixels of a small object instead of a few dozen
  (docs/cluttered-photos.md, docs/deviations.md).
* **Determinism**: OpenCV's RNG (used by GrabCut's k-means initialisation) is re-seeded before every box
  with ``image_seed(base_seed, image_id) + k``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import typing
import zlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from a2gnn.core.config import Config
from a2gnn.data.resize import resize_image
from a2gnn.data.voc import Annotation, Box, VOCDataset
from a2gnn.data.boxes import BACKGROUND, box_mask, box_owner_map, box_union_mask, paint_order  # noqa: F401  (re-exported)
from a2gnn.core.io import IGNORE_INDEX, read_image, write_label
from a2gnn.core.parallel import parallel_map



@dataclasses.dataclass(frozen=True)
class GrabCutConfig(Config):
    """``grabcut`` section: the GrabCut operator Grab(.) of Eq. (2) and its SDI fallbacks."""

    SECTION: typing.ClassVar[str] = "grabcut"
    iterations: int = 5  # EM iterations of Grab(.) in Eq. (2) (SDI: 5)
    min_box_iou: float = 0.15  # GrabCut mask with IoU < this against B_k -> the whole B_k is object (SDI: 0.15)
    min_box_side: int = 4  # B_k narrower or shorter than this (pixels) skips GrabCut -> the whole B_k is object
    zoom_side: int = 0  # ours: B_k with a longer side below this runs GrabCut enlarged to it (0 = off, the paper)
    zoom_margin: float = 0.5  # context around a zoomed B_k, as a fraction of its longer side

    def validate(self) -> None:
        self.check(self.iterations >= 1, "iterations", ">= 1")
        self.check(0.0 <= self.min_box_iou <= 1.0, "min_box_iou", "in [0, 1]")
        self.check(self.min_box_side >= 1, "min_box_side", ">= 1")
        self.check(self.zoom_side >= 0, "zoom_side", ">= 0 (0 = off)")
        self.check(self.zoom_margin > 0.0, "zoom_margin", "> 0")


def image_seed(base_seed: int, image_id: str) -> int:
    """Per-image RNG seed: stable across runs, processes and split orderings (CRC32 of the id)."""
    return (base_seed + zlib.crc32(image_id.encode("utf-8"))) % (2**31 - 1)


def run_grabcut(image: np.ndarray, box: Box, iterations: int, seed: int) -> np.ndarray:
    """Grab(.) of Eq. (2): raw ``cv2.grabCut`` foreground (GC_FGD | GC_PR_FGD) of one box, no fallbacks.

    Initialised with GC_INIT_WITH_RECT from the box, so every pixel outside the box is definite
    background and the result lies inside the box. The channel order of ``image`` does not matter
    (GrabCut's colour models are symmetric in the channels). The box must leave at least one image
    pixel outside it (OpenCV needs background samples). Shapes: image (H, W, 3) uint8 -> (H, W) bool.
    """
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    bgd_model = np.zeros((1, 65), dtype=np.float64)
    fgd_model = np.zeros((1, 65), dtype=np.float64)
    cv2.setRNGSeed(int(seed))
    cv2.grabCut(
        np.ascontiguousarray(image), mask, (box.x1, box.y1, box.width, box.height),
        bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_RECT,
    )
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)) & box_mask(box, (height, width))


def zoom_window(box: Box, shape: tuple[int, int], side: int, margin: float) -> tuple[Box, float] | None:
    """The crop and the scale of a zoomed GrabCut, or None where zooming does not apply.

    The crop is the box grown by ``round(margin * longer side)`` pixels on each side, clipped to the image; the
    scale enlarges the box's longer side to ``side`` pixels. None when the box's longer side is already at least
    ``side``, or when the clipped crop leaves no pixel outside the box (no background to model).
    Shapes: box in image pixels, shape (H, W) -> (crop as a Box with the box's label, scale > 1) or None.
    """
    longer = max(box.width, box.height)
    if longer >= side:
        return None
    pad = int(round(margin * longer))
    crop = Box(max(0, box.x1 - pad), max(0, box.y1 - pad), min(shape[1], box.x2 + pad), min(shape[0], box.y2 + pad),
               box.label)
    if crop.area <= box.area:
        return None
    return crop, side / longer


def zoomed_grabcut(image: np.ndarray, box: Box, crop: Box, scale: float, iterations: int, seed: int) -> np.ndarray:
    """Grab(.) of Eq. (2) on an enlarged neighbourhood of a small box; the mask is shrunk back to the image.

    ``crop`` (a window of the image around ``box``, from :func:`zoom_window`) is enlarged by ``scale`` with
    bicubic interpolation, GrabCut runs there from the enlarged box, and its foreground is averaged back onto the
    crop's pixels (area interpolation), a pixel being object where more than half of it is.
    Shapes: image (H, W, 3) uint8 -> (H, W) bool, True only inside the box.
    """
    patch = image[crop.y1 : crop.y2, crop.x1 : crop.x2]
    size = (max(1, int(round(crop.width * scale))), max(1, int(round(crop.height * scale))))
    big = cv2.resize(np.ascontiguousarray(patch), size, interpolation=cv2.INTER_CUBIC)
    x1, y1 = int(round((box.x1 - crop.x1) * scale)), int(round((box.y1 - crop.y1) * scale))
    x2 = min(size[0], int(round((box.x2 - crop.x1) * scale)))
    y2 = min(size[1], int(round((box.y2 - crop.y1) * scale)))
    fg = run_grabcut(big, Box(x1, y1, x2, y2, box.label), iterations, seed)
    back = cv2.resize(fg.astype(np.float32), (crop.width, crop.height), interpolation=cv2.INTER_AREA) > 0.5
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[crop.y1 : crop.y2, crop.x1 : crop.x2] = back
    return mask & box_mask(box, image.shape[:2])


def grabcut_box_mask(image: np.ndarray, box: Box, cfg: GrabCutConfig, seed: int = 0) -> np.ndarray:
    """Object pixels of one box B_k (the support of Eq. 2), with the SDI fallbacks.

    Whole box when: the box is smaller than ``cfg.min_box_side`` on a side; the box covers the whole
    image (no background to model); GrabCut finds no foreground; or the foreground's IoU with the box
    (= its area / the box area, since it lies inside the box) is below ``cfg.min_box_iou``. A box whose
    longer side is below ``cfg.zoom_side`` runs GrabCut enlarged (:func:`zoomed_grabcut`).
    Shapes: image (H, W, 3) uint8 -> (H, W) bool, True only inside the box.
    """
    shape = image.shape[:2]
    whole = box_mask(box, shape)
    if min(box.width, box.height) < cfg.min_box_side or box.area >= shape[0] * shape[1]:
        return whole
    window = zoom_window(box, shape, cfg.zoom_side, cfg.zoom_margin)  # None when off (zoom_side 0) or large
    if window is None:
        fg = run_grabcut(image, box, cfg.iterations, seed)
    else:
        fg = zoomed_grabcut(image, box, *window, cfg.iterations, seed)
    n_fg = int(fg.sum())
    if n_fg == 0 or n_fg < cfg.min_box_iou * box.area:
        return whole
    return fg


def compose_box_seeds(masks: Sequence[np.ndarray], boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """Eq. (2)-(3): per-box object masks -> M_B.

    Outside every box: c_0 = 0 (Eq. 3). Inside the union of boxes: L_{B_k} where box k's mask says
    object, painting boxes from the largest to the smallest so that the smallest box claiming a pixel
    wins (ties: later box in annotation order); inside-box pixels no box claims: 255.
    Shapes: masks M x (H, W) bool, boxes M -> (H, W) uint8.
    """
    if len(masks) != len(boxes):
        raise ValueError(f"{len(masks)} masks for {len(boxes)} boxes")
    m_b = np.full(shape, BACKGROUND, dtype=np.uint8)
    m_b[box_union_mask(boxes, shape)] = IGNORE_INDEX
    for k in paint_order(boxes):
        m_b[masks[k]] = boxes[k].label
    return m_b


def box_seeds(image: np.ndarray, annotation: Annotation, cfg: GrabCutConfig, seed: int = 0) -> np.ndarray:
    """M_B of one image (Eq. 2-3). Box k's GrabCut uses RNG seed ``seed + k``.

    Shapes: image (H, W, 3) uint8 -> (H, W) uint8 (0 background, 1.. classes, 255 unknown).
    """
    shape = image.shape[:2]
    if shape != (annotation.height, annotation.width):
        raise ValueError(f"image is {shape[1]}x{shape[0]}, annotation says {annotation.width}x{annotation.height}")
    masks = [grabcut_box_mask(image, box, cfg, seed + k) for k, box in enumerate(annotation.boxes)]
    return compose_box_seeds(masks, annotation.boxes, shape)


# ----------------------------------------------------------------------------------------------------
# Dataset-level driver used by stages/grabcut.py


@dataclasses.dataclass(frozen=True)
class BoxSeedJob:
    """One image to process: where its pixels are, its (validated) boxes, and its RNG seed."""

    image_path: Path
    annotation: Annotation
    seed: int


def plan_box_seeds(dataset: VOCDataset, base_seed: int) -> list[BoxSeedJob]:
    """Validate every input of the split before any work: each annotation parses (known classes, boxes
    inside the image, non-zero area, at least one object) and each image decodes with the annotated size.
    Raises DataError naming the first bad file. Done in the calling process so that errors are reported
    before GrabCut starts and never have to cross a process boundary.
    """
    jobs = []
    for image_id in dataset.ids:
        dataset.image(image_id)  # decodes and checks the size against the annotation
        ann = dataset.annotation(image_id)
        jobs.append(BoxSeedJob(dataset.image_path(image_id), ann, image_seed(base_seed, image_id)))
    return jobs


def write_box_seeds(jobs: Sequence[BoxSeedJob], cfg: GrabCutConfig, out_dir: Path, workers: int) -> list[float]:
    """Run :func:`run_box_seed_job` for every job over ``workers`` processes; returns seconds per image.

    OpenCV's own thread pool is reduced to one thread first: GrabCut gains little from it, and a pool
    started in this process before ``parallel_map`` forks can deadlock the forked workers (their
    ``cv2.setNumThreads(1)`` waits on threads that do not exist after the fork).
    """
    cv2.setNumThreads(1)
    task = functools.partial(run_box_seed_job, cfg=cfg, out_dir=Path(out_dir))
    return parallel_map(task, list(jobs), workers, desc="grabcut")


def run_box_seed_job(job: BoxSeedJob, cfg: GrabCutConfig, out_dir: Path) -> float:
    """Compute M_B for one validated image and write ``out_dir/<id>.png``; returns the seconds spent."""
    start = time.perf_counter()
    # the annotation is the one the stages see: a photo larger than dataset.max_side is shrunk to its size
    image = resize_image(read_image(job.image_path), (job.annotation.height, job.annotation.width))
    m_b = box_seeds(image, job.annotation, cfg, job.seed)
    write_label(Path(out_dir) / f"{job.annotation.image_id}.png", m_b)
    return time.perf_counter() - start
