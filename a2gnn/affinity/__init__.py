"""Affinity CNN (paper §4.3.1, Eq. 6-13): model (F_A on a backbone), losses, training and checkpoints.

``model`` and ``losses`` are imported here; ``train`` (config, training loop, checkpoints) is imported
explicitly as :mod:`a2gnn.affinity.train`.
"""

from a2gnn.affinity.model import AffinityNet

__all__ = ["AffinityNet"]
