r"""Affinity attention layer of A²GNN (paper §4.4, Eq. 17-18) on a sparse edge list.

Zhang et al., "Affinity Attention Graph Neural Network for Weakly Supervised Semantic Segmentation",
IEEE TPAMI (arXiv:2106.04054).

.. math::
    H^{l+1} = P^l H^l, \qquad
    P^l(i, j) = \operatorname{softmax}_{j \in S(i)}\big(w^l \cos(H^l_i, H^l_j)
                + \beta\,[\cos(H^l_i, H^l_j) > 0]\,E_{ij}\big)

The graph is never dense: an :class:`EdgeCSR` holds the edge list sorted by target node (CSR), and the two
edge-sized products the layer needs are done by sparse kernels instead of gathering ``(E, F)`` tensors:

* :func:`edge_dot` - ``s_e = <a_{i_e}, b_{j_e}>`` for every edge (a sampled dense-dense product, SDDMM,
  ``torch.sparse.sampled_addmm``), used for the cosine similarities;
* :func:`propagate` - ``out_i = sum_{e: i_e = i} p_e b_{j_e}`` (sparse x dense, SpMM, ``torch.sparse.mm``),
  used for ``P H``.

Each is the other's backward. :func:`affinity_attention` runs the whole of Eq. (17)-(18) as one autograd
node with a hand-written backward (2 SDDMM + 3 SpMM per forward/backward on symmetric graphs); the
composed version (:func:`affinity_attention_composed`) is kept as its reference. On a 32x32 grid with
radius-5 neighbourhoods (72 k edges, F = 256) one layer's forward+backward takes ~8 ms on one CPU core,
against ~600 ms when gathering ``H[edge_index]`` into (E, F) tensors and scattering back with ``index_add``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

# torch warns once per process that CSR tensors are "beta"; the kernels used here (CSR @ dense, sampled_addmm)
# are stable, so consume that one-time warning here, silently, instead of in the middle of a progress bar.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                            (1, 1), check_invariants=False)

COS_EPS = 1e-12
"""Norm below which a feature vector counts as zero: it has cosine 0 with everything (and passes no gradient
through the cosine, which is not differentiable there)."""


def _inverse_norm(h: Tensor) -> tuple[Tensor, Tensor]:
    """(|h_i|, 1 / |h_i| or 0 for zero rows). Shapes: h (N, F) -> (N,), (N,)."""
    norm = torch.linalg.vector_norm(h, dim=1)
    return norm, torch.where(norm > COS_EPS, 1.0 / norm.clamp_min(COS_EPS), torch.zeros_like(norm))


class EdgeCSR:
    """An edge list ``(i_e, j_e)`` over ``num_nodes`` nodes, sorted by target ``i`` then source ``j`` (CSR).

    Edge-aligned tensors (edge weights, attention values) passed to the functions of this module must be in
    the CSR order; :meth:`from_edge_index` returns the permutation ``order`` that maps the caller's order to
    it (``values_csr = values[order]``). The transposed structure (sorted by ``j``) is kept for backward
    passes: ``t_perm`` lists the CSR edge ids in transposed order. When the pattern is symmetric (every
    (i, j) has its (j, i), as radius neighbourhoods), the transpose reuses the same index arrays.
    Kernel indices are int32 (``torch.sparse`` CPU kernels are ~1.5x faster with them) when N fits.

    Symmetric patterns also keep the half ``row <= col`` (``half``, its CSR ``half_crow`` / ``half_col``, and
    ``half_mirror`` = the transposed edge of each), so a symmetric product ``<a_i, a_j>`` is computed once per
    pair (:func:`_sddmm`).

    Shapes: row, col (E,) int64; crow (N+1,); t_crow (N+1,); t_col, t_perm (E,); half, half_mirror (E_h,).
    """

    def __init__(self, row: Tensor, col: Tensor, num_nodes: int):
        self.num_nodes = int(num_nodes)
        self.row = row
        self.col = col
        index_dtype = torch.int32 if row.numel() < 2**31 and self.num_nodes < 2**31 else torch.int64
        counts = torch.bincount(row, minlength=self.num_nodes)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(index_dtype)
        self.k_col = col.to(index_dtype)
        self.t_perm = torch.argsort(col * self.num_nodes + row, stable=True)
        t_counts = torch.bincount(col, minlength=self.num_nodes)
        t_col = row[self.t_perm]
        self.symmetric = bool(torch.equal(t_counts, counts) and torch.equal(t_col, col))
        if self.symmetric:
            self.t_crow, self.t_col = self.crow, self.k_col
            # edge e's transpose is edge t_perm[e]: s_e = <a_i, a_j> is computed once per pair {i, j}
            self.half = (row <= col).nonzero(as_tuple=True)[0]
            half_counts = torch.bincount(row[self.half], minlength=self.num_nodes)
            self.half_crow = torch.cat([half_counts.new_zeros(1), half_counts.cumsum(0)]).to(index_dtype)
            self.half_col = col[self.half].to(index_dtype)
            self.half_mirror = self.t_perm[self.half]
        else:
            self.t_crow = torch.cat([t_counts.new_zeros(1), t_counts.cumsum(0)]).to(index_dtype)
            self.t_col = t_col.to(index_dtype)

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int) -> tuple["EdgeCSR", Tensor]:
        """Sort ``edge_index`` (2, E) (row 0 = target i, row 1 = source j) into CSR order.

        Returns ``(csr, order)`` with ``csr.row == edge_index[0, order]``.
        """
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        edge_index = edge_index.to(torch.int64)
        if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
            raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
        order = torch.argsort(edge_index[0] * num_nodes + edge_index[1], stable=True)
        return cls(edge_index[0, order], edge_index[1, order], num_nodes), order

    @property
    def num_edges(self) -> int:
        return int(self.row.numel())

    def to(self, device: torch.device | str) -> "EdgeCSR":
        out = EdgeCSR.__new__(EdgeCSR)
        out.num_nodes, out.symmetric = self.num_nodes, self.symmetric
        names = ("row", "col", "crow", "k_col", "t_perm", "t_crow", "t_col")
        for name in names + (("half", "half_crow", "half_col", "half_mirror") if self.symmetric else ()):
            setattr(out, name, getattr(self, name).to(device))
        return out

    def matrix(self, values: Tensor) -> Tensor:
        """The (N, N) sparse CSR matrix with ``values`` (CSR order) at ``(row, col)``."""
        return torch.sparse_csr_tensor(self.crow, self.k_col, values, (self.num_nodes, self.num_nodes),
                                       check_invariants=False)

    def matrix_t(self, values: Tensor) -> Tensor:
        """The transpose of :meth:`matrix` (``values`` still in CSR order)."""
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values[self.t_perm],
                                       (self.num_nodes, self.num_nodes), check_invariants=False)

    def matrix_sym(self, values: Tensor) -> Tensor:
        """``matrix(values) + matrix_t(values)`` as one matrix when the pattern is symmetric, else None."""
        if not self.symmetric:
            return None
        return self.matrix(values + values[self.t_perm])


def _sddmm(csr: EdgeCSR, a: Tensor, b: Tensor) -> Tensor:
    """``s_e = <a[row_e], b[col_e]>`` without gradient. Shapes: a, b (N, F) -> (E,).

    With ``b is a`` on a symmetric pattern, only the half ``row <= col`` is computed and mirrored (s is
    symmetric): ~0.6x the time, the same values bit for bit (each pair's product is the same sum either way)."""
    if csr.num_edges == 0:
        return a.new_zeros(0)
    if b is a and csr.symmetric:
        pattern = torch.sparse_csr_tensor(csr.half_crow, csr.half_col, a.new_zeros(csr.half.numel()),
                                          (csr.num_nodes, csr.num_nodes), check_invariants=False)
        half = torch.sparse.sampled_addmm(pattern, a.contiguous(), a.t(), beta=0.0).values()
        out = a.new_empty(csr.num_edges)
        out[csr.half] = half
        out[csr.half_mirror] = half
        return out
    pattern = csr.matrix(a.new_zeros(csr.num_edges))
    return torch.sparse.sampled_addmm(pattern, a.contiguous(), b.t(), beta=0.0).values()


class _EdgeDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, csr: EdgeCSR) -> Tensor:  # type: ignore[override]
        ctx.csr = csr
        ctx.save_for_backward(a, b)
        return _sddmm(csr, a, b)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        csr: EdgeCSR = ctx.csr
        grad = grad.contiguous()
        grad_a = torch.sparse.mm(csr.matrix(grad), b) if ctx.needs_input_grad[0] else None
        grad_b = torch.sparse.mm(csr.matrix_t(grad), a) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class _SelfEdgeDot(torch.autograd.Function):
    """``s_e = <a[row_e], a[col_e]>``; backward ``(G + G^T) a`` in one product on symmetric patterns."""

    @staticmethod
    def forward(ctx, a: Tensor, csr: EdgeCSR) -> Tensor:  # type: ignore[override]
        ctx.csr = csr
        ctx.save_for_backward(a)
        return _sddmm(csr, a, a)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (a,) = ctx.saved_tensors
        csr: EdgeCSR = ctx.csr
        grad = grad.contiguous()
        both = csr.matrix_sym(grad)
        if both is not None:
            return torch.sparse.mm(both, a), None
        return torch.sparse.mm(csr.matrix(grad), a) + torch.sparse.mm(csr.matrix_t(grad), a), None


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, b: Tensor, csr: EdgeCSR) -> Tensor:  # type: ignore[override]
        ctx.csr = csr
        ctx.save_for_backward(values, b)
        return torch.sparse.mm(csr.matrix(values), b)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        values, b = ctx.saved_tensors
        csr: EdgeCSR = ctx.csr
        grad = grad.contiguous()
        grad_values = _sddmm(csr, grad, b) if ctx.needs_input_grad[0] else None
        grad_b = torch.sparse.mm(csr.matrix_t(values), grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_b, None


def edge_dot(csr: EdgeCSR, a: Tensor, b: Tensor | None = None) -> Tensor:
    r"""Per-edge inner products :math:`s_e = \langle a_{i_e}, b_{j_e} \rangle` (differentiable SDDMM).

    ``b=None`` means ``b = a`` (one backward product instead of two on symmetric patterns).

    Shapes: a (N, F), b (N, F) -> (E,) in CSR order.
    """
    if b is None:
        return _SelfEdgeDot.apply(a, csr)
    return _EdgeDot.apply(a, b, csr)


def propagate(csr: EdgeCSR, values: Tensor, b: Tensor) -> Tensor:
    r"""Sparse aggregation :math:`out_i = \sum_{e: i_e = i} v_e\, b_{j_e}` (differentiable SpMM, Eq. 17).

    Shapes: values (E,) in CSR order, b (N, F) -> (N, F); rows without edges are 0.
    """
    return _Propagate.apply(values, b, csr)


def edge_cosine(csr: EdgeCSR, h: Tensor) -> Tensor:
    r""":math:`\cos(H_i, H_j) = \langle H_i, H_j \rangle / (\|H_i\| \|H_j\|)` for every edge.

    The norms are applied to the (E,) inner products rather than to the (N, F) features, which saves two
    feature-sized passes forward and three backward.

    Shapes: h (N, F) -> (E,) in CSR order.
    """
    _, inv = _inverse_norm(h)
    return edge_dot(csr, h) * inv.index_select(0, csr.row) * inv.index_select(0, csr.col)


def segment_softmax(logits: Tensor, row: Tensor, num_nodes: int) -> Tensor:
    r"""Softmax of edge logits over the edges sharing a target node (the normalisation of Eq. 18).

    Uses the per-node maximum (``scatter_reduce`` 'amax', no gradient needed: it cancels) for stability.

    Shapes: logits (E,), row (E,) target node of each edge -> (E,); sums to 1 over each node's edges.
    """
    node_max = logits.new_full((num_nodes,), float("-inf"))
    node_max = node_max.scatter_reduce(0, row, logits.detach(), reduce="amax", include_self=True)
    ex = torch.exp(logits - node_max.index_select(0, row))
    denom = logits.new_zeros(num_nodes).index_add(0, row, ex)
    return ex / denom.index_select(0, row)


def affinity_logits(cos: Tensor, edge_weight: Tensor, w: Tensor | float, beta: float,
                    use_cos_term: bool = True, use_edge_term: bool = True) -> Tensor:
    r"""The argument of the softmax in Eq. (18): :math:`w \cos_{ij} + \beta [\cos_{ij} > 0] E_{ij}`.

    The gate is the paper's strict ``cos > 0``. (With non-negative features cos >= 0, so the gate is 0 only
    for orthogonal or all-zero features; it is implemented as written anyway.)

    Ablation switches (Table 4(d) / Fig. 7):
        use_cos_term=False: affinity-only layer, :math:`\beta E_{ij}` (no cosine, hence no gate either: the
            gate belongs to the attention module that is switched off).
        use_edge_term=False: attention-only layer, :math:`w \cos_{ij}` = the AGNN layer (Thekumparampil et al.).

    Shapes: cos (E,), edge_weight (E,), w scalar or (E,) -> (E,).
    """
    logits = torch.zeros_like(edge_weight)
    if use_cos_term:
        logits = logits + w * cos
    if use_edge_term:
        gate = (cos > 0).to(edge_weight.dtype) if use_cos_term else 1.0
        logits = logits + beta * gate * edge_weight
    return logits


class _AffinityAttention(torch.autograd.Function):
    """Eq. (17)-(18) in one autograd node: cos -> logits -> segment softmax -> P H, with a hand-written backward.

    Same values and gradients (w.r.t. H and w; E_ij is data and gets none) as composing
    :func:`edge_cosine`, :func:`affinity_logits`, :func:`segment_softmax` and :func:`propagate`, but without
    the autograd bookkeeping of a dozen edge-sized intermediates (the layer runs ~1.4x faster on CPU).
    """

    @staticmethod
    def forward(ctx, h: Tensor, w_e: Tensor, edge_weight: Tensor, csr: EdgeCSR, beta: float,  # type: ignore[override]
                use_cos: bool, use_edge: bool) -> Tensor:
        if use_cos:
            _, inv = _inverse_norm(h)
            inv_r, inv_c = inv.index_select(0, csr.row), inv.index_select(0, csr.col)
            s = _sddmm(csr, h, h)
            cos = s * inv_r * inv_c
        else:
            inv = inv_r = inv_c = s = cos = torch.zeros_like(edge_weight)
        logits = affinity_logits(cos, edge_weight, w_e, beta, use_cos, use_edge)
        p = segment_softmax(logits, csr.row, csr.num_nodes)
        ctx.csr, ctx.use_cos = csr, use_cos
        ctx.save_for_backward(h, w_e, p, cos, s, inv, inv_r, inv_c)
        return torch.sparse.mm(csr.matrix(p), h)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        h, w_e, p, cos, s, inv, inv_r, inv_c = ctx.saved_tensors
        csr: EdgeCSR = ctx.csr
        grad = grad.contiguous()
        grad_h = torch.sparse.mm(csr.matrix_t(p), grad)  # d/dH of P H through H
        grad_w = None
        if ctx.use_cos:
            dp = _sddmm(csr, grad, h)  # dL/dP_e = <g_i, h_j>
            t = p * dp
            da = t - p * torch.zeros_like(inv).index_add_(0, csr.row, t).index_select(0, csr.row)  # softmax
            if ctx.needs_input_grad[1]:
                grad_w = da * cos
            dcos = da * w_e  # the gate [cos > 0] is piecewise constant: no gradient
            ds = dcos * inv_r * inv_c  # cos = s * inv_i * inv_j
            g_inv = torch.zeros_like(inv).index_add_(0, csr.row, dcos * s * inv_c)
            g_inv = g_inv.index_add_(0, csr.col, dcos * s * inv_r)
            g_h = -g_inv * inv.pow(3)  # inv = 1 / |h|: d inv / d h = -h / |h|^3 (0 for zero rows, inv = 0)
            both = csr.matrix_sym(ds)  # s = <h_i, h_j>: dh = (dS + dS^T) h
            if both is not None:
                grad_h = torch.addmm(grad_h, both, h)
            else:
                grad_h = torch.addmm(torch.addmm(grad_h, csr.matrix(ds), h), csr.matrix_t(ds), h)
            grad_h = grad_h.addcmul_(h, g_h[:, None])
        return grad_h, grad_w, None, None, None, None, None


def affinity_attention(h: Tensor, edge_index: Tensor | EdgeCSR, edge_weight: Tensor, w: Tensor | float,
                       beta: float, use_cos_term: bool = True, use_edge_term: bool = True) -> Tensor:
    r"""One affinity attention propagation, Eq. (17)-(18): :math:`H^{l+1} = P^l H^l`.

    .. math::
        P(i, j) = \frac{\exp\{w \cos(h_i, h_j) + \beta [\cos(h_i, h_j) > 0] E_{ij}\}}
                       {\sum_{j' \in S(i)} \exp\{w \cos(h_i, h_{j'}) + \beta [\cos(h_i, h_{j'}) > 0] E_{ij'}\}}

    where S(i) = the sources j of the edges (i, j) (self loop included by the graph's contract), E_ij the edge
    weight (affinity, Eq. 14), w the layer's learnable scalar and beta the fixed weighting factor.
    Differentiable w.r.t. ``h`` and ``w`` (not ``edge_weight``, which is data).

    Args:
        h: (N, F) node features H^l.
        edge_index: (2, E) int64 (row 0 = target i, row 1 = source j), or an :class:`EdgeCSR`.
        edge_weight: (E,) E_ij in the order of ``edge_index`` (CSR order if an EdgeCSR is given).
        w: scalar tensor (learnable) or float; may also be (E,) per-edge (batched per-image parameters).
        beta: weighting factor of the edge term.
        use_cos_term, use_edge_term: ablation switches, see :func:`affinity_logits`.

    Shapes: h (N, F), edge_index (2, E), edge_weight (E,) -> (N, F).
    """
    if isinstance(edge_index, EdgeCSR):
        csr = edge_index
    else:
        csr, order = EdgeCSR.from_edge_index(edge_index.to(h.device), h.shape[0])
        edge_weight = edge_weight[order]
        if isinstance(w, Tensor) and w.dim() == 1:
            w = w[order]
    w_e = torch.as_tensor(w, dtype=h.dtype, device=h.device).expand(csr.num_edges)
    return _AffinityAttention.apply(h, w_e, edge_weight.to(h.dtype), csr, float(beta), use_cos_term, use_edge_term)


def affinity_attention_composed(h: Tensor, csr: EdgeCSR, edge_weight: Tensor, w: Tensor | float, beta: float,
                                use_cos_term: bool = True, use_edge_term: bool = True) -> Tensor:
    """:func:`affinity_attention` written as the composition of the Eq. (18) pieces (reference for tests)."""
    cos = edge_cosine(csr, h) if use_cos_term else torch.zeros_like(edge_weight)
    logits = affinity_logits(cos, edge_weight, w, beta, use_cos_term, use_edge_term)
    return propagate(csr, segment_softmax(logits, csr.row, csr.num_nodes), h)


class AffinityAttentionLayer(nn.Module):
    r"""Affinity attention layer (Eq. 17-18) with its learnable scalar :math:`w^l`.

    ``w`` is initialised uniformly in [0, 1] (as in the authors' code; the paper gives no initialisation),
    from ``generator`` when one is passed to :meth:`reset_parameters`. ``beta`` is fixed (not learnt).

    Shapes: forward(h (N, F), csr: EdgeCSR, edge_weight (E,) CSR order) -> (N, F).
    """

    def __init__(self, beta: float, use_cos_term: bool = True, use_edge_term: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.beta = float(beta)
        self.use_cos_term = use_cos_term
        self.use_edge_term = use_edge_term
        self.w = nn.Parameter(torch.empty(()))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.w.copy_(torch.rand((), generator=generator))

    def forward(self, h: Tensor, csr: EdgeCSR, edge_weight: Tensor) -> Tensor:
        return affinity_attention(h, csr, edge_weight, self.w, self.beta, self.use_cos_term, self.use_edge_term)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, use_cos_term={self.use_cos_term}, use_edge_term={self.use_edge_term}"
