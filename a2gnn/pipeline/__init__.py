"""Layer 12: the pipeline as DVC sees it: what each stage reads (``stage_deps``), params profiles
(``profiles``), the paper's tables as DVC experiments (``ablations``, rows in ``ablation_rows``) and the
experiments side by side (``compare``).
"""
