"""Feature backbones (paper §5): the interface, the registry and every registered architecture.

:mod:`a2gnn.backbones.base` holds the :class:`~a2gnn.backbones.base.Backbone` interface, the ``BACKBONES``
registry, :class:`~a2gnn.backbones.base.BackboneConfig`, weight loading and
:func:`~a2gnn.backbones.base.build_backbone`; :mod:`~a2gnn.backbones.resnet` and
:mod:`~a2gnn.backbones.efficientnet` register the architectures. Importing any part of the package runs this
file, which imports the architecture modules, so every entry is registered before a config is validated.
"""

from a2gnn.backbones import efficientnet, resnet  # noqa: F401  (register the entries)
