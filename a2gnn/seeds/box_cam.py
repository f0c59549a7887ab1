r"""M_I learned from the boxes (``cam.supervision: boxes``), for datasets with few photos per class.

Eq. (1) trains the CAM classifier on image-level labels: one multi-label target per photo. With a few dozen
photos of many classes that is a handful of examples per class and the CAM learns nothing (issue 19: M_I 5.7
mIoU on 40 cluttered photos of 20 classes). The boxes carry far more: every box is a labelled region, and every
pixel outside all boxes is background. This reading keeps the network of Eq. (1) (backbone, 1x1 classifier
without bias over the class maps) with one more output, a background map, and trains it on the random views of
:func:`a2gnn.seeds.cam_augment.augment` with two cross-entropy terms over the K_fg + 1 maps:

* **box term** (a classifier on box crops): for each box :math:`B_k` visible in the view, the maps pooled over
  the box (:math:`\bar y_k = \sum_i w_{ki} y_i / \sum_i w_{ki}`, :math:`w_{ki}` the fraction of cell i inside
  the box: the masked GAP of Eq. (1) restricted to the box) are classified by softmax cross-entropy against the
  box's class :math:`L_{B_k}`; classes of *other* boxes overlapping :math:`B_k` are left out of its softmax;
* **background term**: every feature cell outside all boxes is classified as background by softmax
  cross-entropy, weighted by its fraction of valid, box-free pixels; weight ``background_weight``.

The box term only asks the box's average to favour its class, so cells that look like the background outside
the boxes can stay background inside them: the class map marks the object within its box.
CAMs (:func:`a2gnn.seeds.cam.compute_cams`) are then the per-pixel softmax probabilities over the background and
the image's classes (no per-class max normalisation), and Eq. (1)'s arg-max reads them as before. The
image-label reading stays the default (``supervision: image``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from a2gnn.data.boxes import box_owner_map

BOX_FIELDS = 5
"""A box array row: x1, y1, x2, y2 (0-based, half-open, pixels), class index (>= 1)."""


def boxes_array(boxes: Sequence) -> np.ndarray:
    """:class:`a2gnn.data.voc.Box` objects -> (n, 5) float64 rows ``x1, y1, x2, y2, label``."""
    rows = [[b.x1, b.y1, b.x2, b.y2, b.label] for b in boxes]
    return np.asarray(rows, dtype=np.float64).reshape(-1, BOX_FIELDS)


def plan_boxes(boxes: np.ndarray, image_hw: tuple[int, int], plan) -> np.ndarray:
    """Boxes through a random view (:class:`a2gnn.seeds.cam_augment.CropPlan`): rescale, flip, crop / place.

    Coordinates are rounded to whole canvas pixels and clipped to the image's part of the canvas; boxes left
    without area are dropped. Shapes: boxes (n, 5) -> (m, 5) float64, m <= n, in canvas pixels."""
    h, w = image_hw
    nh, nw = plan.size
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] *= nw / w
    out[:, [1, 3]] *= nh / h
    if plan.flip:
        out[:, [0, 2]] = nw - out[:, [2, 0]]
    for cols, src, dst in (([1, 3], plan.src[0], plan.dst[0]), ([0, 2], plan.src[1], plan.dst[1])):
        out[:, cols] = np.clip(np.round(out[:, cols]) - src.start + dst.start, dst.start, dst.stop)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


def box_pixel_masks(boxes: np.ndarray, size: int) -> Tensor:
    """Canvas masks of the boxes. Shapes: boxes (n, 5) in canvas pixels -> (n, S, S) float32 in {0, 1}."""
    masks = torch.zeros(len(boxes), size, size)
    for k, (x1, y1, x2, y2, _) in enumerate(boxes.astype(np.int64)):
        masks[k, y1:y2, x1:x2] = 1.0
    return masks


def overlap_ignore(boxes: np.ndarray, num_foreground: int) -> Tensor:
    """Which (box, class) pairs the box term does not penalise: classes of *other* boxes overlapping the box.

    Shapes: boxes (n, 5) -> (n, K_fg) bool (True = ignored). A box's own class is never ignored."""
    n = len(boxes)
    ignore = torch.zeros(n, num_foreground, dtype=torch.bool)
    for k in range(n):
        for j in range(n):
            if j == k or boxes[j, 4] == boxes[k, 4]:
                continue
            iw = min(boxes[k, 2], boxes[j, 2]) - max(boxes[k, 0], boxes[j, 0])
            ih = min(boxes[k, 3], boxes[j, 3]) - max(boxes[k, 1], boxes[j, 1])
            if iw > 0 and ih > 0:
                ignore[k, int(boxes[j, 4]) - 1] = True
    return ignore


def box_supervision_terms(maps: Tensor, valid: Tensor, boxes: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The two terms of one view, as sums with their normalisers.

    Shapes: maps (K_fg + 1, h, w) logits, the background last; valid (1, S, S) in {0, 1}; boxes (n, 5) canvas
    pixels -> (box CE sum, number of boxes, background CE sum, background weight)."""
    k_all, h, w = maps.shape
    size = valid.shape[-1]
    masks = box_pixel_masks(boxes, size).to(maps.device) * valid  # (n, S, S)
    union = masks.amax(dim=0, keepdim=True) if len(boxes) else torch.zeros_like(valid)
    free = F.interpolate((valid - union).clamp_min(0)[None], size=(h, w), mode="area")[0, 0]  # (h, w)
    bg_sum = -(F.log_softmax(maps, dim=0)[-1] * free).sum()
    bg_norm = free.sum()
    if len(boxes) == 0:
        zero = maps.sum() * 0
        return zero, zero.detach(), bg_sum, bg_norm
    cells = F.interpolate(masks[None], size=(h, w), mode="area")[0]  # (n, h, w)
    pooled = torch.einsum("khw,nhw->nk", maps, cells) / cells.sum(dim=(1, 2))[:, None].clamp_min(1e-6)
    ignore = torch.cat([overlap_ignore(boxes, k_all - 1), torch.zeros(len(boxes), 1, dtype=torch.bool)], dim=1)
    pooled = pooled.masked_fill(ignore.to(maps.device), float("-inf"))
    target = torch.from_numpy(boxes[:, 4].astype(np.int64) - 1).to(maps.device)
    box_sum = F.cross_entropy(pooled, target, reduction="sum")
    return box_sum, maps.new_tensor(float(len(boxes))), bg_sum, bg_norm


def box_supervision_loss(maps: Tensor, valid: Tensor, boxes: Sequence[np.ndarray], background_weight: float) -> Tensor:
    """Loss of a batch under ``supervision: boxes``: mean box CE + ``background_weight`` x mean background CE.

    Shapes: maps (B, K_fg + 1, h, w) logits (background last), valid (B, 1, S, S), boxes: B arrays (n_b, 5) in
    canvas pixels -> scalar. Each mean runs over the whole batch (every box counts once, every free cell by its
    free fraction)."""
    terms = [box_supervision_terms(maps[b], valid[b], boxes[b]) for b in range(maps.shape[0])]
    box_sum, box_n, bg_sum, bg_n = (torch.stack([t[i] for t in terms]).sum() for i in range(4))
    return box_sum / box_n.clamp_min(1.0) + background_weight * bg_sum / bg_n.clamp_min(1e-6)


def box_probabilities(logits: Tensor, labels: np.ndarray) -> Tensor:
    """CAMs under ``supervision: boxes``: softmax over the background and the image's classes.

    Shapes: logits (K_fg + 1, H, W) (background last), labels (K,) class indices >= 1 -> (K, H, W) in [0, 1]."""
    keep = torch.cat([torch.from_numpy(np.asarray(labels, dtype=np.int64) - 1), torch.tensor([logits.shape[0] - 1])])
    return torch.softmax(logits[keep.to(logits.device)], dim=0)[:-1]


def as_object_boxes(rows: np.ndarray) -> np.ndarray:
    """Training boxes under ``supervision: objectness``: every box of the one class "object" (map 0, class 1).

    Shapes: rows (n, 5) x1 y1 x2 y2 class -> a copy with the class column set to 1."""
    out = np.array(rows, copy=True)
    out[:, 4] = 1
    return out


def objectness_class_cams(objectness: np.ndarray, boxes: Sequence, labels: Sequence[int]) -> np.ndarray:
    """CAMs under ``supervision: objectness``: the class-agnostic object map given, pixel by pixel, to the class of
    the smallest box containing the pixel (the overlap rule of Eq. 3); 0 outside every box and in other classes.

    Shapes: objectness (H, W) in [0, 1], boxes: :class:`a2gnn.data.voc.Box` objects, labels (K,) -> (K, H, W)
    float32."""
    objectness = np.asarray(objectness, dtype=np.float32)
    owner = box_owner_map(boxes, objectness.shape)
    owner_class = np.where(owner >= 0, np.asarray([b.label for b in boxes] + [0], dtype=np.int64)[owner], 0)
    cams = [np.where(owner_class == k, objectness, 0.0) for k in np.asarray(labels, dtype=np.int64)]
    return np.stack(cams).astype(np.float32) if cams else np.zeros((0, *objectness.shape), np.float32)
