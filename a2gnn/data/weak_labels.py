r"""Other weak supervision (paper §7, Table 5): scribbles and points, synthetic or the user's, and their expansion.

The paper trains on the scribbles of ScribbleSup and the points of "What's the point"; neither exists for the
embedded dataset, so this module draws them **reproducibly from the ground truth**, the way an annotator would,
and stays out of everything else (the method never sees the ground truth, only these annotations):

* **Points** (§7.1 "for each object in an image, it provides one point"): one pixel per object instance, drawn
  uniformly among the instance's pixels whose distance to its outline is at least ``point_centre`` times the
  largest such distance (annotators click near the middle); no background point.
* **Scribbles** (§7.1 "for each class in an image (including background), one or more scribbles"): one stroke
  per object instance and per background region (connected component of background of at least
  ``min_background_area`` px): a polyline through ``scribble_points`` random pixels at least ``margin`` px inside
  the region, ordered along the region's principal axis, drawn ``scribble_width`` px wide and clipped to the
  region, so every scribble pixel lies inside its region.
* Randomness per image comes from ``numpy.random.default_rng((seed, crc32(image_id)))``: the same params and
  data give the same annotations on any machine, in any image order.

An annotation map is an (H, W) uint8 label map, 255 where nothing is annotated. :func:`expand_by_superpixels` is
§7.1's "superpixel method [23] is used to get the expanded labels M_S" (M_P for points): a superpixel touched by
annotations of exactly one class takes that class; one touched by several keeps only its annotated pixels.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from a2gnn.core.io import IGNORE_INDEX

BACKGROUND = 0


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image's synthetic annotation: independent of the order images are processed in."""
    return np.random.default_rng((int(seed), zlib.crc32(image_id.encode("utf-8"))))


def inner_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of each pixel of ``mask`` to the nearest pixel outside it (0 outside).

    Shapes: mask (H, W) bool -> (H, W) float32. The image border does not count as outside.
    """
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)


def interior(mask: np.ndarray, margin: float) -> np.ndarray:
    """Pixels of ``mask`` at least ``margin`` px inside it; for a region too thin for that, its innermost pixels.

    Shapes: (H, W) bool -> (H, W) bool (empty only when ``mask`` is).
    """
    dist = inner_distance(mask)
    inside = dist >= margin
    if not inside.any() and mask.any():
        inside = dist >= dist.max()
    return inside & mask


def synthetic_point(mask: np.ndarray, rng: np.random.Generator, centre: float) -> tuple[int, int]:
    """One click (y, x) inside ``mask`` (H, W) bool: uniform among pixels with inner distance >= centre * max."""
    dist = inner_distance(mask)
    ys, xs = np.nonzero(mask & (dist >= centre * dist.max()))
    k = int(rng.integers(len(ys)))
    return int(ys[k]), int(xs[k])


def synthetic_scribble(mask: np.ndarray, rng: np.random.Generator, points: int, width: int, margin: float) -> np.ndarray:
    """One stroke inside ``mask``: a ``width``-px polyline through ``points`` random interior pixels (at least
    ``margin`` px inside), ordered along the principal axis of the interior, clipped to ``mask``.

    Shapes: mask (H, W) bool -> (H, W) bool, non-empty whenever ``mask`` is, and a subset of it.
    """
    ys, xs = np.nonzero(interior(mask, margin))
    chosen = rng.choice(len(ys), size=min(points, len(ys)), replace=False)
    coords = np.stack([xs[chosen], ys[chosen]], axis=1).astype(np.float64)
    centred = np.stack([xs, ys], axis=1).astype(np.float64)
    centred -= centred.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(ys) > 1 else np.array([1.0, 0.0])
    ordered = coords[np.argsort(coords @ axis, kind="stable")].astype(np.int32)
    canvas = np.zeros(mask.shape, dtype=np.uint8)
    cv2.polylines(canvas, [ordered.reshape(-1, 1, 2)], isClosed=False, color=1, thickness=max(int(width), 1))
    canvas[ordered[:, 1], ordered[:, 0]] = 1  # a single control point still marks its pixel
    return (canvas > 0) & mask


def object_regions(semantic: np.ndarray, instance: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, mask) of every object instance: instance ids 1..254 of ``instance``, class = the most frequent
    foreground class of ``semantic`` under it (instances without one are skipped). Shapes: (H, W) maps."""
    regions = []
    for inst in np.unique(instance):
        if inst == 0 or inst == IGNORE_INDEX:
            continue
        mask = instance == inst
        classes = semantic[mask]
        classes = classes[(classes != BACKGROUND) & (classes != IGNORE_INDEX)]
        if classes.size:
            regions.append((int(np.bincount(classes).argmax()), mask))
    return regions


def background_regions(semantic: np.ndarray, min_area: int) -> list[tuple[int, np.ndarray]]:
    """(0, mask) of every 8-connected background component of ``semantic`` (H, W) with at least ``min_area`` px."""
    count, components = cv2.connectedComponents((semantic == BACKGROUND).astype(np.uint8), connectivity=8)
    masks = [components == k for k in range(1, count)]
    return [(BACKGROUND, m) for m in masks if int(m.sum()) >= min_area]


def synthetic_points(semantic: np.ndarray, instance: np.ndarray, rng: np.random.Generator, centre: float) -> np.ndarray:
    """Point annotation of one image: one click per object instance, no background. (H, W) uint8, 255 elsewhere."""
    out = np.full(semantic.shape, IGNORE_INDEX, dtype=np.uint8)
    for cls, mask in object_regions(semantic, instance):
        y, x = synthetic_point(mask, rng, centre)
        out[y, x] = cls
    return out


def synthetic_scribbles(semantic: np.ndarray, instance: np.ndarray, rng: np.random.Generator, points: int,
                        width: int, margin: float, min_background_area: int) -> np.ndarray:
    """Scribble annotation of one image: a stroke per object instance and per background region (see module
    docstring). Shapes: (H, W) maps -> (H, W) uint8, 255 where no scribble."""
    out = np.full(semantic.shape, IGNORE_INDEX, dtype=np.uint8)
    for cls, mask in background_regions(semantic, min_background_area) + object_regions(semantic, instance):
        out[synthetic_scribble(mask, rng, points, width, margin)] = cls
    return out


def expand_by_superpixels(annotation: np.ndarray, superpixels: np.ndarray) -> np.ndarray:
    """§7.1 M_S / M_P: every superpixel touched by annotations of a single class takes that class; a superpixel
    touched by several classes keeps only its annotated pixels; untouched superpixels stay 255.

    Shapes: annotation (H, W) uint8 (255 = none), superpixels (H, W) int ids 0..S-1 -> (H, W) uint8.
    """
    sp = superpixels.reshape(-1).astype(np.int64)
    ann = annotation.reshape(-1)
    labelled = ann != IGNORE_INDEX
    n_sp = int(sp.max()) + 1 if sp.size else 0
    counts = np.zeros((n_sp, 256), dtype=np.int64)
    np.add.at(counts, (sp[labelled], ann[labelled].astype(np.int64)), 1)
    single = (counts > 0).sum(axis=1) == 1
    sp_class = np.where(single, counts.argmax(axis=1), IGNORE_INDEX).astype(np.uint8)
    out = sp_class[sp]
    out[labelled] = ann[labelled]
    return out.reshape(annotation.shape)


def merge_seeds(primary: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """§7.1 merge rule: the label of ``primary`` where it is known (not 255), else that of ``fallback``. (H, W)."""
    return np.where(primary != IGNORE_INDEX, primary, fallback).astype(np.uint8)
