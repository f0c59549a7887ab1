r"""Consistency checking of the seed labels against the multi-point prototypes (paper §4.5.4, Eq. 27-28).

For every box, the prototype is the mean last-layer feature of the nodes the multi-point loss selected in
it (Eq. 27). Seeds labelled with the box's class inside the box are then compared with the prototype.

Eq. (28) as printed keeps a seed when its cosine distance d to the prototype is > 0 (and it has the box's
class): that removes only seeds identical in direction to the prototype and keeps every noisy one, the
opposite of the text ("seed labels which are far away from the prototype are ... removed"); the authors'
release drops seeds with cos < 0, which never happens with non-negative features. We implement the text:
a box-class seed inside the box is **kept iff d(H(i), H_P) <= tau** and becomes 255 otherwise. Seeds of
other classes (background, other objects) are not touched by the box. A seed inside several boxes of its
class is kept if it is close enough to at least one of their prototypes (overlapping same-class objects).

What "far" means is a scale question: H^{L+1} is non-negative (ReLU, then convex mixing), so cosine
distances are compressed (on a toy two-cluster graph, background nodes lie at d ~ 0.4 from an object
prototype, object nodes at ~0). Two scales are offered (``scale`` of :func:`consistency_check`):

* absolute: tau = threshold;
* background: tau = threshold * d(H_P^{K_j}, H_bg), where H_bg is the mean feature of the image's nodes outside
  every box (background by box supervision, :func:`background_prototypes`). With threshold 0.5 a seed is kept
  iff it is nearer to its box's prototype than half the prototype's distance to the background.
* nearest: tau_i = threshold * d(H(i), H_bg), per seed (:func:`candidate_background_distance`). With threshold 1
  a seed is kept iff it is nearer to its box's prototype than to the image's background: the seed is compared
  with both things it could be, and no scale has to be guessed.

Boxes of images without outside nodes get an infinite tau (nothing to compare with). Measured on the embedded
default (README): the "background" rule at 0.5 removed mostly *correct* seeds; "nearest" is the default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from a2gnn.core.io import IGNORE_INDEX
from a2gnn.core.registry import Registry


def box_prototypes(h: Tensor, entry_node: Tensor, entry_box: Tensor, num_boxes: int) -> Tensor:
    r"""Eq. (27): :math:`H_P^{K_j} = \frac{1}{N_{K_j}} \sum_{k_i \in K_j} H(k_i)`, box j's mean selected feature.

    A box without selected nodes gets a zero prototype (no seed can be close to it).

    Shapes: h (N, F), entry_node / entry_box (K,) -> (M, F).
    """
    sums = h.new_zeros(num_boxes, h.shape[1]).index_add(0, entry_box, h[entry_node])
    counts = torch.bincount(entry_box, minlength=num_boxes).to(h.dtype)
    return sums / counts.clamp_min(1.0)[:, None]


def member_seed_candidates(labels: Tensor, boxes: Tensor, box: Tensor, node: Tensor) -> tuple[Tensor, Tensor]:
    """Of the (box, node) membership pairs (:func:`box_nodes`, or the superpixel form
    :func:`a2gnn.graph.superpixels.superpixel_box_nodes`), those Eq. (28) checks: the node's seed is the box's class.

    Shapes: labels (N,), boxes (M, 5), box / node (Q,) -> cand_box (Q',), cand_node (Q',) in the same order.
    """
    keep = labels[node] == boxes.to(torch.int64)[box, 4]
    return box[keep], node[keep]


def nodes_outside(inside_node: Tensor, num_nodes: int) -> Tensor:
    """Nodes that are in no box, given the nodes of every (box, node) membership pair. Shapes: (Q,) -> (R,) ids."""
    inside = torch.zeros(num_nodes, dtype=torch.bool, device=inside_node.device)
    inside[inside_node] = True
    return (~inside).nonzero(as_tuple=True)[0]


def background_prototypes(h: Tensor, outside_node: Tensor, outside_image: Tensor,
                          num_images: int) -> tuple[Tensor, Tensor]:
    """Mean feature H_bg of every image's nodes outside all boxes, and whether the image has any.

    Shapes: h (N, F), outside_node / outside_image (R,) -> (B, F), (B,) bool.
    """
    sums = h.new_zeros(num_images, h.shape[1]).index_add(0, outside_image, h[outside_node])
    counts = torch.bincount(outside_image, minlength=num_images)
    return sums / counts.clamp_min(1).to(h.dtype)[:, None], counts > 0


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """d(a, b) = 1 - cos(a, b) row-wise (zero vectors have cosine 0). Shapes: (K, F), (K, F) -> (K,)."""
    an = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    bn = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 1.0 - (an * bn).sum(dim=1)


def distance_scale(prototypes: Tensor, bg_prototypes: Tensor, has_bg: Tensor, box_image: Tensor) -> Tensor:
    """Per-box unit of "far": d(H_P^{K_j}, H_bg of the box's image); infinite where the image has no background.

    Shapes: prototypes (M, F), bg_prototypes (B, F), has_bg (B,), box_image (M,) -> (M,).
    """
    scale = cosine_distance(prototypes, bg_prototypes[box_image])
    return torch.where(has_bg[box_image], scale, torch.full_like(scale, float("inf")))


def candidate_background_distance(h: Tensor, cand_node: Tensor, cand_box: Tensor, bg_prototypes: Tensor,
                                  has_bg: Tensor, box_image: Tensor) -> Tensor:
    """Per checked seed, the "nearest" unit of far: d(H(i), H_bg of its image); infinite without background.

    Shapes: h (N, F), cand_node / cand_box (Q,), bg_prototypes (B, F), has_bg (B,), box_image (M,) -> (Q,).
    """
    image = box_image[cand_box]
    dist = cosine_distance(h[cand_node], bg_prototypes[image])
    return torch.where(has_bg[image], dist, torch.full_like(dist, float("inf")))


CONSISTENCY_SCALES: Registry = Registry("consistency scale")
"""``gnn.consistency_scale``: the unit of Eq. (28)'s threshold. name -> ``rule(h, prototypes, batch, num_images)`` ->
(per-box scale (M,) or None, per-candidate scale (Q,) or None), ``batch`` holding the padded graphs' ``outside_node``,
``outside_image``, ``box_image``, ``cand_node`` and ``cand_box``."""


@CONSISTENCY_SCALES.register("background")
def _background_scale(h: Tensor, prototypes: Tensor, batch, num_images: int) -> tuple[Tensor | None, Tensor | None]:
    """tau = threshold * d(box prototype, mean feature of the image's nodes outside every box)."""
    bg, has_bg = background_prototypes(h, batch.outside_node, batch.outside_image, num_images)
    return distance_scale(prototypes, bg, has_bg, batch.box_image), None


@CONSISTENCY_SCALES.register("absolute")
def _absolute_scale(h: Tensor, prototypes: Tensor, batch, num_images: int) -> tuple[Tensor | None, Tensor | None]:
    """tau = threshold."""
    return None, None


@CONSISTENCY_SCALES.register("nearest")
def _nearest_scale(h: Tensor, prototypes: Tensor, batch, num_images: int) -> tuple[Tensor | None, Tensor | None]:
    """tau_i = threshold * d(H(i), the background mean): kept iff nearer to the box prototype (threshold 1)."""
    bg, has_bg = background_prototypes(h, batch.outside_node, batch.outside_image, num_images)
    return None, candidate_background_distance(h, batch.cand_node, batch.cand_box, bg, has_bg, batch.box_image)


def consistency_check(labels: Tensor, h: Tensor, prototypes: Tensor, cand_box: Tensor, cand_node: Tensor,
                      threshold: float, scale: Tensor | None = None,
                      candidate_scale: Tensor | None = None) -> Tensor:
    r"""Eq. (28) (as the text describes it, see the module doc): remove box-class seeds far from the prototype.

    .. math::
        M_g^{K_j}(i) = \begin{cases} M_g^{K_j}(i), & d(H(i), H_P^{K_j}) \le \tau \text{ for some box } j
        \ni i \text{ with } M_g(i) = L_{B_j} \\ 255, & \text{else} \end{cases}

    with d = 1 - cos (cosine distance) and τ = ``threshold`` (absolute), ``threshold * scale[j]`` (per box,
    see :func:`distance_scale`) or ``threshold * candidate_scale[q]`` (per checked seed, see
    :func:`candidate_background_distance`); nodes that are no candidate keep their label.

    Shapes: labels (N,), h (N, F) = H^{L+1}, prototypes (M, F), cand_box / cand_node (Q,), scale (M,),
    candidate_scale (Q,) -> labels (N,).
    """
    if cand_node.numel() == 0:
        return labels
    dist = cosine_distance(h[cand_node], prototypes[cand_box])
    unit = candidate_scale if candidate_scale is not None else (scale[cand_box] if scale is not None else None)
    if unit is None:
        tau = torch.full_like(dist, threshold)
    else:
        tau = torch.where(torch.isinf(unit), unit, threshold * unit)
    close = (dist <= tau).to(torch.int64)
    keep = torch.zeros_like(labels).scatter_reduce(0, cand_node, close, reduce="amax", include_self=True)
    checked = torch.zeros_like(labels, dtype=torch.bool)
    checked[cand_node] = True
    return torch.where(checked & (keep == 0), torch.full_like(labels, IGNORE_INDEX), labels)
