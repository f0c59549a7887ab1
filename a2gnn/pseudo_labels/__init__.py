"""Layer 8: pseudo labels from the seeds, by every method, with one post-processing (box constraint,
dense CRF, fill): ``postprocess`` (shared), ``a2gnn`` (the paper's method), ``random_walk`` and
``baseline`` (Table 4(a)'s competitors), ``grabcut_crf`` (a box-only competitor) and ``instances``
(pseudo labels + boxes -> one instance mask per box, paper §5).
"""
