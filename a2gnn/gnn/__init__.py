"""A²GNN network (paper §4.4, Eq. 16-19) and its training (§4.5, §5).

``layers``: the affinity attention layer on a sparse edge list (Eq. 17-18); ``model``: the network and its
``gnn`` params section (:class:`a2gnn.gnn.model.GNNConfig`); ``train``: per-image training, batched over many
images. Import from the submodules: this package imports nothing itself, so ``a2gnn.gnn.losses`` (which needs
``layers``) and ``train`` (which needs ``losses``) do not form an import cycle, and a stage that needs only the
layers does not depend on the training code.
"""
