"""Layer 1: datasets and what is read from them. Readers (``voc``, ``coco``; ``formats`` opens either by
``dataset.format``), large photos shrunk (``resize``), box geometry (``boxes``), image transforms and
normalisation (``transforms``), DeepLab's image + label pairs (``segmentation``), the embedded default dataset
(``embedded``) and the weak supervision forms of §7 (``weak_labels``, ``supervision``).

Submodules are imported explicitly, so that a stage reading VOC does not depend on the COCO reader.
"""
