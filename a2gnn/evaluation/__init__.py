"""Layer 9: metrics against ground truth: the confusion matrix (``confusion``), folders of label maps
(``labels``), COCO mask / box AP (``coco_eval``), pseudo instances without a detector
(``pseudo_instances``), errors near outlines (``outline_errors``) and the paired bootstrap of two label
sets (``paired_bootstrap``).
"""
