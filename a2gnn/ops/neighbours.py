r"""Radius-r pixel neighbourhoods on a feature grid (paper §4.3, Eq. 7, 11, 14; shared by L_reg and the random walk).

A neighbourhood is a set of integer offsets ``(dy, dx)`` with :math:`dy^2 + dx^2 \le r^2`. Two equivalent
representations of "every in-grid pair (i, j = i + offset)" are provided:

* **sparse**: :func:`grid_pairs` gives a ``(2, P)`` int64 list of flat node indices (row-major, node ``n`` at
  row ``n // w``, column ``n % w``); row 0 is the centre ``i``, row 1 the neighbour ``j``.
* **dense**: :func:`neighbour_gather` stacks the map shifted by every offset into ``(B, C, K, h, w)``, with
  :func:`neighbour_valid` the ``(K, h, w)`` mask of in-grid pairs. Entry ``[..., k, y, x]`` pairs node
  ``(y, x)`` with node ``(y + dy_k, x + dx_k)``.

The two agree in order: ``dense[..., neighbour_valid(h, w, offsets)]`` lists the pairs exactly in the order of
``grid_pairs(h, w, offsets)`` (offset-major, then row-major over the centre node). The dense form only uses
slicing (no scatter), so its backward pass is deterministic and cheap; the sparse form feeds graphs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def radius_offsets(radius: int, include_self: bool = False, half: bool = False) -> Tensor:
    r"""All grid offsets within Euclidean distance ``radius``: :math:`\{(dy, dx) : dy^2 + dx^2 \le r^2\}`.

    Args:
        radius: r >= 0 (grid units).
        include_self: keep the offset (0, 0).
        half: keep one offset of each pair {o, -o} (``dy > 0``, or ``dy == 0`` and ``dx > 0``), so that every
            unordered pair of distinct nodes appears once (PSA's half disc).

    Returns:
        (K, 2) int64 rows ``(dy, dx)`` sorted by ``dy`` then ``dx`` ((0, 0), if kept, comes first when ``half``).
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    r = int(radius)
    span = torch.arange(-r, r + 1, dtype=torch.int64)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    dy, dx = dy.reshape(-1), dx.reshape(-1)
    keep = dy * dy + dx * dx <= radius * radius
    if half:
        keep &= (dy > 0) | ((dy == 0) & (dx > 0))
    if not include_self:
        keep &= (dy != 0) | (dx != 0)
    offsets = torch.stack([dy[keep], dx[keep]], dim=1)
    if half and include_self:
        offsets = torch.cat([torch.zeros(1, 2, dtype=torch.int64), offsets])
    return offsets


def neighbour_valid(h: int, w: int, offsets: Tensor) -> Tensor:
    """Mask of in-grid pairs: ``valid[k, y, x]`` is True iff ``(y + dy_k, x + dx_k)`` lies in the ``h x w`` grid.

    Shapes: offsets (K, 2) -> (K, h, w) bool.
    """
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    ty = ys + offsets[:, 0].view(-1, 1, 1)
    tx = xs + offsets[:, 1].view(-1, 1, 1)
    return (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)


def grid_pairs(h: int, w: int, offsets: Tensor) -> Tensor:
    """All in-grid pairs ``(i, j)`` with ``j = i + offset`` as flat row-major node indices.

    Order: offset-major, then row-major over the centre node ``i`` (the order of
    ``neighbour_gather(...)[..., neighbour_valid(...)]``).

    Shapes: offsets (K, 2) -> (2, P) int64, row 0 = i (centre), row 1 = j (neighbour).
    """
    valid = neighbour_valid(h, w, offsets)
    k, y, x = valid.nonzero(as_tuple=True)
    i = y * w + x
    j = (y + offsets[k, 0]) * w + (x + offsets[k, 1])
    return torch.stack([i, j]).to(torch.int64)


def shift_map(x: Tensor, dy: int, dx: int, fill: float = 0.0) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]`` where that is inside the map, else ``fill``.

    Shapes: (..., h, w) -> (..., h, w).
    """
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return torch.full_like(x, fill)
    padded = F.pad(x, (max(-dx, 0), max(dx, 0), max(-dy, 0), max(dy, 0)), value=fill)
    y0, x0 = max(dy, 0), max(dx, 0)
    return padded[..., y0 : y0 + h, x0 : x0 + w]


def neighbour_gather(x: Tensor, offsets: Tensor, fill: float = 0.0) -> Tensor:
    """Stack the map shifted by every offset: ``out[b, c, k, y, x] = x[b, c, y + dy_k, x + dx_k]``.

    Out-of-grid entries hold ``fill``; mask them with :func:`neighbour_valid`.

    Shapes: x (B, C, h, w), offsets (K, 2) -> (B, C, K, h, w).
    """
    return torch.stack([shift_map(x, int(dy), int(dx), fill) for dy, dx in offsets.tolist()], dim=2)


def neighbour_reduce(x: Tensor, offsets: Tensor, fn) -> Tensor:
    """``fn(x, shift(x, o_k))`` for every offset, stacked on a new dim 1, without materialising the gather.

    ``fn`` maps two ``(B, C, h, w)`` maps to ``(B, h, w)`` (e.g. a channel-reduced distance); out-of-grid
    entries see zeros as the neighbour and must be masked with :func:`neighbour_valid`.

    Shapes: x (B, C, h, w), offsets (K, 2) -> (B, K, h, w).
    """
    return torch.stack([fn(x, shift_map(x, int(dy), int(dx))) for dy, dx in offsets.tolist()], dim=1)
