"""Pseudo labels (paper §4.1 step 3 and §5 "inference"): class scores -> box constraint -> CRF -> label map.

Three methods (each a :class:`Scorer` giving per-image class scores) share the same post-processing so the
ablation (Table 4(a)) compares like with like:

* A²GNN trained per image on its graph (Eq. 16-28): :class:`a2gnn.pseudo_labels.a2gnn.A2GNNScorer`;
* "RW", the PSA/SEAM random walk of the CAMs over the affinity graph: :class:`a2gnn.pseudo_labels.random_walk.RandomWalkScorer`;
* "Baseline", CAM foreground inside the boxes, background from the boxes: :class:`a2gnn.pseudo_labels.baseline.BaselineScorer`.

Each lives in its own module so a stage imports (and DVC re-runs it for) only the code of its method.

Post-processing, in order: bilinear up-sampling to the image (§5), the box constraint (our choice, a
param: a class may only appear inside a box of that class, background everywhere), the dense CRF
(§5: unary = the probabilities, Gaussian + bilateral pairwise; a param), arg-max -> class ids.

Last, when ``postprocess.min_box_fill`` > 0 (our addition, not the paper's), every box whose class covers less than
that share of it takes its object from GrabCut's M_B (Eq. 3; :func:`fill_empty_boxes`): the SDI rule that Eq. 2
applies to GrabCut's masks, applied to the final labels. Objects narrower than a few stride-8 graph nodes, or
erased by the CRF, are otherwise lost whole (coco_tiny: 121 of 470 boxes under 15 %). With
``postprocess.fill_source: grabcut_crf`` such a box takes instead the object of the "GrabCut + CRF" label
(:func:`grabcut_crf_fallback`: M_B's soft label through this same post-processing).

Photos larger than ``dataset.max_side`` are worked on shrunk; §5 says the output probability is interpolated
bilinearly "to the original resolution" before the CRF. ``postprocess.resolution`` chooses where the steps run:

* ``working``: all at the shrunk size, the label map then enlarged to the photo by nearest neighbour;
* ``original`` (§5 read literally): the probabilities up-sampled to the photo's own size, the photo's boxes and a
  CRF on the full-size photo (whose kernels, in pixels, cover a smaller share of a large photo unless
  ``crf.scale_with_image``);
* ``two_scale``: the CRF at the shrunk size (where its kernels were tuned), then its marginals up-sampled
  bilinearly and refined by a second CRF on the full-size photo within the photo's boxes.

For images at most ``max_side`` long the three are the same computation.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Protocol, Sequence

import numpy as np

from a2gnn.core.config import Config
from a2gnn.ops.crf import CRFConfig, crf_job, dense_crf
from a2gnn.data.voc import Annotation
from a2gnn.core.io import IGNORE_INDEX
from a2gnn.core.parallel import parallel_map


@dataclasses.dataclass(frozen=True)
class PostprocessConfig(Config):
    """``postprocess`` section: what every pseudo-label method goes through (Table 4(a) compares like with like)."""

    SECTION: typing.ClassVar[str] = "postprocess"
    use_crf: bool = True  # dense CRF post-processing (§5); its params are the `crf` section
    box_constraint: bool = True  # class c only inside boxes of class c, background anywhere (our choice)
    resolution: str = "two_scale"  # working | original | two_scale: where box constraint and CRF run (§5)
    min_box_fill: float = 0.0  # box whose class covers less than this share of it takes M_B's object there (0 = off)
    fill_source: str = "grabcut"  # what such a box takes: grabcut (M_B as is) | grabcut_crf (GrabCut + CRF's object)

    def validate(self) -> None:
        self.check(self.resolution in RESOLUTIONS, "resolution", f"one of {RESOLUTIONS}")
        self.check(0.0 <= self.min_box_fill <= 1.0, "min_box_fill", "in [0, 1]")
        self.check(self.fill_source in FILL_SOURCES, "fill_source", f"one of {FILL_SOURCES}")


RESOLUTIONS = ("working", "original", "two_scale")
FILL_SOURCES = ("grabcut", "grabcut_crf")


def image_channels(annotation: Annotation) -> np.ndarray:
    """Class ids of the channels kept for an image: background then its image-level labels, shape (1 + K,)."""
    return np.array((0,) + annotation.image_labels, dtype=np.int64)


def box_constraint(scores: np.ndarray, channels: np.ndarray, annotation: Annotation) -> np.ndarray:
    """Zero every foreground class outside the boxes of that class (background is always allowed).

    Shapes: scores (1 + K, H, W) for ``channels`` (1 + K,) class ids -> (1 + K, H, W), renormalised to
    sum to 1 per pixel.
    """
    allowed = np.zeros(scores.shape, dtype=bool)
    allowed[0] = True
    index = {int(c): k for k, c in enumerate(channels)}
    for box in annotation.boxes:
        allowed[index[box.label], box.y1 : box.y2, box.x1 : box.x2] = True
    out = np.where(allowed, scores, 0.0)
    total = out.sum(axis=0, keepdims=True)
    # A pixel whose allowed scores are all zero falls back to background.
    out[0] = np.where(total[0] > 0, out[0], 1.0)
    return (out / np.maximum(out.sum(axis=0, keepdims=True), 1e-12)).astype(np.float32)


def soft_label(label: np.ndarray, channels: np.ndarray, confidence: float) -> np.ndarray:
    """A hard label as class probabilities: ``confidence`` on its class, the rest shared by the other channels.

    Shapes: label (H, W) class ids (255 = unknown -> background), channels (C,) class ids -> (C, H, W) float32.
    A class of the label that is not among ``channels`` raises ValueError."""
    label = np.where(label == IGNORE_INDEX, 0, label)  # unknown -> background, class 0 (as image_channels)
    index = np.full(256, -1, dtype=np.int64)
    index[channels] = np.arange(len(channels))
    which = index[label]
    if (which < 0).any():
        raise ValueError(f"label classes {sorted(set(np.unique(label)) - set(channels.tolist()))} are not channels")
    c = len(channels)
    if c == 1:
        return np.ones((1,) + label.shape, dtype=np.float32)
    probs = np.full((c,) + label.shape, (1.0 - confidence) / (c - 1), dtype=np.float32)
    np.put_along_axis(probs, which[None], np.float32(confidence), axis=0)
    return probs


def normalise(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores (C, H, W) -> per-pixel distribution over C."""
    scores = np.clip(scores, 0.0, None)
    total = scores.sum(axis=0, keepdims=True)
    uniform = np.full_like(scores, 1.0 / scores.shape[0])
    return np.where(total > 0, scores / np.maximum(total, 1e-12), uniform).astype(np.float32)


def constrained_probs(scores: np.ndarray, annotation: Annotation, cfg: PostprocessConfig) -> np.ndarray:
    """Scores (1 + K, H, W) -> per-pixel distribution, box-constrained when ``cfg.box_constraint``."""
    probs = normalise(scores)
    return box_constraint(probs, image_channels(annotation), annotation) if cfg.box_constraint else probs


def class_ids(probs: np.ndarray, annotation: Annotation) -> np.ndarray:
    """Arg-max of (1 + K, H, W) probabilities over ``image_channels(annotation)`` -> (H, W) uint8 class ids."""
    return image_channels(annotation)[probs.argmax(axis=0)].astype(np.uint8)


def finish_labels(
    images: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    annotations: Sequence[Annotation],
    cfg: PostprocessConfig,
    crf: CRFConfig,
    workers: int,
) -> list[np.ndarray]:
    """Box constraint, dense CRF (over ``workers`` processes) and arg-max for every image.

    scores[i]: (1 + K_i, H_i, W_i) for channels ``image_channels(annotations[i])``. Returns (H, W) uint8 maps.
    """
    probs = [constrained_probs(score, ann, cfg) for score, ann in zip(scores, annotations)]
    if cfg.use_crf:
        probs = parallel_map(crf_job, [(im, p, crf) for im, p in zip(images, probs)], workers, desc="crf")
    return [class_ids(p, ann) for p, ann in zip(probs, annotations)]


def fill_empty_boxes(label: np.ndarray, boxes: Sequence, fallback: np.ndarray, min_fill: float) -> np.ndarray:
    """Small-object fallback (``postprocess.min_box_fill``; our addition): boxes whose class is under-filled take M_B's.

    label, fallback: (H, W) uint8 class maps of one image (fallback = GrabCut's M_B, 255 = unknown); boxes: its
    :class:`~a2gnn.data.voc.Box` es in the same pixel frame. A box is under-filled when the pixels of its class
    inside it are fewer than ``min_fill`` x its area (measured on ``label`` as given); each such box then writes its
    class where ``fallback`` has that class inside the box. Boxes are visited largest first, so a small box nested in a
    large one has the last word (as M_B's smallest-box rule, Eq. 3). Returns a new (H, W) uint8 map; ``min_fill`` 0
    returns ``label`` unchanged.
    """
    out = np.array(label, dtype=np.uint8, copy=True)
    under = under_filled_boxes(label, boxes, min_fill)
    for box in sorted(under, key=lambda b: -b.area):  # stable: equal areas keep box order
        window = out[box.y1 : box.y2, box.x1 : box.x2]
        window[fallback[box.y1 : box.y2, box.x1 : box.x2] == box.label] = box.label
    return out


def under_filled_boxes(label: np.ndarray, boxes: Sequence, min_fill: float) -> list:
    """The boxes whose class covers fewer than ``min_fill`` x their area of ``label`` (H, W) (none when 0), in
    their given order (:func:`fill_empty_boxes`)."""
    if min_fill <= 0:
        return []
    return [b for b in boxes if b.area > 0
            and np.count_nonzero(label[b.y1 : b.y2, b.x1 : b.x2] == b.label) < min_fill * b.area]


def upsample_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of class scores (C, h, w) to ``size`` = (H, W) (pixel centres aligned, edges clamped):
    (C, H, W) float32; returned as is when already that size."""
    import cv2

    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape[1:] == tuple(size):
        return scores
    out = [cv2.resize(channel, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for channel in scores]
    return np.stack(out).astype(np.float32)


def finish_at_original(job) -> np.ndarray:
    """One shrunk image's labels at its original resolution (``resolution`` ``original`` or ``two_scale``).

    job: ``(image_path, scores (1 + K, h, w) at the working size, annotation at the working size, annotation at the
    original size, PostprocessConfig, CRFConfig)``. Returns (H, W) uint8 class ids. The photo is read here (in the
    worker), so a chunk never holds more than one full-size photo per process. Picklable for
    :func:`a2gnn.core.parallel.parallel_map`.
    """
    from a2gnn.data.resize import resize_image
    from a2gnn.core.io import DataError, read_image

    path, scores, working, annotation, cfg, crf = job
    image = read_image(path)
    if image.shape[:2] != (annotation.height, annotation.width):
        raise DataError(path, f"image is {image.shape[1]}x{image.shape[0]}, its annotation says "
                              f"{annotation.width}x{annotation.height}")
    shrunk = scores.shape[1:] != image.shape[:2]
    if cfg.use_crf and cfg.resolution == "two_scale" and shrunk:  # first scale: the CRF on the shrunk photo
        probs = dense_crf(resize_image(image, scores.shape[1:]), constrained_probs(scores, working, cfg), crf)
    else:
        probs = normalise(scores)
    probs = constrained_probs(upsample_scores(probs, image.shape[:2]), annotation, cfg)
    if cfg.use_crf:
        probs = dense_crf(image, probs, crf)
    return class_ids(probs, annotation)


def aligned_cams(path, annotation: Annotation) -> np.ndarray:
    """CAMs of ``scores/<id>.npz`` ordered as ``annotation.image_labels``: (K, H, W) float32."""
    from a2gnn.core.io import DataError
    from a2gnn.seeds.scores import load_cam_scores

    cams, labels = load_cam_scores(path)
    order = {int(c): k for k, c in enumerate(labels)}
    missing = [c for c in annotation.image_labels if c not in order]
    if missing:
        raise DataError(path, f"no CAM for image label(s) {missing}")
    return cams[[order[c] for c in annotation.image_labels]]


def fuse_scores(primary: np.ndarray, secondary: np.ndarray, weight: float) -> np.ndarray:
    """§7.1 image-level: (1 - weight) x primary + weight x secondary, each first made a per-pixel distribution.

    Shapes: two (C, H, W) score maps over the same channels -> (C, H, W) float32 (the paper's "1:3" of A²GNN to
    the random walk is weight 0.75).
    """
    return ((1.0 - weight) * normalise(primary) + weight * normalise(secondary)).astype(np.float32)


class Scorer(Protocol):
    """One pseudo-label method: the (1 + K, H, W) class scores of a chunk of images (channels image_channels)."""

    def __call__(self, ids: Sequence[str], annotations: Sequence[Annotation]) -> list[np.ndarray]: ...


def generate_pseudo_labels(
    dataset,
    scorer: Scorer,
    cfg: PostprocessConfig,
    crf_cfg: CRFConfig,
    workers: int,
    chunk_images: int,
    progress=None,
):
    """Yield ``(image_id, label (H, W) uint8)`` for every image of ``dataset``, ``chunk_images`` at a time.

    Working in chunks bounds memory (the graph features of one chunk) at any dataset size; the chunk size
    does not change any label. Labels are at the original size when ``cfg.resolution`` is not ``working`` and the
    dataset was shrunk (:class:`a2gnn.data.resize.ResizedDataset`), else at the size the scorer saw.
    """
    from a2gnn.data.resize import ResizedDataset

    ids = list(dataset.ids)
    chunks = [ids[s : s + chunk_images] for s in range(0, len(ids), chunk_images)]
    at_original = cfg.resolution != "working" and isinstance(dataset, ResizedDataset)
    for chunk in progress(chunks) if progress is not None else chunks:
        annotations = [dataset.annotation(i) for i in chunk]
        scores = scorer(chunk, annotations)
        if at_original:
            jobs = [(dataset.image_path(i), s, a, dataset.original.annotation(i), cfg, crf_cfg)
                    for i, s, a in zip(chunk, scores, annotations)]
            yield from zip(chunk, parallel_map(finish_at_original, jobs, workers, desc="crf (original size)"))
            continue
        images = [dataset.image(i) for i in chunk]
        yield from zip(chunk, finish_labels(images, scores, annotations, cfg, crf_cfg, workers))


def photo_boxes(dataset, image_id: str) -> tuple:
    """The boxes of an image in the frame :func:`a2gnn.data.resize.to_original` maps labels to (the photo's)."""
    from a2gnn.data.resize import ResizedDataset

    reader = dataset.original if isinstance(dataset, ResizedDataset) else dataset
    return reader.annotation(image_id).boxes


def finish_one(dataset, image_id: str, scores: np.ndarray, cfg: PostprocessConfig, crf: CRFConfig) -> np.ndarray:
    """One image's (1 + K, h, w) scores at the working size -> its (H, W) uint8 label at the original size, exactly
    as :func:`generate_pseudo_labels` finishes it (box constraint, CRF per ``cfg.resolution``, arg-max)."""
    from a2gnn.data.resize import ResizedDataset, to_original

    annotation = dataset.annotation(image_id)
    if cfg.resolution != "working" and isinstance(dataset, ResizedDataset):
        return finish_at_original((dataset.image_path(image_id), scores, annotation,
                                   dataset.original.annotation(image_id), cfg, crf))
    label = finish_labels([dataset.image(image_id)], [scores], [annotation], cfg, crf, workers=0)[0]
    return to_original(dataset, image_id, label)


def grabcut_crf_fallback(dataset, image_id: str, m_b: np.ndarray, cfg: PostprocessConfig, crf: CRFConfig,
                         confidence: float, m_b_path="M_B") -> np.ndarray:
    """What an under-filled box takes with ``fill_source: grabcut_crf``: the "GrabCut + CRF" label of the image
    (M_B (h, w) at the working size as a soft label of ``confidence``, :func:`soft_label`, through this same
    post-processing), its own under-filled boxes filled from M_B: the label the ``grabcut_crf`` stage writes for
    the image. Returns (H, W) uint8 at the original size; an M_B class that is not among the image's raises
    DataError naming ``m_b_path``."""
    from a2gnn.data.resize import to_original
    from a2gnn.core.io import DataError

    try:
        scores = soft_label(m_b, image_channels(dataset.annotation(image_id)), confidence)
    except ValueError as exc:
        raise DataError(m_b_path, str(exc)) from exc
    label = finish_one(dataset, image_id, scores, cfg, crf)
    return fill_empty_boxes(label, photo_boxes(dataset, image_id), to_original(dataset, image_id, m_b),
                            cfg.min_box_fill)


def write_pseudo_labels(dataset, scorer: Scorer, cfg: PostprocessConfig, crf_cfg: CRFConfig, workers: int,
                        chunk_images: int, out_dir, desc: str, fallback_dir=None,
                        fill_confidence: float | None = None) -> None:
    """Run :func:`generate_pseudo_labels` and write ``<out_dir>/<id>.png``, all or nothing (atomic directory),
    at the original image resolution (labels made at the working size are enlarged by nearest neighbour).

    ``fallback_dir``: M_B (``<id>.png`` at the working size), needed when ``cfg.min_box_fill`` > 0
    (:func:`fill_empty_boxes`, applied at the original resolution with the photo's own boxes). With
    ``cfg.fill_source`` ``grabcut_crf``, an image with an under-filled box takes :func:`grabcut_crf_fallback` there
    instead of M_B (computed only for such images); ``fill_confidence`` (``grabcut_crf.confidence``) is then needed.
    """
    from a2gnn.core.cli import progress
    from a2gnn.core.config import ConfigError
    from a2gnn.data.resize import to_original
    from a2gnn.core.io import atomic_dir, write_label
    from a2gnn.data.labels import LabelFolder

    if cfg.min_box_fill > 0 and fallback_dir is None:
        raise ConfigError("postprocess.min_box_fill > 0 needs M_B (the stage's --grabcut <m_b_dir>)")
    if cfg.min_box_fill > 0 and cfg.fill_source == "grabcut_crf" and fill_confidence is None:
        raise ConfigError("postprocess.fill_source grabcut_crf needs grabcut_crf.confidence")
    labels = generate_pseudo_labels(dataset, scorer, cfg, crf_cfg, workers, chunk_images,
                                    progress=lambda chunks: progress(chunks, desc=desc))
    m_b = LabelFolder(fallback_dir, "M_B", hint="(M_B of another dataset.max_side?)") if fallback_dir else None
    with atomic_dir(out_dir) as tmp:
        for image_id, label in labels:
            fallback = None
            if cfg.min_box_fill > 0:
                working = dataset.annotation(image_id)
                fallback = m_b.read(image_id, (working.height, working.width))
            label = to_original(dataset, image_id, label)
            if fallback is not None:
                boxes = photo_boxes(dataset, image_id)
                if cfg.fill_source == "grabcut_crf" and under_filled_boxes(label, boxes, cfg.min_box_fill):
                    source = grabcut_crf_fallback(dataset, image_id, fallback, cfg, crf_cfg, fill_confidence,
                                                  m_b.path(image_id))
                else:
                    source = to_original(dataset, image_id, fallback)
                label = fill_empty_boxes(label, boxes, source, cfg.min_box_fill)
            write_label(tmp / f"{image_id}.png", label)


@dataclasses.dataclass
class FusedScorer:
    """Two :class:`Scorer` s fused per image by :func:`fuse_scores` (§7.1: A²GNN with the random walk, 1:3)."""

    primary: Scorer
    secondary: Scorer
    weight: float  # share of ``secondary``

    def __call__(self, ids: Sequence[str], annotations: Sequence[Annotation]) -> list[np.ndarray]:
        first, second = self.primary(ids, annotations), self.secondary(ids, annotations)
        return [fuse_scores(a, b, self.weight) for a, b in zip(first, second)]
