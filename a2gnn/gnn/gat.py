r"""Graph attention layer (GAT) on the A²GNN graph: the "GAT" competitor of the GNN-type study (paper Fig. 7).

Veličković et al., "Graph Attention Networks", ICLR 2018 (arXiv:1710.10903), Eq. (1)-(4), one head:

.. math::
    z_i = W^l h_i, \qquad
    e_{ij} = \mathrm{LeakyReLU}_{0.2}\big(a_{dst}^\top z_i + a_{src}^\top z_j\big), \qquad
    \alpha_{ij} = \operatorname{softmax}_{j \in S(i)} e_{ij}, \qquad
    h^{l+1}_i = \mathrm{ELU}\Big(\sum_{j \in S(i)} \alpha_{ij} z_j\Big)

(:math:`a = [a_{dst} \,\|\, a_{src}]` is GAT's attention vector split into the halves that multiply the
target and the source features). S(i) is the same radius neighbourhood as for the A²GNN layer (the graph
holds the self loop, as GAT's :math:`\mathcal{N}_i` does). Choices, all GAT's own unless said:

* ELU after every layer (GAT's hidden-layer non-linearity; here all L layers are hidden, the prediction
  being the separate W^{L+1} of Eq. 19);
* one head and no bias (the A²GNN network has no biases anywhere);
* the affinity edge weights :math:`E_{ij}` are **not** used: plain GAT learns its attention from the features
  only (that is the point of the comparison with A²GNN's affinity term);
* no dropout on the attention coefficients or on the layer inputs (GAT uses 0.6 on both): the pipeline has
  one dropout, after the embedding layer (Eq. 16), for every layer type alike.

Implemented on :class:`~a2gnn.gnn.layers.EdgeCSR` with the existing sparse kernels (``segment_softmax`` over
the CSR rows, ``propagate`` = SpMM) rather than ``torch_geometric.nn.GATConv``: PyG is not a dependency of
the project, and with the CSR graph code already here a GAT layer is ~10 lines that also run on the batched
block-diagonal graph with per-image parameters, which GATConv (one weight for the whole batch) does not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from a2gnn.gnn.layers import EdgeCSR, propagate, segment_softmax

NEGATIVE_SLOPE = 0.2
"""Slope of the LeakyReLU on the attention logits (GAT, §2.1)."""


def per_image_matmul(h: Tensor, weight: Tensor) -> Tensor:
    r"""The layer's linear map :math:`Z = H W` (GAT's :math:`z_i = W h_i`; also GCN's :math:`H W^l`).

    ``weight`` (B, F_in, F_out) holds one matrix per image of a batched graph whose N = B * N_max nodes are
    padded per image (node n of image b has flat id b * N_max + n): image b's nodes use ``weight[b]`` (one
    ``bmm`` on the (B, N_max, F_in) view).

    Shapes: h (N, F_in), weight (F_in, F_out) -> (N, F_out); weight (B, F_in, F_out) -> (N, F_out).
    """
    if weight.dim() == 2:
        return h @ weight
    b = weight.shape[0]
    return torch.bmm(h.view(b, -1, h.shape[-1]), weight).reshape(h.shape[0], -1)


def gat_scores(z: Tensor, csr: EdgeCSR, a_src: Tensor, a_dst: Tensor, slope: float = NEGATIVE_SLOPE) -> Tensor:
    r"""GAT attention logits :math:`e_{ij} = \mathrm{LeakyReLU}(a_{dst}^\top z_i + a_{src}^\top z_j)` per edge.

    Edge e goes from source ``j = csr.col[e]`` to target ``i = csr.row[e]`` (the softmax runs over i's row).
    ``a_src`` / ``a_dst`` are one vector for the whole graph, or one per node (N, F) for a batched graph
    with per-image attention vectors (row n = the vector of node n's image).

    Shapes: z (N, F), a_src, a_dst (F,) or (N, F) -> (E,) in CSR order.
    """
    s_src = (z * a_src).sum(-1)
    s_dst = (z * a_dst).sum(-1)
    logits = s_dst.index_select(0, csr.row) + s_src.index_select(0, csr.col)
    return torch.nn.functional.leaky_relu(logits, negative_slope=slope)


def gat_attention(z: Tensor, csr: EdgeCSR, a_src: Tensor, a_dst: Tensor, slope: float = NEGATIVE_SLOPE) -> Tensor:
    r"""GAT attention coefficients :math:`\alpha_{ij} = \operatorname{softmax}_{j \in S(i)} e_{ij}` (GAT Eq. 3).

    Shapes: z (N, F), a_src, a_dst (F,) or (N, F) -> (E,) in CSR order; sums to 1 over each node's edges.
    """
    return segment_softmax(gat_scores(z, csr, a_src, a_dst, slope), csr.row, csr.num_nodes)


def gat_layer(h: Tensor, csr: EdgeCSR, weight: Tensor, a_src: Tensor, a_dst: Tensor,
              slope: float = NEGATIVE_SLOPE) -> Tensor:
    r"""One single-head GAT layer: :math:`h^{l+1}_i = \mathrm{ELU}(\sum_{j \in S(i)} \alpha_{ij} W h_j)`.

    .. math::
        \alpha_{ij} = \frac{\exp \mathrm{LeakyReLU}(a_{dst}^\top W h_i + a_{src}^\top W h_j)}
                           {\sum_{k \in S(i)} \exp \mathrm{LeakyReLU}(a_{dst}^\top W h_i + a_{src}^\top W h_k)}

    No edge weights (plain GAT), no attention dropout, no bias. Differentiable w.r.t. ``h``, ``weight``,
    ``a_src`` and ``a_dst``. Rows without edges (padding nodes of a batched graph) give ELU(0) = 0.

    Args:
        h: (N, F_in) node features.
        csr: the graph (target i = row, source j = col); S(i) includes i through the graph's self loop.
        weight: (F_in, F_out), or (B, F_in, F_out) per image of a batched graph (see :func:`per_image_matmul`).
        a_src, a_dst: (F_out,), or (N, F_out) per node (each node's image's vector).
        slope: negative slope of the LeakyReLU.

    Shapes: h (N, F_in) -> (N, F_out).
    """
    z = per_image_matmul(h, weight)
    alpha = gat_attention(z, csr, a_src, a_dst, slope)
    return torch.nn.functional.elu(propagate(csr, alpha, z))
