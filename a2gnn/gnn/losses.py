r"""A²GNN training losses (paper §4.5, Eq. 20-26): L_G = L_ce + L_mp + λ_1 L_reg.

Every loss is computed **per image** and returned as a ``(B,)`` vector: nodes (and pairs, boxes) carry the
index of the image they belong to, so one call serves a single graph (B = 1) and a batch of graphs whose
nodes were concatenated. The trainer sums the vector; since no term mixes images, each image's parameters
receive exactly the gradient of that image's own loss.

The multi-point loss works on the GNN's node grid (the backbone's feature map), not on the up-sampled
full-resolution output as the authors' code does: rows/columns of a box are rows/columns of grid nodes.
This keeps the loss cheap and exact with respect to the graph the GNN sees.
"""

from __future__ import annotations

import torch
from torch import Tensor

from a2gnn.gnn.layers import EdgeCSR, edge_dot
from a2gnn.core.io import IGNORE_INDEX


def _segment_mean(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Mean of ``values`` within each segment; empty segments give 0. Shapes: (K,), (K,) -> (num_segments,)."""
    sums = values.new_zeros(num_segments).index_add(0, segment, values)
    counts = torch.bincount(segment, minlength=num_segments).to(values.dtype)
    return sums / counts.clamp_min(1.0)


def _image_index(n: int, node_image: Tensor | None, device: torch.device) -> Tensor:
    return torch.zeros(n, dtype=torch.int64, device=device) if node_image is None else node_image


def cross_entropy_loss(log_probs: Tensor, labels: Tensor, node_image: Tensor | None = None, num_images: int = 1,
                       class_balanced: bool = False) -> Tensor:
    r"""Eq. (21): :math:`L_{ce} = -\frac{1}{|V^l|} \sum_{v_j \in V^l} \log O^{M_g(v_j)}(v_j)`, per image.

    ``class_balanced=True`` is the authors' code variant: the mean over background seeds (label 0) plus the
    mean over foreground seeds (label >= 1), each 0 when the image has none.

    Shapes: log_probs (N, C) = log O, labels (N,) int64 with 255 = unlabelled, node_image (N,) -> (B,).
    """
    node_image = _image_index(labels.shape[0], node_image, labels.device)
    labelled = (labels != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    y = labels[labelled]
    nll = -log_probs[labelled, y]
    img = node_image[labelled]
    if not class_balanced:
        return _segment_mean(nll, img, num_images)
    fg = y > 0
    return _segment_mean(nll[~fg], img[~fg], num_images) + _segment_mean(nll[fg], img[fg], num_images)


def upsampled_log_probs(log_probs: Tensor, pix_node: Tensor, pix_weight: Tensor,
                        pix_class_mask: Tensor | None = None) -> Tensor:
    r"""Node log-probabilities bilinearly up-sampled to pixels, renormalised: :math:`\log\mathrm{softmax}(\sum_k
    w_{pk} \log O(n_{pk}))`.

    Bilinear interpolation is linear and log O = z - logsumexp(z) differs from the logits z by a per-node constant,
    which the interpolation turns into a per-pixel constant and the softmax removes: the result equals
    log softmax of the up-sampled *logits* (the authors' order), without needing the logits. Classes outside
    ``pix_class_mask`` (-inf in log O) are interpolated as 0 and masked again.

    Shapes: log_probs (N, C), pix_node (P, K) node ids, pix_weight (P, K) (from
    :meth:`a2gnn.ops.grid.GridMap.bilinear_taps`), pix_class_mask (P, C) bool -> (P, C).
    """
    finite = log_probs.masked_fill(torch.isneginf(log_probs), 0.0)
    z = finite.new_zeros(pix_node.shape[0], finite.shape[1])
    for k in range(pix_node.shape[1]):
        z = z + finite.index_select(0, pix_node[:, k]) * pix_weight[:, k, None].to(finite.dtype)
    if pix_class_mask is not None:
        z = z.masked_fill(~pix_class_mask, float("-inf"))
    return torch.log_softmax(z, dim=-1)


def cross_entropy_image_loss(log_probs: Tensor, pix_node: Tensor, pix_weight: Tensor, pix_label: Tensor,
                             pix_image: Tensor | None = None, num_images: int = 1,
                             pix_class_mask: Tensor | None = None, class_balanced: bool = False) -> Tensor:
    r"""Eq. (21) at the image's resolution (paper §5): the node output bilinearly up-sampled to the labelled
    pixels, :math:`L_{ce} = -\frac{1}{|P^l|} \sum_{p \in P^l} \log \hat O^{M_g(p)}(p)` per image, with
    :math:`\hat O` from :func:`upsampled_log_probs` and P^l the pixels of M_g (full size) that are not 255.

    Shapes: log_probs (N, C), pix_node / pix_weight (P, K), pix_label (P,) int64 (255 = ignored),
    pix_image (P,), pix_class_mask (P, C) -> (B,).
    """
    up = upsampled_log_probs(log_probs, pix_node, pix_weight, pix_class_mask)
    return cross_entropy_loss(up, pix_label, pix_image, num_images, class_balanced)


def regularized_loss(probs: Tensor, pairs: EdgeCSR, pair_weight: Tensor, pair_image: Tensor | None = None,
                     nodes_per_image: Tensor | None = None, num_images: int = 1) -> Tensor:
    r"""Eq. (22), as the dense-CRF regularised loss it is meant to be (Tang et al., ECCV 2018), per image.

    .. math::
        L_{reg} = \frac{1}{|V|} \sum_{(a, b)} G(a, b) \sum_{c} O^c(a)\,(1 - O^c(b))
                = \frac{1}{|V|} \sum_{(a, b)} G(a, b)\,(1 - \langle O(a), O(b) \rangle)

    Eq. (22) as printed sums :math:`G(a,b) O^{c_i}(a) O^{c_j}(b)` over *all* class pairs, which is
    :math:`\sum G(a, b)` (each O sums to 1): a constant with zero gradient. The intended regulariser of
    the cited "regularized losses" penalises similar (high-G) pairs that are labelled differently, which is
    the expression above. The sum runs over the given pairs (a != b within the radius, G of Eq. 13) and is
    divided by the image's node count |V| (our choice, so λ_1 does not depend on the grid size).

    Shapes: probs (N, C) = O, pairs: EdgeCSR over (a, b), pair_weight (P,) G(a, b) in its CSR order,
    pair_image (P,), nodes_per_image (B,) -> (B,).
    """
    agree = edge_dot(pairs, probs)
    per_pair = pair_weight * (1.0 - agree)
    pair_image = _image_index(per_pair.shape[0], pair_image, probs.device)
    sums = per_pair.new_zeros(num_images).index_add(0, pair_image, per_pair)
    if nodes_per_image is None:
        nodes_per_image = torch.full((num_images,), probs.shape[0], device=probs.device)
    return sums / nodes_per_image.to(sums.dtype).clamp_min(1.0)


def box_lines(boxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    r"""The rows and columns :math:`B_j^{l_m}` of every box (Eq. 23) as node-id lists.

    Boxes are ``[x1, y1, x2, y2, class]`` half-open on the ``h x w`` node grid (node n at (n // w, n % w)).
    Box j contributes its h_j rows (each w_j nodes long) and its w_j columns (each h_j long): w_j + h_j lines
    (Eq. 24). Empty boxes contribute none. All rows of all boxes come first, then all columns.

    Shapes: boxes (M, 5) -> line_nodes (L, max_len) int64 padded with -1, line_box (L,) int64.
    """
    boxes = boxes.to(torch.int64)
    w = int(grid[1])
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    bh, bw = (y2 - y1).clamp_min(0), (x2 - x1).clamp_min(0)
    nonempty = (bh > 0) & (bw > 0)
    bh, bw = bh * nonempty, bw * nonempty
    ids = torch.arange(boxes.shape[0], device=boxes.device)
    max_len = int(torch.maximum(bh, bw).max()) if boxes.shape[0] else 0
    k = torch.arange(max_len, device=boxes.device)

    def lines(count: Tensor, length: Tensor, node_at) -> tuple[Tensor, Tensor]:
        box = torch.repeat_interleave(ids, count)
        start = torch.cumsum(count, 0) - count
        m = torch.arange(box.shape[0], device=boxes.device) - start[box]  # index of the line within its box
        nodes = node_at(box, m[:, None], k[None, :])
        return torch.where(k[None, :] < length[box][:, None], nodes, torch.full_like(nodes, -1)), box

    row_nodes, row_box = lines(bh, bw, lambda j, m, t: (y1[j, None] + m) * w + x1[j, None] + t)
    col_nodes, col_box = lines(bw, bh, lambda j, m, t: (y1[j, None] + t) * w + x1[j, None] + m)
    return torch.cat([row_nodes, col_nodes]), torch.cat([row_box, col_box])


def select_multi_points(probs: Tensor, line_nodes: Tensor, line_box: Tensor, box_class: Tensor) -> Tensor:
    r"""Eq. (23): per box line, the node with the highest probability of the box's class.

    :math:`i^{l_m}_{max} = \arg\max_{i \in B_j^{l_m}} O^{B_j}(i)`; ties go to the first node of the line.

    Shapes: probs (N, C) = O, line_nodes (L, max_len) padded with -1, line_box (L,), box_class (M,) -> (L,).
    """
    cls = box_class[line_box][:, None].expand_as(line_nodes)
    p = probs[line_nodes.clamp_min(0), cls]
    p = p.masked_fill(line_nodes < 0, float("-inf"))
    return line_nodes.gather(1, p.argmax(dim=1, keepdim=True)).squeeze(1)


def multi_point_sets(selected: Tensor, line_box: Tensor, unique: bool = True) -> tuple[Tensor, Tensor]:
    r"""Eq. (24)-(25): the selected nodes :math:`K_j` of every box, as (node, box) entries sorted by box.

    ``unique=True`` treats :math:`K_j` as a set (Eq. 24's notation): a node picked by both a row and a column
    of the same box counts once in N_p, in N_f and in the prototype of Eq. (27). ``unique=False`` keeps one
    entry per line (w_j + h_j entries, as the authors' code).

    Shapes: selected (L,) node per line, line_box (L,) -> entry_node (K,), entry_box (K,).
    """
    if unique:
        span = int(selected.max()) + 1 if selected.numel() else 1
        keys = torch.unique(line_box * span + selected)
        return keys % span, keys // span
    order = torch.argsort(line_box, stable=True)
    return selected[order], line_box[order]


def pad_by_box(entry_box: Tensor, num_boxes: int) -> Tensor:
    """Entry ids grouped by box: ``(M, K_max)`` int64, row j = the entries of box j, padded with -1.

    ``entry_box`` must be sorted (as :func:`multi_point_sets` returns it). Shapes: (K,) -> (M, K_max).
    """
    counts = torch.bincount(entry_box, minlength=num_boxes)
    k_max = int(counts.max()) if counts.numel() else 0
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(entry_box.shape[0], device=entry_box.device) - start[entry_box]
    table = torch.full((num_boxes, k_max), -1, dtype=torch.int64, device=entry_box.device)
    table[entry_box, pos] = torch.arange(entry_box.shape[0], device=entry_box.device)
    return table


def multi_point_loss(log_probs: Tensor, h: Tensor, entry_node: Tensor, entry_box: Tensor, box_class: Tensor,
                     box_image: Tensor | None = None, num_images: int = 1) -> Tensor:
    r"""Eq. (26), per image:

    .. math::
        L_{mp} = -\frac{1}{N_p} \sum_{K_j} \sum_{k_i \in K_j} \log O^{B_j}(k_i)
                 + \frac{1}{N_f} \sum_{K_j} \sum_{k_m, k_n \in K_j} [k_m \ne k_n]\,(1 - \cos(H(k_m), H(k_n)))

    N_p = number of entries (over the image's boxes), N_f = number of ordered entry pairs with different
    nodes; H = features of the last attention layer H^{L+1}. A term with no summands is 0.

    **Overlapping boxes** (deliberate, Eq. 24-26 as written: sums over boxes j, then over k_i in K_j): the K_j
    are built per box, independently. A node picked by two boxes is one entry of each. With boxes of
    different classes it is a CE target of *both* classes (-log O^{c_A} - log O^{c_B}, each weighted 1/N_p, so
    N_p counts it twice and its probability is pulled towards both classes); with boxes of the same class it
    is the same target twice. In the distance term it is paired only with the other entries of each box
    separately (pairs never cross boxes). The prototypes of Eq. (27) likewise include it in both boxes.

    Shapes: log_probs (N, C), h (N, F), entry_node / entry_box (K,) (sorted by box), box_class (M,),
    box_image (M,) -> (B,).
    """
    num_boxes = box_class.shape[0]
    box_image = _image_index(num_boxes, box_image, h.device)
    entry_image = box_image[entry_box]
    point = _segment_mean(-log_probs[entry_node, box_class[entry_box]], entry_image, num_images)

    table = pad_by_box(entry_box, num_boxes)
    valid = table >= 0
    nodes = torch.where(valid, entry_node[table.clamp_min(0)], torch.full_like(table, -1))
    feats = h[nodes.clamp_min(0)]  # gather the K_j first, then normalise (not all N nodes)
    feats = feats / feats.norm(dim=2, keepdim=True).clamp_min(1e-12) * valid[..., None]
    cos = torch.bmm(feats, feats.transpose(1, 2))
    pair = valid[:, :, None] & valid[:, None, :] & (nodes[:, :, None] != nodes[:, None, :])
    dist = ((1.0 - cos) * pair).sum(dim=(1, 2))
    dist_sum = dist.new_zeros(num_images).index_add(0, box_image, dist)
    pairs = pair.sum(dim=(1, 2)).to(dist.dtype)
    pair_count = dist.new_zeros(num_images).index_add(0, box_image, pairs)
    return point + dist_sum / pair_count.clamp_min(1.0)


def total_loss(l_ce: Tensor, l_mp: Tensor | None = None, l_reg: Tensor | None = None,
               lambda_reg: float = 0.01) -> Tensor:
    r"""Eq. (20): :math:`L_G = L_{ce} + L_{mp} + \lambda_1 L_{reg}`; a term passed as None is switched off.

    Shapes: each (B,) -> (B,).
    """
    loss = l_ce
    if l_mp is not None:
        loss = loss + l_mp
    if l_reg is not None:
        loss = loss + lambda_reg * l_reg
    return loss
