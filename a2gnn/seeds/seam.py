r"""SEAM's pixel correlation module (PCM) and equivariant cross regularisation (L_ECR): the parts of Eq. 1's
:math:`\mathrm{Net}_{SEAM}` that :mod:`a2gnn.seeds.cam` lacks (it has L_ER, :func:`a2gnn.seeds.cam_train.equivariance_loss`).

SEAM (Wang et al., "Self-supervised Equivariant Attention Mechanism for Weakly Supervised Semantic Segmentation",
CVPR 2020) trains a siamese CAM network on an image and its rescaled copy A(I). Its equations, as used here:

* **CAM with background** (SEAM §3.1): the foreground maps :math:`\hat y`, ReLU'd and max-normalised per class,
  and a background map :math:`1 - \max_k \hat y_k`; :func:`cams_with_background`.
* **PCM** (SEAM Eq. 6): :math:`y^{rv}_i = \frac{1}{C(x_i)} \sum_j f(x_i, x_j)\, \hat y_j` with
  :math:`f(x_i, x_j) = \mathrm{ReLU}\big(\frac{\theta(x_i)^\top \theta(x_j)}{\|\theta(x_i)\| \|\theta(x_j)\|}\big)` and
  :math:`C(x_i) = \sum_j f(x_i, x_j)`: every cell's CAM re-estimated as the affinity-weighted mean of all cells'.
  θ is a 1×1 convolution of (detached) backbone features; :func:`pcm_refine` takes its output.
* **L_ECR** (SEAM Eq. 9): :math:`\| A(y^{o}_{rv}) - \hat y^{t} \|_1 + \| A(\hat y^{o}) - y^{t}_{rv} \|_1`, the
  refined map of each branch against the raw map of the other; :func:`ecr_loss`.

Used by :mod:`a2gnn.seeds.cam` when ``cam.ecr_weight`` > 0 (with ``cam.equivariance_weight`` > 0, L_ER): training adds
L_ECR, and M_I is then read from the PCM-refined CAMs (SEAM's inference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SEAM_EPS = 1e-5


def cams_with_background(maps: Tensor) -> Tensor:
    """SEAM's normalised CAMs: foreground maps (B, K, h, w) (before ReLU) -> (B, 1 + K, h, w), channel 0 =
    background :math:`1 - \\max_k`, channels 1.. = ReLU(maps) divided by their per-(image, class) maximum."""
    fg = torch.relu(maps)
    fg = fg / (fg.flatten(2).amax(dim=2)[:, :, None, None] + SEAM_EPS)
    bg = 1.0 - fg.amax(dim=1, keepdim=True) if fg.shape[1] else torch.ones_like(maps[:, :1])
    return torch.cat([bg, fg], dim=1)


def pcm_affinity(theta: Tensor) -> Tensor:
    r"""SEAM Eq. 6's :math:`f(x_i, x_j) / C(x_i)`: theta (B, D, h, w) -> (B, N, N), N = h·w, rows sum to 1.

    :math:`f` = ReLU of the cosine similarity of the embedded cells (f(x_i, x_i) = 1 for a non-zero cell, so
    every row has mass); a row of an all-zero cell is uniform over nothing but itself.
    """
    flat = F.normalize(theta.flatten(2), dim=1, eps=SEAM_EPS)  # (B, D, N)
    f = torch.relu(flat.transpose(1, 2) @ flat)  # (B, N, N)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
    f = torch.where(f.sum(dim=2, keepdim=True) > 0, f, eye)  # a zero cell keeps its own value
    return f / f.sum(dim=2, keepdim=True)


def pcm_refine(cams: Tensor, theta: Tensor) -> Tensor:
    """SEAM Eq. 6: cams (B, C, h, w) re-estimated by :func:`pcm_affinity` of theta (B, D, h, w) -> (B, C, h, w)."""
    b, c, h, w = cams.shape
    if theta.shape[0] != b or theta.shape[2:] != (h, w):
        raise ValueError(f"theta {tuple(theta.shape)} does not match cams {tuple(cams.shape)}")
    refined = cams.flatten(2) @ pcm_affinity(theta).transpose(1, 2)  # (B, C, N): sum_j a_ij y_j
    return refined.view(b, c, h, w)


def ecr_loss(cams_o: Tensor, refined_o: Tensor, cams_t: Tensor, refined_t: Tensor, mask_t: Tensor) -> Tensor:
    r"""SEAM Eq. 9, :math:`L_{ECR} = \| A(y^o_{rv}) - \hat y^t \|_1 + \| A(\hat y^o) - y^t_{rv} \|_1`.

    ``cams_o`` / ``refined_o``: raw and PCM-refined maps of the original branch (B, C, h, w); ``cams_t`` /
    ``refined_t``: those of the rescaled branch (B, C, h', w'). A = bilinear resize to (h', w'). Each L1 term is
    averaged over the cells and channels where ``mask_t`` (B, C or 1, h', w') > 0 (weights: the valid area times the
    channels present in the image). Returns a scalar.
    """
    size = cams_t.shape[2:]
    a_refined = F.interpolate(refined_o, size=size, mode="bilinear", align_corners=False)
    a_cams = F.interpolate(cams_o, size=size, mode="bilinear", align_corners=False)
    weight = mask_t.expand_as(cams_t)
    total = weight.sum().clamp_min(SEAM_EPS)
    return (((a_refined - cams_t).abs() + (a_cams - refined_t).abs()) * weight).sum() / total
