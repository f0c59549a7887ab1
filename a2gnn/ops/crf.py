r"""Fully connected CRF post-processing (Krähenbühl & Koltun, NIPS 2011) through ``pydensecrf``.

A²GNN (paper §4.5, "Implementation details") refines its final output probability O (Eq. 19) with a
dense CRF: the unary potential is :math:`-\log O`, the pairwise potentials are a Gaussian (position) and
a bilateral (position + colour) kernel,

.. math::
    E(x) = \sum_i -\log O_i(x_i)
         + \sum_{i<j} \mu(x_i, x_j)\Big[w_g \exp\!\big(-\tfrac{|p_i-p_j|^2}{2\theta_\gamma^2}\big)
         + w_b \exp\!\big(-\tfrac{|p_i-p_j|^2}{2\theta_\alpha^2} - \tfrac{|I_i-I_j|^2}{2\theta_\beta^2}\big)\Big],

with Potts compatibility :math:`\mu`. Mean-field inference returns the approximate marginals Q.
The paper only says "all CRF parameters are the same as [9], [40]"; the defaults below are those of the
A²GNN authors' final pseudo labels, PSA/SEAM's values are given in the comments.

Shapes: image (H, W, 3) uint8 RGB, probabilities (C, H, W) float, C = classes kept for this image.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np

from a2gnn.core.config import Config


@dataclasses.dataclass(frozen=True)
class CRFConfig(Config):
    """``crf`` section: dense-CRF kernel parameters (pydensecrf units: pixels and 0-255 colour levels)."""

    SECTION: typing.ClassVar[str] = "crf"
    iterations: int = 10  # mean-field iterations (PSA/SEAM: 10)
    gaussian_sxy: float = 2.0  # theta_gamma, position std of the smoothness kernel in pixels (PSA/SEAM: 3)
    gaussian_compat: float = 3.0  # w_g, weight of the smoothness kernel (PSA/SEAM: 3)
    bilateral_sxy: float = 50.0  # theta_alpha, position std of the appearance kernel in pixels (PSA/SEAM: 80)
    bilateral_srgb: float = 5.0  # theta_beta, colour std of the appearance kernel in 0-255 levels (PSA/SEAM: 13)
    bilateral_compat: float = 10.0  # w_b, weight of the appearance kernel (PSA/SEAM: 10)
    prob_clip: float = 1e-5  # probabilities are clipped to [prob_clip, 1] before -log (unary stays finite)
    scale_with_image: bool = False  # scale both sxy by max(H, W) / reference_size (for small images)
    reference_size: int = 500  # image side the sxy values were tuned for (VOC images are ~500 px)

    def validate(self) -> None:
        self.check(self.iterations >= 1, "iterations", ">= 1")
        for key in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            self.check(getattr(self, key) > 0, key, "> 0")
        for key in ("gaussian_compat", "bilateral_compat"):
            self.check(getattr(self, key) >= 0, key, ">= 0")
        self.check(0 < self.prob_clip < 1, "prob_clip", "in (0, 1)")
        self.check(self.reference_size >= 1, "reference_size", ">= 1")

    def spatial_scale(self, height: int, width: int) -> float:
        """Factor applied to both sxy: 1, or max(H, W) / reference_size when ``scale_with_image``."""
        return max(height, width) / self.reference_size if self.scale_with_image else 1.0


def dense_crf(image: np.ndarray, probs: np.ndarray, cfg: CRFConfig) -> np.ndarray:
    """Mean-field marginals Q of the dense CRF with unary -log(probs).

    Args:
        image: (H, W, 3) uint8 RGB image.
        probs: (C, H, W) class probabilities (e.g. softmax of Eq. 19); each pixel should sum to 1, values
            are clipped to [cfg.prob_clip, 1] so that zero probabilities give a large but finite unary.
        cfg: kernel parameters.

    Returns:
        (C, H, W) float32 marginals; every pixel sums to 1. Deterministic.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    image = np.asarray(image)
    probs = np.asarray(probs, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs must be (C, H, W) matching the image {image.shape[:2]}, got {probs.shape}")
    num_classes, height, width = probs.shape
    if num_classes == 1:  # a single label: nothing to decide
        return np.ones_like(probs, dtype=np.float32)
    scale = cfg.spatial_scale(height, width)
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    unary = unary_from_softmax(np.clip(probs, cfg.prob_clip, 1.0), clip=None)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=cfg.gaussian_sxy * scale, compat=cfg.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=cfg.bilateral_sxy * scale,
        srgb=cfg.bilateral_srgb,
        rgbim=np.ascontiguousarray(image),
        compat=cfg.bilateral_compat,
    )
    q = np.asarray(crf.inference(cfg.iterations), dtype=np.float32)
    return q.reshape(num_classes, height, width)


def crf_labels(image: np.ndarray, probs: np.ndarray, cfg: CRFConfig) -> np.ndarray:
    """Arg-max of :func:`dense_crf`: (H, W) uint8 channel index into ``probs`` (map to class ids yourself)."""
    return dense_crf(image, probs, cfg).argmax(axis=0).astype(np.uint8)


def crf_job(job: tuple[np.ndarray, np.ndarray, CRFConfig]) -> np.ndarray:
    """Picklable worker for :func:`a2gnn.core.parallel.parallel_map`: ``(image, probs, cfg) -> dense_crf(...)``."""
    image, probs, cfg = job
    return dense_crf(image, probs, cfg)


def crf_labels_job(job: tuple[np.ndarray, np.ndarray, CRFConfig]) -> np.ndarray:
    """Picklable worker: ``(image, probs, cfg) -> crf_labels(...)`` (returns only the small uint8 map)."""
    image, probs, cfg = job
    return crf_labels(image, probs, cfg)
