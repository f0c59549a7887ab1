"""Layer 3: numerical operations shared by several paper concepts: the image <-> feature-grid mapping
(``grid``), radius-r neighbours (``neighbours``), the dense CRF (``crf``) and SLIC superpixels (``slic``).
"""
