"""Box-supervised instance segmentation (paper §5, Tables 2-3): pseudo instance masks and Mask R-CNN.

``pseudo_instances`` (pseudo labels + boxes -> one mask per box -> COCO instances JSON), ``maskrcnn``
(detectron2 Mask R-CNN: config, dataset registration, resumable training, prediction) and ``coco_eval``
(mask / box AP with pycocotools). Submodules are imported explicitly (``from a2gnn.instance.maskrcnn import
train_maskrcnn``) so that the pseudo-instance stage does not depend on detectron2.
"""
