"""Pseudo labels (paper §4.1 step 3 and §5 "inference"): node probabilities -> image -> CRF -> label map.

Three methods share the same post-processing so the ablation (Table 4(a)) compares like with like:

* ``a2gnn``: A²GNN trained per image on its graph (Eq. 16-28, :mod:`a2gnn.gnn.train`), output O (Eq. 19);
* ``random_walk``: PSA/SEAM random walk of the CAMs over the affinity graph (:mod:`a2gnn.random_walk`);
* ``baseline``: Table 4(a) "Baseline": CAM foreground seeds with background from the boxes, i.e. the
  CAM scores (with the (1 - max CAM)^alpha background) inside boxes, background outside every box.

Post-processing, in order: bilinear up-sampling to the image (§5), the box constraint (our choice, a
param: a class may only appear inside a box of that class, background everywhere), the dense CRF
(§5: unary = the probabilities, Gaussian + bilateral pairwise; a param), arg-max -> class ids.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from a2gnn.config import Config
from a2gnn.crf import CRFConfig, crf_job
from a2gnn.datasets.voc import Annotation
from a2gnn.parallel import parallel_map
from a2gnn.random_walk import background_score, infer_stride, upsample_scores

METHODS = ("a2gnn", "random_walk", "baseline")


@dataclasses.dataclass(frozen=True)
class PseudoLabelConfig(Config):
    """``pseudo_labels`` section: how node/CAM scores become label maps."""

    SECTION: typing.ClassVar[str] = "pseudo_labels"
    method: str = "a2gnn"  # "a2gnn" (paper) | "random_walk" (Table 4(a) RW) | "baseline" (Table 4(a) Baseline)
    use_crf: bool = True  # dense CRF post-processing (§5); params in the `crf` section
    box_constraint: bool = True  # class c only inside boxes of class c, background anywhere (our choice)
    baseline_bg_alpha: float = 6.0  # alpha of the baseline's background score (1 - max CAM)^alpha
    chunk_images: int = 200  # images whose graphs are held in memory at once (bounds memory at VOC scale)

    def validate(self) -> None:
        self.check(self.method in METHODS, "method", f"one of {METHODS}")
        self.check(self.baseline_bg_alpha > 0, "baseline_bg_alpha", "> 0")
        self.check(self.chunk_images >= 1, "chunk_images", ">= 1")


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


def node_probs_to_image(probs: Tensor, grid: tuple[int, int], image_size: tuple[int, int], channels: np.ndarray) -> np.ndarray:
    """A²GNN output O (N, C) on the grid -> bilinear up-sampled (1 + K, H, W) for the image's channels."""
    maps = probs.t().reshape(probs.shape[1], grid[0], grid[1])[torch.from_numpy(channels)]
    up = upsample_scores(maps, image_size, infer_stride(image_size, grid))
    return up.clamp_min(0).numpy()


def baseline_scores(cams: np.ndarray, bg_alpha: float) -> np.ndarray:
    """Table 4(a) Baseline scores: [(1 - max CAM)^alpha; CAMs], shape (1 + K, H, W) from cams (K, H, W)."""
    cams_t = torch.from_numpy(np.asarray(cams, dtype=np.float32))
    return torch.cat([background_score(cams_t, bg_alpha)[None], cams_t]).numpy()


def normalise(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores (C, H, W) -> per-pixel distribution over C."""
    scores = np.clip(scores, 0.0, None)
    total = scores.sum(axis=0, keepdims=True)
    uniform = np.full_like(scores, 1.0 / scores.shape[0])
    return np.where(total > 0, scores / np.maximum(total, 1e-12), uniform).astype(np.float32)


def finish_labels(
    images: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    annotations: Sequence[Annotation],
    cfg: PseudoLabelConfig,
    crf: CRFConfig,
    workers: int,
) -> list[np.ndarray]:
    """Box constraint, dense CRF (over ``workers`` processes) and arg-max for every image.

    scores[i]: (1 + K_i, H_i, W_i) for channels ``image_channels(annotations[i])``. Returns (H, W) uint8 maps.
    """
    probs = []
    for score, ann in zip(scores, annotations):
        p = normalise(score)
        if cfg.box_constraint:
            p = box_constraint(p, image_channels(ann), ann)
        probs.append(p)
    if cfg.use_crf:
        probs = parallel_map(crf_job, [(im, p, crf) for im, p in zip(images, probs)], workers, desc="crf")
    return [image_channels(ann)[p.argmax(axis=0)].astype(np.uint8) for p, ann in zip(probs, annotations)]


@dataclasses.dataclass(frozen=True)
class PseudoLabelInputs:
    """Where the inputs of one pseudo-label run live (paths as in dvc.yaml)."""

    seed_dir: str  # M_g label maps (outputs/seeds/M_g): node labels V^l
    affinity_model: str  # affinity CNN checkpoint (outputs/affinity/model.pt): X and E of the graph
    cam_dir: str  # cam stage output (outputs/cam): scores/<id>.npz for RW and the baseline


def aligned_cams(path, annotation: Annotation) -> np.ndarray:
    """CAMs of ``scores/<id>.npz`` ordered as ``annotation.image_labels``: (K, H, W) float32."""
    from a2gnn.io import DataError
    from a2gnn.seeds.scores import load_cam_scores

    cams, labels = load_cam_scores(path)
    order = {int(c): k for k, c in enumerate(labels)}
    missing = [c for c in annotation.image_labels if c not in order]
    if missing:
        raise DataError(path, f"no CAM for image label(s) {missing}")
    return cams[[order[c] for c in annotation.image_labels]]


def generate_pseudo_labels(
    dataset,
    inputs: PseudoLabelInputs,
    cfg: PseudoLabelConfig,
    graph_cfg,
    gnn_cfg,
    rw_cfg,
    crf_cfg: CRFConfig,
    device: str,
    seed: int,
    workers: int,
    progress=None,
):
    """Yield ``(image_id, label (H, W) uint8)`` for every image of ``dataset``, ``cfg.chunk_images`` at a time.

    Working in chunks bounds memory (graph features of a chunk only) at any dataset size; within a chunk
    the A²GNNs of all images train together (:func:`a2gnn.gnn.train.train_a2gnn`).
    """
    from pathlib import Path

    model = None
    if cfg.method in ("a2gnn", "random_walk"):
        from a2gnn.affinity.train import load_affinity

        model = load_affinity(inputs.affinity_model, device)
    ids = list(dataset.ids)
    chunks = [ids[s : s + cfg.chunk_images] for s in range(0, len(ids), cfg.chunk_images)]
    for chunk in progress(chunks) if progress is not None else chunks:
        annotations = [dataset.annotation(i) for i in chunk]
        images = [dataset.image(i) for i in chunk]
        if cfg.method == "baseline":
            scores = [
                baseline_scores(aligned_cams(Path(inputs.cam_dir) / "scores" / f"{i}.npz", a), cfg.baseline_bg_alpha)
                for i, a in zip(chunk, annotations)
            ]
        else:
            from a2gnn.graph import build_graphs

            graphs = build_graphs(model, dataset, inputs.seed_dir, graph_cfg, device, ids=chunk)
            if cfg.method == "a2gnn":
                from a2gnn.gnn.train import train_a2gnn

                probs = train_a2gnn(graphs, gnn_cfg, dataset.num_classes, device, seed, workers=workers)
                scores = [
                    node_probs_to_image(p, g.grid, g.image_size, image_channels(a))
                    for p, g, a in zip(probs, graphs, annotations)
                ]
            else:
                from a2gnn.random_walk import propagate_cams

                scores = []
                for i, g, a in zip(chunk, graphs, annotations):
                    cams = aligned_cams(Path(inputs.cam_dir) / "scores" / f"{i}.npz", a)
                    walked = propagate_cams(cams, g.edge_index, g.edge_weight, g.grid, rw_cfg)
                    scores.append(walked.numpy())
        labels = finish_labels(images, scores, annotations, cfg, crf_cfg, workers)
        yield from zip(chunk, labels)
