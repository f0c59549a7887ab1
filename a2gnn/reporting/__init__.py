"""Layer 13: the report stage: metrics beside the paper's numbers (``report``) and the figures (``figures``).
"""
