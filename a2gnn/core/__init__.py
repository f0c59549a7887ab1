"""Infrastructure every layer may use: params and typed configs (``config``), files and errors (``io``), stage
command lines (``cli``), process pools (``parallel``), data-parallel training (``distributed``), training
mechanics (``training``), the numerics pin (``numerics``) and the one plug-in table (``registry``).

Layer 0 of the package: it imports nothing else from a2gnn (tests/test_layers.py).
"""
