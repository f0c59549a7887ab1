"""Layer 6: image -> graph (paper §4.3.2, Eq. 14-15).

``types`` (:class:`~a2gnn.graph.types.ImageGraph`, :class:`~a2gnn.graph.types.GraphConfig` and the registries
``EDGE_SOURCES`` / ``NODE_LAYOUTS``), ``features`` (Eq. 15), ``edges`` (Eq. 14, the L1 edges of Table 4(c), the
L_reg pairs), ``nodes`` (node layouts of Table 4(c): feature-grid cells or superpixels), ``superpixels``
(superpixel node features) and ``build`` (the affinity CNN's outputs -> one graph per image). Importing any part
of the package runs this file, which imports the modules that fill the registries.
"""

from a2gnn.graph import edges, nodes  # noqa: F401  (register the edge sources and node layouts)
