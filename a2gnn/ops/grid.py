r"""Image <-> feature grid: the one mapping every stage uses (stride-aligned cells).

A backbone of output stride ``s`` turns an ``H x W`` image into an ``h x w = ceil(H / s) x ceil(W / s)`` grid
(:mod:`a2gnn.backbones.base`). Grid cell ``(a, b)`` **is** the pixel block

.. math::
    \text{rows } [a s, \min((a + 1) s, H)), \qquad \text{columns } [b s, \min((b + 1) s, W)),

so the last row/column of cells may be cut by the image border. Its centre (continuous pixel coordinates,
pixel ``i`` covering ``[i, i + 1)``) is ``(a + 1/2) s``; the *centre pixel* is ``min(a s + floor(s / 2), H - 1)``,
always inside the cell. Every conversion follows from this:

* :meth:`GridMap.boxes` - a pixel box ``[x1, x2) x [y1, y2)`` -> the half-open range of cells it touches
  (``"touch"``: ``floor(x1 / s)``, ``ceil(x2 / s)``) or whose centres lie inside it (``"centre"``);
* :meth:`GridMap.downsample_labels` - a label map -> the label of each cell's centre pixel (nearest) or the
  most frequent value of its in-image pixels (majority);
* :meth:`GridMap.downsample_image` - an image (or score map) -> the mean of each cell's in-image pixels;
* :meth:`GridMap.upsample` - grid scores -> bilinear to ``(h s, w s)`` (cell values at the cell centres,
  ``align_corners=False``), cropped to ``(H, W)``; :meth:`GridMap.bilinear_taps` gives the same interpolation
  as 2 x 2 (node, weight) taps per pixel, for losses on a subset of pixels.

When ``H`` and ``W`` are multiples of ``s`` (affinity-CNN training crops) the cells are exact ``s x s`` blocks
and the mapping equals the proportional one (cell = ``[a H / h, (a + 1) H / h)``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from a2gnn.core.io import IGNORE_INDEX

LABEL_DOWNSAMPLE_MODES = ("centre", "majority")
BOX_RULES = ("touch", "centre")


def infer_stride(image_size: tuple[int, int], grid: tuple[int, int]) -> int:
    """Output stride s with ``grid == (ceil(H / s), ceil(W / s))``; the smallest one, s = ceil(H / h)."""
    (height, width), (h, w) = image_size, grid
    if h < 1 or w < 1:
        raise ValueError(f"grid {grid} is empty")
    stride = math.ceil(height / h)
    if stride < 1 or math.ceil(height / stride) != h or math.ceil(width / stride) != w:
        raise ValueError(f"grid {grid} is not ceil(image {image_size} / stride) for any stride; pass stride")
    return stride


@dataclasses.dataclass(frozen=True)
class GridMap:
    """The stride-aligned mapping between an ``(H, W)`` image and its ``(ceil(H / s), ceil(W / s))`` grid."""

    image_size: tuple[int, int]  # (H, W) pixels
    stride: int  # s, the backbone's output stride

    def __post_init__(self) -> None:
        if self.stride < 1 or min(self.image_size) < 1:
            raise ValueError(f"bad grid map: image {self.image_size}, stride {self.stride}")

    @classmethod
    def from_sizes(cls, image_size: tuple[int, int], grid: tuple[int, int]) -> "GridMap":
        """The map of an image and its grid, stride from :func:`infer_stride`."""
        return cls((int(image_size[0]), int(image_size[1])), infer_stride(image_size, grid))

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) = (ceil(H / s), ceil(W / s))."""
        return -(-self.image_size[0] // self.stride), -(-self.image_size[1] // self.stride)

    # ---------------------------------------------------------------------------------------------- indices
    def pixel_cells(self) -> tuple[Tensor, Tensor]:
        """Cell row of every pixel row and cell column of every pixel column: (H,), (W,) int64 = i // s."""
        H, W = self.image_size
        return torch.arange(H) // self.stride, torch.arange(W) // self.stride

    def centre_pixels(self) -> tuple[Tensor, Tensor]:
        """Centre pixel of every cell row / column: (h,), (w,) int64 = min(a s + floor(s / 2), H - 1)."""
        (H, W), (h, w), s = self.image_size, self.grid, self.stride
        return (torch.clamp(torch.arange(h) * s + s // 2, max=H - 1),
                torch.clamp(torch.arange(w) * s + s // 2, max=W - 1))

    # ---------------------------------------------------------------------------------------------- boxes
    def boxes(self, boxes: Tensor, rule: str = "touch") -> Tensor:
        r"""Pixel boxes ``[x1, y1, x2, y2, ...]`` (half-open) -> half-open grid boxes, extra columns kept.

        ``"touch"``: every cell whose pixels meet the box, :math:`\lfloor x_1 / s \rfloor`,
        :math:`\lceil x_2 / s \rceil` (same for y), clipped to the grid; a non-empty box gives a non-empty
        grid box. ``"centre"``: the cells whose centres :math:`(a + 1/2) s` lie in ``[x1, x2)``,
        :math:`\lceil x_1 / s - 1/2 \rceil` .. :math:`\lceil x_2 / s - 1/2 \rceil` (may be empty for boxes
        narrower than s).

        Shapes: boxes (M, 4 + k) int64 pixels -> (M, 4 + k) int64 cells.
        """
        if rule not in BOX_RULES:
            raise ValueError(f"unknown box rule {rule!r}; expected one of {BOX_RULES}")
        b = boxes.to(torch.int64)
        h, w = self.grid
        s = self.stride
        lo, hi = b[:, [0, 1]], b[:, [2, 3]]
        if rule == "touch":
            lo_g, hi_g = lo // s, -((-hi) // s)
        else:  # first / one-past-last a with (2a + 1) s >= 2 x  <=>  a >= ceil((2x - s) / (2s))
            lo_g, hi_g = -((s - 2 * lo) // (2 * s)), -((s - 2 * hi) // (2 * s))
        limit = torch.tensor([w, h])
        lo_g, hi_g = torch.minimum(lo_g.clamp_min(0), limit), torch.minimum(hi_g.clamp_min(0), limit)
        return torch.cat([lo_g[:, :1], lo_g[:, 1:], hi_g[:, :1], hi_g[:, 1:], b[:, 4:]], dim=1)

    # ---------------------------------------------------------------------------------------------- down
    def downsample_labels(self, label: Tensor | np.ndarray, mode: str = "centre") -> Tensor:
        """A label map on the grid: ``"centre"`` = the cell's centre pixel (nearest-neighbour resize);
        ``"majority"`` = the most frequent value among the cell's in-image pixels, 255 counted as a value (ties ->
        the smaller value), so a mostly-unknown cell stays unknown.

        Shapes: label (..., H, W) integer -> (..., h, w) int64.
        """
        label = torch.as_tensor(label).to(torch.int64)
        if tuple(label.shape[-2:]) != self.image_size:
            raise ValueError(f"label map {tuple(label.shape[-2:])} does not match image {self.image_size}")
        h, w = self.grid
        if mode == "centre":
            rows, cols = self.centre_pixels()
            return label[..., rows[:, None], cols[None, :]]
        if mode == "majority":
            H, W = self.image_size
            lead = label.shape[:-2]
            flat = label.reshape(-1, H, W)
            r, c = self.pixel_cells()
            cell = r[:, None] * w + c[None, :]
            n_values = IGNORE_INDEX + 1
            key = (torch.arange(flat.shape[0]).view(-1, 1, 1) * (h * w) + cell) * n_values + flat.clamp(0, IGNORE_INDEX)
            counts = torch.bincount(key.reshape(-1), minlength=flat.shape[0] * h * w * n_values)
            return counts.view(flat.shape[0], h * w, n_values).argmax(dim=-1).view(*lead, h, w)
        raise ValueError(f"unknown label down-sampling mode {mode!r}; expected one of {LABEL_DOWNSAMPLE_MODES}")

    def downsample_image(self, image: Tensor) -> Tensor:
        """Mean of each cell's in-image pixels (border cells average only the pixels they hold).

        Shapes: image (..., C, H, W) float -> (..., C, h, w) float32.
        """
        H, W = self.image_size
        if tuple(image.shape[-2:]) != (H, W):
            raise ValueError(f"image {tuple(image.shape[-2:])} does not match {self.image_size}")
        (h, w), s = self.grid, self.stride
        lead = image.shape[:-2]
        x = image.to(torch.float32).reshape(-1, 1, H, W)
        pad = (0, w * s - W, 0, h * s - H)
        summed = F.avg_pool2d(F.pad(x, pad), s)
        count = F.avg_pool2d(F.pad(torch.ones(1, 1, H, W, device=x.device), pad), s)
        return (summed / count).reshape(*lead, h, w)

    # ---------------------------------------------------------------------------------------------- up
    def upsample(self, scores: Tensor) -> Tensor:
        """Bilinear up-sampling of grid scores to the image: to ``(h s, w s)`` (``align_corners=False``, cell
        values at the cell centres ``(a + 1/2) s``), then cropped to ``(H, W)``.

        Shapes: scores (C, h, w) -> (C, H, W) float32.
        """
        if tuple(scores.shape[-2:]) != self.grid:
            raise ValueError(f"scores on grid {tuple(scores.shape[-2:])}, expected {self.grid}")
        h, w = self.grid
        size = (h * self.stride, w * self.stride)
        up = F.interpolate(scores[None].to(torch.float32), size=size, mode="bilinear", align_corners=False)
        return up[0, :, : self.image_size[0], : self.image_size[1]]

    def cell_coordinates(self, pixels: Tensor) -> Tensor:
        """Pixel coordinates (float, pixel centres at integers) -> grid-cell coordinates, cell a centred at a:
        ``(p + 1/2) / s - 1/2`` (cell a holds pixels [a s, (a + 1) s), centre (a + 1/2) s). Any shape."""
        return (pixels + 0.5) / self.stride - 0.5

    def _axis_taps(self, n_pixels: int, n_cells: int) -> tuple[Tensor, Tensor]:
        """1-D linear taps of :meth:`upsample` along one axis: (n_pixels, 2) cell ids and weights."""
        src = self.cell_coordinates(torch.arange(n_pixels, dtype=torch.float64)).clamp_min(0.0)
        i0 = src.floor().to(torch.int64).clamp(max=n_cells - 1)
        i1 = (i0 + 1).clamp(max=n_cells - 1)
        frac = (src - i0.to(torch.float64)).clamp(0.0, 1.0)
        return torch.stack([i0, i1], 1), torch.stack([1.0 - frac, frac], 1).to(torch.float32)

    def bilinear_taps(self, pixels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The interpolation of :meth:`upsample` as taps: pixel p's value = sum_k weight[p, k] * node[node[p, k]].

        ``pixels`` are flat pixel ids ``y W + x`` (default: all); nodes are flat cell ids ``a w + b``.

        Shapes: pixels (P,) -> node (P, 4) int64, weight (P, 4) float32 (summing to 1 per pixel).
        """
        (H, W), (h, w) = self.image_size, self.grid
        if pixels is None:
            pixels = torch.arange(H * W)
        ry, wy = self._axis_taps(H, h)
        rx, wx = self._axis_taps(W, w)
        y, x = pixels // W, pixels % W
        node = (ry[y][:, :, None] * w + rx[x][:, None, :]).reshape(-1, 4)
        weight = (wy[y][:, :, None] * wx[x][:, None, :]).reshape(-1, 4)
        return node, weight

    def pixel_nodes(self, pixels: Tensor) -> Tensor:
        """Flat cell id of flat pixels ``y W + x``: ``(y // s) w + x // s``. Shapes: (P,) -> (P,)."""
        W, w = self.image_size[1], self.grid[1]
        return (pixels // W // self.stride) * w + (pixels % W) // self.stride
