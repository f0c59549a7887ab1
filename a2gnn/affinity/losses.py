r"""Losses of the affinity CNN (paper §4.3.1, Eq. 6-13) and the grid resampling they rely on.

All pair quantities are dense maps over the radius-r neighbourhood (see :mod:`a2gnn.ops.neighbours`): for offsets
``(K, 2)`` a pair map has shape ``(B, K, h, w)`` and entry ``[b, k, y, x]`` is the pair
``i = (y, x)``, ``j = (y + dy_k, x + dx_k)``. The training code uses the half disc without ``(0, 0)`` (each
unordered pair once): ``D`` and ``G`` are symmetric, so averages over the half disc equal those over all
ordered pairs, and self pairs only add ``log D(i, i) = 0`` terms (Eq. 10) or are excluded by ``[i != j]``
(Eq. 13).

Positions ``Pos(.)`` are in feature-grid units (one unit = one grid cell), as ``r`` is. Colours ``Cor(.)`` are
RGB in [0, 1], area-averaged onto the grid (:func:`downsample_image`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from a2gnn.core.io import IGNORE_INDEX
from a2gnn.ops.neighbours import neighbour_gather, neighbour_reduce, neighbour_valid

LOG_EPS = 1e-5
"""Added inside the logs of Eq. (10) (as PSA does) so that D = 0 or 1 keeps a finite loss and a gradient."""

LABEL_DOWNSAMPLE_MODES = ("centre", "majority")
LOSS_WEIGHTINGS = ("paper", "psa")
AR_NORMALISATIONS = ("pairs", "sum")


# --------------------------------------------------------------------------------------------------------------
# Image / label maps -> feature grid
# --------------------------------------------------------------------------------------------------------------


def downsample_labels(label: Tensor | np.ndarray, grid: tuple[int, int], mode: str = "centre") -> Tensor:
    r"""M_g -> M'_g (Eq. 6): a label map resampled onto the ``h x w`` feature grid.

    The image is mapped onto the grid proportionally: grid cell ``(a, b)`` covers image rows
    ``[a H / h, (a + 1) H / h)`` and columns ``[b W / w, (b + 1) W / w)``. For a backbone of stride ``s`` and an
    image whose sides are multiples of ``s`` this is exactly the ``s x s`` block of the cell.

    Modes (the paper only says "down-sampled"; the authors resize the seeds with nearest neighbour):

    * ``"centre"``: the label of the pixel at the cell centre, ``floor((a + 1/2) H / h)`` (nearest-neighbour
      resize; the default).
    * ``"majority"``: the most frequent value among the cell's pixels, 255 counted as a value (ties -> the
      smaller value), so a cell that is mostly unknown stays unknown.

    Shapes: label (..., H, W) integer -> (..., h, w) int64.
    """
    label = torch.as_tensor(label).to(torch.int64)
    H, W = label.shape[-2:]
    h, w = grid
    if mode == "centre":
        rows = torch.clamp((2 * torch.arange(h) + 1) * H // (2 * h), max=H - 1)
        cols = torch.clamp((2 * torch.arange(w) + 1) * W // (2 * w), max=W - 1)
        return label[..., rows[:, None], cols[None, :]]
    if mode == "majority":
        lead = label.shape[:-2]
        flat = label.reshape(-1, H, W)
        cell = (torch.arange(H) * h // H)[:, None] * w + (torch.arange(W) * w // W)[None, :]  # (H, W)
        n_values = IGNORE_INDEX + 1
        key = (torch.arange(flat.shape[0]).view(-1, 1, 1) * (h * w) + cell) * n_values + flat.clamp(0, IGNORE_INDEX)
        counts = torch.bincount(key.reshape(-1), minlength=flat.shape[0] * h * w * n_values)
        counts = counts.view(flat.shape[0], h * w, n_values)
        return counts.argmax(dim=-1).view(*lead, h, w)
    raise ValueError(f"unknown label down-sampling mode {mode!r}; expected one of {LABEL_DOWNSAMPLE_MODES}")


def downsample_image(image: Tensor, grid: tuple[int, int]) -> Tensor:
    """Image colours Cor(.) on the feature grid (Eq. 13): area average over each cell (adaptive average pooling).

    Shapes: image (..., 3, H, W) float in [0, 1] -> (..., 3, h, w).
    """
    lead = image.shape[:-3]
    pooled = F.adaptive_avg_pool2d(image.reshape(-1, *image.shape[-3:]), grid)
    return pooled.reshape(*lead, *pooled.shape[-3:])


# --------------------------------------------------------------------------------------------------------------
# Eq. 6-7: affinity labels
# --------------------------------------------------------------------------------------------------------------


class AffinityLabels(NamedTuple):
    """Pair labels of Eq. (6) and the split of the positives used by the PSA weighting. All (B, K, h, w)."""

    label: Tensor  # int64 L_A(i, j): 1 same label, 0 different, 255 not in R_pair
    bg_pos: Tensor  # bool, L_A = 1 and both nodes background (class 0)
    fg_pos: Tensor  # bool, L_A = 1 and both nodes the same foreground class
    neg: Tensor  # bool, L_A = 0 (A^-)

    @property
    def pos(self) -> Tensor:
        """A^+ (bool)."""
        return self.bg_pos | self.fg_pos


def affinity_labels(m_g: Tensor, offsets: Tensor, background: int = 0) -> AffinityLabels:
    r"""Class-agnostic pair labels L_A, Eq. (6), on the pair set R_pair of Eq. (7).

    .. math::
        L_A(i, j) = 1 \text{ if } (i, j) \in R_{pair},\ M'_g(i) = M'_g(j);\quad 0 \text{ if } (i, j) \in R_{pair},
        \ M'_g(i) \ne M'_g(j);\quad 255 \text{ else}

    with :math:`R_{pair} = \{(i, j) : M'_g(i) \ne 255,\ M'_g(j) \ne 255,\ \|Pos(i) - Pos(j)\|_2 \le r\}`; the
    radius is carried by ``offsets`` and pairs leaving the grid are outside R_pair.

    Shapes: m_g (B, h, w) int64 (M'_g, 255 = unknown), offsets (K, 2) -> AffinityLabels of (B, K, h, w).
    """
    h, w = m_g.shape[-2:]
    other = neighbour_gather(m_g.unsqueeze(1), offsets, fill=IGNORE_INDEX).squeeze(1)  # (B, K, h, w)
    centre = m_g.unsqueeze(1).expand_as(other)
    in_pair = (centre != IGNORE_INDEX) & (other != IGNORE_INDEX) & neighbour_valid(h, w, offsets).to(m_g.device)
    same = centre == other
    label = torch.full_like(other, IGNORE_INDEX)
    label[in_pair & same] = 1
    label[in_pair & ~same] = 0
    bg_pos = in_pair & same & (centre == background)
    fg_pos = in_pair & same & (centre != background)
    return AffinityLabels(label, bg_pos, fg_pos, in_pair & ~same)


# --------------------------------------------------------------------------------------------------------------
# Eq. 8: affinity
# --------------------------------------------------------------------------------------------------------------


def feature_distance(f_a: Tensor, offsets: Tensor) -> Tensor:
    r"""Normalised L1 feature distance :math:`\|F_A(i) - F_A(j)\|_1 / d_A` (inside Eq. 8 and Eq. 12).

    Entries whose neighbour leaves the grid are meaningless (compared with zeros); mask them with
    :func:`a2gnn.ops.neighbours.neighbour_valid`.

    Shapes: f_a (B, d_A, h, w), offsets (K, 2) -> (B, K, h, w).
    """
    return neighbour_reduce(f_a, offsets, lambda a, b: (a - b).abs().mean(dim=1))


def affinity(distance: Tensor) -> Tensor:
    r"""Affinity D(i, j), Eq. (8): :math:`D(i, j) = \exp(-\|F_A(i) - F_A(j)\|_1 / d_A)`.

    Shapes: distance (...) from :func:`feature_distance` -> (...) in (0, 1].
    """
    return torch.exp(-distance)


# --------------------------------------------------------------------------------------------------------------
# Eq. 10: L_Ac
# --------------------------------------------------------------------------------------------------------------


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (0 when the mask is empty, keeping the graph)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def affinity_ce_loss(d: Tensor, labels: AffinityLabels, weighting: str = "paper", eps: float = LOG_EPS) -> Tensor:
    r"""Affinity cross-entropy L_Ac, Eq. (10).

    ``"paper"`` (Eq. 10 as printed): positives and negatives averaged separately,

    .. math::
        L_{Ac} = -\frac{1}{|A^+|}\sum_{A^+} \log D(i, j) - \frac{1}{|A^-|}\sum_{A^-} \log(1 - D(i, j)).

    ``"psa"`` (PSA and the authors' code): background-positive, foreground-positive and negative pairs averaged
    separately and weighted 1/4, 1/4, 1/2.

    Means run over all pairs of the whole batch; an empty set contributes 0. ``eps`` (:data:`LOG_EPS`) is added
    inside the logs.

    Shapes: d (B, K, h, w) D(i, j) of Eq. (8), labels from :func:`affinity_labels` -> scalar.
    """
    log_pos = -torch.log(d + eps)
    log_neg = -torch.log(1.0 - d + eps)
    if weighting == "paper":
        return _masked_mean(log_pos, labels.pos) + _masked_mean(log_neg, labels.neg)
    if weighting == "psa":
        return (
            0.25 * _masked_mean(log_pos, labels.bg_pos)
            + 0.25 * _masked_mean(log_pos, labels.fg_pos)
            + 0.5 * _masked_mean(log_neg, labels.neg)
        )
    raise ValueError(f"unknown L_Ac weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")


# --------------------------------------------------------------------------------------------------------------
# Eq. 11-13: L_Ar
# --------------------------------------------------------------------------------------------------------------


def gaussian_kernel(
    pos_diff: Tensor, col_diff: Tensor, sigma_xy: float, sigma_rgb: float, squared_distance: bool = True
) -> Tensor:
    r"""Gaussian bandwidth filter G(i, j), Eq. (13).

    .. math::
        G(i, j) = \exp\Big(-\frac{\delta_{xy}}{2\sigma_{xy}^2} - \frac{\delta_{rgb}}{2\sigma_{rgb}^2}\Big)\,[i \ne j]

    As printed, Eq. (13) uses the Euclidean distances :math:`\delta = \|\cdot\|_2`; the Gaussian of the
    regularised losses it cites (and of dense CRFs) uses squared distances :math:`\delta = \|\cdot\|_2^2`.
    ``squared_distance=True`` (default) is the usual Gaussian; ``False`` is the formula as printed. With
    σ_rgb = 0.1 the printed form is very sharp: a colour difference of 0.1 already gives exp(-5).
    ``[i != j]`` is evaluated as ``pos_diff != 0`` (distinct grid nodes have distinct positions).

    Shapes: pos_diff (..., 2) Pos(i) - Pos(j) in grid units, col_diff (..., 3) Cor(i) - Cor(j) in [0, 1]
    -> (...).
    """
    d_xy = pos_diff.pow(2).sum(-1)
    d_rgb = col_diff.pow(2).sum(-1)
    if not squared_distance:
        d_xy, d_rgb = d_xy.sqrt(), d_rgb.sqrt()
    g = torch.exp(-d_xy / (2.0 * sigma_xy**2) - d_rgb / (2.0 * sigma_rgb**2))
    return g * (pos_diff != 0).any(-1).to(g.dtype)


def pair_gaussian_kernel(
    image: Tensor, offsets: Tensor, sigma_xy: float, sigma_rgb: float, squared_distance: bool = True
) -> Tensor:
    """Eq. (13) on every radius pair of a grid image (pairs leaving the grid get 0).

    Shapes: image (B, 3, h, w) grid colours in [0, 1], offsets (K, 2) -> (B, K, h, w).
    """
    h, w = image.shape[-2:]
    col_diff = image.unsqueeze(2) - neighbour_gather(image, offsets)  # (B, 3, K, h, w)
    pos_diff = (-offsets).to(image.dtype).view(1, -1, 1, 1, 2).to(image.device)
    g = gaussian_kernel(pos_diff, col_diff.permute(0, 2, 3, 4, 1), sigma_xy, sigma_rgb, squared_distance)
    return g * neighbour_valid(h, w, offsets).to(g)


def affinity_regularised_loss(
    distance: Tensor, kernel: Tensor, mask: Tensor, normalisation: str = "pairs", pair_multiplicity: int = 1
) -> Tensor:
    r"""Affinity regularised loss L_Ar, Eq. (12), over the pairs R_Ar of Eq. (11).

    .. math::
        L_{Ar} = \sum_i \sum_{(i, j) \in R_{Ar}} G(i, j)\, \|F_A(i) - F_A(j)\|_1 / d_A

    The printed sum is unnormalised, which makes its scale (and so the meaning of λ in Eq. 9) depend on image
    size and r. ``normalisation``:

    * ``"pairs"`` (default): divide by the number of pairs in ``mask`` (a mean over R_Ar of the batch);
    * ``"sum"``: the printed sum per image, averaged over the batch. Each listed pair counts
      ``pair_multiplicity`` times (2 when the offsets are a half disc, so that the sum runs over ordered
      pairs as in Eq. 12).

    Shapes: distance (B, K, h, w) from :func:`feature_distance`, kernel (B, K, h, w) G of Eq. (13) (no gradient
    needed), mask (B, K, h, w) bool (pairs in R_Ar: inside the grid and the image) -> scalar.
    """
    weighted = distance * kernel.detach() * mask.to(distance.dtype)
    if normalisation == "pairs":
        return weighted.sum() / mask.sum().clamp_min(1).to(distance.dtype)
    if normalisation == "sum":
        return pair_multiplicity * weighted.sum() / distance.shape[0]
    raise ValueError(f"unknown L_Ar normalisation {normalisation!r}; expected one of {AR_NORMALISATIONS}")


def affinity_total_loss(l_ac: Tensor, l_ar: Tensor, lambda_ar: float) -> Tensor:
    r"""Affinity CNN loss, Eq. (9): :math:`L_{Aff} = L_{Ac} + \lambda L_{Ar}` (λ = 3 in the paper).

    Shapes: scalars -> scalar.
    """
    return l_ac + lambda_ar * l_ar
