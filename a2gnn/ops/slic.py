r"""SLIC superpixels [23] (Achanta et al., TPAMI 2012): deterministic, vectorised, numpy + OpenCV only.

Neither scikit-image nor opencv-contrib is installed, so this is a small SLIC: k-means in (y, x, Lab) from a
fixed grid of seeds, each pixel compared with the 3 x 3 seeds around its own seed cell, then connectivity
enforced; labels ``0..K-1`` in raster order. Used by the superpixel graph of Table 4(c)
(:mod:`a2gnn.graph.superpixels`) and by the scribble / point expansion of §7.1 (:mod:`a2gnn.seeds.weak`); kept apart
from both so that neither depends on the other's code.
"""

from __future__ import annotations

import numpy as np

SLIC_SEGMENTS = 400
"""Default number of SLIC seeds (the paper and [21] give none; ~470 pixels per superpixel on a 500 x 375 image)."""
SLIC_COMPACTNESS = 10.0
"""m of SLIC [23]: weight of the spatial distance against the Lab distance (Lab in [0, 100]; SLIC's default)."""
SLIC_ITERATIONS = 10
"""k-means iterations (SLIC [23]: 10 suffice)."""
SLIC_MIN_SIZE = 0.25
"""Connected pieces smaller than this fraction of the seed-cell area S^2 are merged into a neighbour (SLIC: 1/4)."""

# 3 x 3 candidate seeds around a pixel's own seed cell, in a fixed order (ties -> the first)
_CANDIDATES = [(da, db) for da in (-1, 0, 1) for db in (-1, 0, 1)]
# neighbour directions (dy, dx) for connected components and fragment merging: up, left, down, right
_DIRECTIONS_4 = [(-1, 0), (0, -1), (1, 0), (0, 1)]


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) uint8 -> CIE Lab (H, W, 3) float64 (D65 white), L in [0, 100]."""
    rgb = image.astype(np.float64) / 255.0
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = linear @ m.T / np.array([0.950456, 1.0, 1.088754])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = np.where(xyz[..., 1] > 0.008856, 116.0 * f[..., 1] - 16.0, 903.3 * xyz[..., 1])
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` inside the map, else ``fill``. Shapes: (H, W) -> (H, W)."""
    out = np.full_like(a, fill)
    H, W = a.shape
    out[max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)] = a[
        max(dy, 0) : H - max(-dy, 0), max(dx, 0) : W - max(-dx, 0)
    ]
    return out


def _connected_components(labels: np.ndarray) -> np.ndarray:
    """4-connected components of equal labels: each pixel -> the smallest flat index of its component.

    Min-label propagation with pointer jumping, vectorised. Shapes: (H, W) -> (H, W) int64.
    """
    H, W = labels.shape
    comp = np.arange(H * W, dtype=np.int64).reshape(H, W)
    big = np.iinfo(np.int64).max
    while True:
        new = comp.copy()
        for dy, dx in _DIRECTIONS_4:
            same = _shift(labels, dy, dx, -1) == labels
            new = np.where(same, np.minimum(new, _shift(comp, dy, dx, big)), new)
        new = new.reshape(-1)[new]  # pointer jumping: a root's root is smaller still
        if np.array_equal(new, comp):
            return comp
        comp = new


def _enforce_connectivity(labels: np.ndarray, min_size: float) -> np.ndarray:
    """Keep each label's largest 4-connected piece if it has >= ``min_size`` pixels (all of them if none has);
    every other pixel takes the label of a kept 4-neighbour (up, left, down, right first), growing inwards, so
    every label is connected. Labels are renumbered 0..K-1 in raster order of their first pixel.

    Shapes: (H, W) -> (H, W) int64."""
    comp = _connected_components(labels)
    flat_comp = comp.reshape(-1)
    size = np.bincount(flat_comp, minlength=flat_comp.size)
    roots = np.flatnonzero(flat_comp == np.arange(flat_comp.size))
    root_label = labels.reshape(-1)[roots]
    order = np.lexsort((roots, -size[roots], root_label))  # by label, then largest, then first pixel
    first = np.ones(order.size, dtype=bool)
    first[1:] = root_label[order][1:] != root_label[order][:-1]
    best = roots[order][first]  # the largest piece of every label
    if (size[best] >= min_size).any():  # (none is, e.g. on pure noise: keep them all)
        best = best[size[best] >= min_size]
    keep_root = np.zeros(flat_comp.size, dtype=bool)
    keep_root[best] = True
    resolved = keep_root[comp]
    out = labels.copy()
    while not resolved.all():
        taken = np.zeros_like(resolved)
        for dy, dx in _DIRECTIONS_4:
            m = ~resolved & ~taken & _shift(resolved, dy, dx, False)
            out[m] = _shift(out, dy, dx, 0)[m]
            taken |= m
        resolved |= taken
    values, first_pixel = np.unique(out, return_index=True)
    rank = np.empty(first_pixel.size, dtype=np.int64)
    rank[np.argsort(first_pixel, kind="stable")] = np.arange(first_pixel.size)
    return rank[np.searchsorted(values, out)]


def slic(
    image: np.ndarray,
    n_segments: int = SLIC_SEGMENTS,
    compactness: float = SLIC_COMPACTNESS,
    iterations: int = SLIC_ITERATIONS,
    min_size: float = SLIC_MIN_SIZE,
) -> np.ndarray:
    r"""SLIC superpixels [23], deterministic and vectorised.

    Seeds start at the centres of a ``g_y x g_x`` grid of cells of size :math:`s_y \times s_x`
    (:math:`g_y g_x \approx` ``n_segments``, :math:`S = \sqrt{s_y s_x}`). Each iteration assigns every pixel to
    the nearest of the (up to) 9 seeds of its own and the adjacent cells by
    :math:`D^2 = \|lab_p - lab_k\|^2 + (m / S)^2 \|(y, x)_p - (y, x)_k\|^2` (ties: the first in row-major cell
    order), then moves every seed to the mean (y, x, Lab) of its pixels (a seed without pixels stays). Finally
    connectivity is enforced (pieces smaller than ``min_size`` S^2 merged into a neighbour). No randomness.

    Shapes: image (H, W, 3) uint8 -> labels (H, W) int64 in 0..K-1, every label used and 4-connected, numbered
    in raster order of their first pixel.
    """
    H, W = image.shape[:2]
    gy = max(1, min(H, round(np.sqrt(n_segments * H / W))))
    gx = max(1, min(W, round(n_segments / gy)))
    sy, sx = H / gy, W / gx
    S = float(np.sqrt(sy * sx))
    ys, xs = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    pixels = np.concatenate([np.stack([ys, xs], axis=-1), rgb_to_lab(image)], axis=-1).reshape(-1, 5)
    spatial = (compactness / S) ** 2
    weights = np.array([spatial, spatial, 1.0, 1.0, 1.0])

    cy, cx = np.minimum(ys // sy, gy - 1).astype(np.int64), np.minimum(xs // sx, gx - 1).astype(np.int64)
    centres = pixels.reshape(H, W, 5)[
        np.minimum(((np.arange(gy) + 0.5) * sy).astype(np.int64), H - 1)[:, None],
        np.minimum(((np.arange(gx) + 0.5) * sx).astype(np.int64), W - 1)[None, :],
    ].reshape(-1, 5)
    centres[:, 0] = np.repeat((np.arange(gy) + 0.5) * sy, gx)  # exact cell centres (not the centre pixels)
    centres[:, 1] = np.tile((np.arange(gx) + 0.5) * sx, gy)
    cand = []
    for da, db in _CANDIDATES:
        a, b = cy + da, cx + db
        ok = (a >= 0) & (a < gy) & (b >= 0) & (b < gx)
        cand.append(np.where(ok, a * gx + b, -1).reshape(-1))
    cand = np.stack(cand)  # (9, H W), -1 = no seed there
    k = gy * gx
    assign = np.zeros(H * W, dtype=np.int64)
    for _ in range(max(1, iterations)):
        near = np.maximum(cand, 0)
        d = sum(weights[c] * (pixels[None, :, c] - centres[near, c]) ** 2 for c in range(5))  # (9, H W)
        d[cand < 0] = np.inf
        assign = cand[np.argmin(d, axis=0), np.arange(H * W)]
        count = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, pixels[:, c], minlength=k) for c in range(5)], axis=1)
        used = count > 0
        centres[used] = sums[used] / count[used, None]
    return _enforce_connectivity(assign.reshape(H, W), min_size * S * S)
