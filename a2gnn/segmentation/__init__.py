"""The fully supervised segmentation network trained on the pseudo labels (paper §5, Table 1): DeepLab.

:mod:`a2gnn.segmentation.deeplab`: :class:`DeepLabConfig` (``deeplab`` section), the ASPP head on a registry
backbone, training (resumable, :mod:`a2gnn.core.training`), prediction and evaluation (mIoU without / with dense CRF).
"""

from a2gnn.segmentation.deeplab import (
    ASPP,
    DeepLab,
    DeepLabConfig,
    build_deeplab,
    evaluate_deeplab,
    load_deeplab,
    predict_probs,
    save_deeplab,
    train_deeplab,
)

__all__ = [
    "ASPP", "DeepLab", "DeepLabConfig", "build_deeplab", "evaluate_deeplab", "load_deeplab", "predict_probs",
    "save_deeplab", "train_deeplab",
]
