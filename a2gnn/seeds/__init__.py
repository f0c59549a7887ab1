"""Pixel-level seed labels (paper section 3 and 4.2).

``cam`` (Eq. 1: classification network, CAMs, M_I), ``grabcut`` (Eq. 2-3: box seeds M_B) and
``fusion`` (Eq. 4: M_F; section 4.2: top-40 % M'_I; Eq. 5: M_g). Submodules are imported
explicitly (``from a2gnn.seeds.grabcut import box_seeds``) so that using one does not pull in the
heavy dependencies of another (torch for ``cam``).
"""
