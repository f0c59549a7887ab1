"""Node features X of the graph (paper Eq. 15) and their optional projection (``graph.feature_dim``)."""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_node_features(x: Tensor) -> Tensor:
    r"""Node feature normalisation, Eq. (15): :math:`x_{i,j} \leftarrow x_{i,j} / \sum_{j'} x_{i,j'}`.

    The features are post-ReLU, so row sums are >= 0; a row whose sum is not positive (all zeros) is left
    unchanged instead of becoming NaN.

    Shapes: x (N, D_g) -> (N, D_g).
    """
    total = x.sum(dim=1, keepdim=True)
    return x / torch.where(total > 0, total, torch.ones_like(total))


PROJECTION_OVERSAMPLE = 8
"""Extra random directions of the randomized SVD in :func:`project_node_features` (Halko et al. 2011: 5-10)."""


PROJECTION_POWER_ITERATIONS = 2
"""Power iterations of that randomized SVD (sharpen a slowly decaying spectrum)."""


def project_node_features(x: Tensor, k: int) -> Tensor:
    r"""Top-k principal coordinates of one image's node features: :math:`X V_k = U_k \Sigma_k`.

    :math:`X = U \Sigma V^\top`; the GNN's first layer :math:`X W^0` over the k-dim coordinates spans the same
    functions of the dominant subspace of X at k / D_g of the cost (the embedding layer dominates at D_g = 5632
    or 2432), and :math:`(X V_k)(X V_k)^\top` approximates the Gram matrix :math:`X X^\top`, so cosine
    similarities of nodes are kept up to the discarded spectrum (exactly when rank X <= k). Not centred (the
    features are post-ReLU and L1-normalised, Eq. 15); a randomized SVD with a fixed-seed generator, so the
    result is deterministic. ``k <= 0`` or ``k >= D_g`` returns X unchanged. A graph of ``N <= k`` nodes (a
    small or very elongated image) has all its N principal coordinates (exact SVD, so X X^T is kept exactly),
    zero-padded to k columns: every image of a batch has the same width.

    Shapes: x (N, D_g) -> (N, k).
    """
    n, d = x.shape
    if k <= 0 or k >= d:
        return x
    if k >= n:
        u, s, _ = torch.linalg.svd(x, full_matrices=False)
        return torch.nn.functional.pad(u * s, (0, k - s.shape[0])).contiguous()
    generator = torch.Generator().manual_seed(0)
    omega = torch.randn(d, k + PROJECTION_OVERSAMPLE, generator=generator, dtype=x.dtype)
    y = x @ omega.to(x.device)
    for _ in range(PROJECTION_POWER_ITERATIONS):
        y, _ = torch.linalg.qr(y)
        y = x @ (x.t() @ y)
    q, _ = torch.linalg.qr(y)
    u_b, s, _ = torch.linalg.svd(q.t() @ x, full_matrices=False)
    return ((q @ u_b[:, :k]) * s[:k]).contiguous()
