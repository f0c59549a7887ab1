"""A²GNN network (paper §4.4, Eq. 16-19) and its training (§4.5, §5).

``layers``: the affinity attention layer on a sparse edge list (Eq. 17-18); ``model``: the network and its
``gnn`` params section (:class:`GNNConfig`); ``train``: per-image training, batched over many images.
"""

from a2gnn.gnn.layers import AffinityAttentionLayer, EdgeCSR, affinity_attention
from a2gnn.gnn.model import A2GNN, BatchedA2GNN, GNNConfig
from a2gnn.gnn.train import predict, train_a2gnn, train_a2gnn_single

__all__ = [
    "A2GNN",
    "AffinityAttentionLayer",
    "BatchedA2GNN",
    "EdgeCSR",
    "GNNConfig",
    "affinity_attention",
    "predict",
    "train_a2gnn",
    "train_a2gnn_single",
]
