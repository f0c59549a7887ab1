"""a2gnn: Affinity Attention Graph Neural Network for weakly (box-) supervised segmentation.

Reference: B. Zhang, J. Xiao, J. Jiao, Y. Wei, Y. Zhao, "Affinity Attention Graph Neural Network
for Weakly Supervised Semantic Segmentation", IEEE TPAMI (arXiv:2106.04054).

One module per paper concept: ``datasets`` (VOC/COCO readers, embedded default data), ``seeds``
(Eq. 1-5), ``affinity`` (Eq. 6-13), ``graph`` (Eq. 14-15), ``gnn`` (Eq. 16-19), ``losses``
(Eq. 20-26), ``consistency`` (Eq. 27-28), ``crf``, ``random_walk``, ``evaluation``.
"""

from a2gnn.core import numerics as _numerics

_numerics.pin()  # before torch, numpy or cv2 load: kernels independent of the CPU level (a2gnn/core/numerics.py)

__version__ = "0.1.0"
