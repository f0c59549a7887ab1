r"""CAM seeds from image-level labels: paper §3, Eq. (1)  :math:`M_I = \mathrm{Net}_{SEAM}(I)`.

The paper takes :math:`M_I` from SEAM (Wang et al., "Self-supervised Equivariant Attention Mechanism
for Weakly Supervised Semantic Segmentation", CVPR 2020, arXiv:2004.04581) on a pretrained
ResNet-38. Here a plain CAM classifier (Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016) is trained from scratch on the train split's image-level labels (the
classes of its boxes, :attr:`a2gnn.data.voc.Annotation.image_labels`). SEAM's parts are params, off by
default: the siamese rescale branch with the equivariant regularisation L_ER (``equivariance_weight``,
:func:`equivariance_loss`), and on top of it the pixel correlation module with the equivariant cross
regularisation L_ECR (``ecr_weight``, :mod:`a2gnn.seeds.seam`; M_I is then read from the PCM-refined CAMs).
SEAM's inference (multi-scale + flips, per-class max normalisation) is available through ``scales`` /
``infer_flip``.

Model: backbone -> final tap (B, C, h, w) -> channel dropout -> 1x1 conv without bias over the
K_fg = N - 1 foreground classes = class maps (B, K_fg, h, w) -> global average pooling over the
valid (non-padding) area = logits (B, K_fg) -> multi-label BCE against the image labels.
Because the classifier is linear, GAP of the class maps equals the classifier applied to the GAP
of the features.

CAMs of one image (:func:`compute_cams`): ReLU of the class maps, up-sampled by the stride to the
(scaled) image, summed over the inference scales (and flips), restricted to the image's labels and
divided by their per-class maximum (:func:`normalize_cams`), so each lies in [0, 1].

Seeds (:func:`cam_seeds`, Eq. 1): ``M_I = argmax([bg, CAM_1..CAM_K])`` with the PSA background
score ``bg = (1 - max_k CAM_k) ** bg_alpha``, mapped back to class indices (0 = background).

**Confidence of M_I** (``seed_confidence``): the authors' CAM seeds go through a dense CRF over
[bg; CAMs] and mark pixels whose CRF probability is below 0.8 as unknown (255); ``seed_confidence: 0``
(default) keeps the plain arg-max of Eq. (1), ``0.8`` is the authors' reading (CRF kernels: ``seed_crf``,
PSA/SEAM values). The README reports both.

Defaults are the embedded CPU profile of params.yaml (the dataclass defaults equal params.yaml, a test
checks it): the "small" backbone at stride 8, Adam 1e-3 for 30 epochs on 128 px crops with batch 8,
flipped inference, bg_alpha 1 (M_I's mIoU on the embedded train split: ``metrics/seeds_miou.json``). A stride-4 variant
(``-S cam.backbone.stride=4 -S cam.epochs=20 -S cam.batch_size=4 -S cam.bg_alpha=2.0``) reaches about
53 % but changes the RW ranking (see README). L_ER gave no significant gain (+-2 seed noise).

Outputs of the ``cam`` stage (docs/ARCHITECTURE.md): ``scores/<id>.npz`` with ``cams`` float16
(K, H, W) and ``labels`` int64 (K,), written as a zip with fixed timestamps
(:func:`save_cam_scores`) so that re-running the stage reproduces the files byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a2gnn.backbones.base import Backbone, BackboneConfig, build_backbone
from a2gnn.data.transforms import normalize_image
from a2gnn.core.config import Config
from a2gnn.ops.crf import CRFConfig, dense_crf
from a2gnn.core.io import IGNORE_INDEX, DataError, load_torch, save_torch
from a2gnn.core.registry import Registry
from a2gnn.seeds.box_cam import as_object_boxes, box_probabilities, objectness_class_cams
from a2gnn.seeds.scores import with_background
from a2gnn.seeds.seam import cams_with_background, pcm_refine
from a2gnn.core.training import OptimConfig

CAM_EPS = 1e-5
"""Added to each class's maximum before dividing (CAM normalisation, as in SEAM)."""

PSA_CRF = CRFConfig(gaussian_sxy=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0)
"""Dense-CRF kernels of the PSA/SEAM CAM seeds (the A²GNN pseudo-label CRF, ``crf`` section, differs)."""


@dataclasses.dataclass(frozen=True)
class CAMConfig(Config):
    """``cam`` section: the classification network of Eq. (1), its training and CAM inference."""

    SECTION: typing.ClassVar[str] = "cam"
    # Defaults: the embedded CPU profile of params.yaml (see the module docstring).
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)  # Net's features
    epochs: int = 30  # training epochs over the train split
    batch_size: int = 8  # images per step (each on a crop_size x crop_size canvas)
    # optimiser + poly schedule (PSA/SEAM: SGD, lr 0.01, momentum 0.9, weight decay 5e-4, power 0.9, new layers 10x)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    dropout: float = 0.0  # channel dropout on the final tap before the classifier (training only)
    crop_size: int = 128  # side of the square training canvas; larger images are randomly cropped,
    #                       smaller ones placed at a random offset; padding is excluded from pooling
    scale_range: tuple[float, float] = (0.9, 1.1)  # random rescale factor range for training
    flip: bool = True  # random horizontal flip in training
    # what trains the classifier: image = Eq. 1's image labels | boxes (box_cam.py) | objectness = the boxes as one
    # class-agnostic object class, each box giving its class to the object map inside it (few photos per class)
    supervision: str = "image"
    background_weight: float = 1.0  # supervision boxes: weight of the box-free cells' background term
    equivariance_weight: float = 0.0  # weight of SEAM's equivariant regularisation L_ER (0 = plain CAM)
    equivariance_scale: float = 0.5  # rescale factor of L_ER's second branch (SEAM: 0.3 on 448 px crops)
    ecr_weight: float = 0.0  # SEAM's L_ECR weight (Eq. 9 of SEAM); > 0 adds the PCM, used at inference too (0 = off)
    pcm_channels: int = 64  # channels of the PCM's embedding theta (a 1x1 conv of the detached taps + image)
    scales: tuple[float, ...] = (1.0,)  # inference scales whose CAMs are summed (SEAM: 0.5, 1, 1.5, 2)
    infer_flip: bool = True  # also add the CAMs of the flipped image at inference (SEAM: true)
    bg_alpha: float = 1.0  # alpha of the background score bg = (1 - max_k CAM_k) ** alpha (Eq. 1 seeds)
    # M_I confidence (authors' CAM seeds): dense-CRF probability below this -> 255; 0 = off (plain Eq. 1)
    seed_confidence: float = 0.0
    seed_crf: CRFConfig = dataclasses.field(default_factory=lambda: PSA_CRF)  # CRF of the confidence (PSA/SEAM)

    def validate(self) -> None:
        self.check(self.epochs >= 1, "epochs", ">= 1")
        self.check(self.batch_size >= 1, "batch_size", ">= 1")
        self.check(0 <= self.dropout < 1, "dropout", "in [0, 1)")
        stride = self.backbone.stride
        self.check(self.crop_size >= stride, "crop_size", f">= the backbone stride {stride}")
        self.check(
            len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
            "scale_range", "[lo, hi] with 0 < lo <= hi",
        )
        self.check(
            len(self.scales) >= 1 and all(s > 0 for s in self.scales), "scales", "a non-empty list of positive factors"
        )
        self.check(self.bg_alpha > 0, "bg_alpha", "> 0")
        self.check(0 <= self.seed_confidence < 1, "seed_confidence", "in [0, 1)")
        self.check(self.supervision in CAM_SUPERVISIONS, "supervision", f"one of {CAM_SUPERVISIONS.names()}")
        self.check(self.background_weight >= 0, "background_weight", ">= 0")
        self.check(not CAM_SUPERVISIONS[self.supervision].by_box or self.equivariance_weight == 0,
                   "equivariance_weight", "0 under supervision boxes / objectness (L_ER is defined for image labels)")
        self.check(self.equivariance_weight >= 0, "equivariance_weight", ">= 0")
        self.check(0 < self.equivariance_scale < 1, "equivariance_scale", "in (0, 1)")
        self.check(self.ecr_weight >= 0, "ecr_weight", ">= 0")
        self.check(self.ecr_weight == 0 or self.equivariance_weight > 0, "ecr_weight",
                   "0 unless equivariance_weight > 0 (L_ECR compares SEAM's two branches)")
        self.check(self.pcm_channels >= 1, "pcm_channels", ">= 1")


class CAMNet(nn.Module):
    """Classification network of Eq. (1): backbone -> 1x1 classifier (no bias) -> masked GAP.

    Shapes: x (B, 3, H, W), valid (B, 1, H, W) or None -> logits (B, K_fg);
    :meth:`class_maps`: x -> (B, K_fg, ceil(H / s), ceil(W / s)) (before ReLU).
    """

    def __init__(self, backbone: Backbone, num_foreground: int, dropout: float = 0.0, background: bool = False,
                 pcm_channels: int = 0):
        super().__init__()
        self.backbone = backbone
        self.num_foreground = num_foreground
        self.background = background  # one more map, the background, last (supervision: boxes)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(backbone.tap_channels[2], num_foreground + int(background), 1, bias=False)
        # SEAM's PCM embedding theta over the detached last two taps and the image (pcm_channels 0 = no PCM)
        self.pcm = (nn.Conv2d(backbone.tap_channels[1] + backbone.tap_channels[2] + 3, pcm_channels, 1, bias=False)
                    if pcm_channels > 0 else None)
        self.reset_parameters()

    def head_parameters(self) -> list[nn.Parameter]:
        """The new layers (classifier, PCM), trained at ``optim.head_lr_mult`` times the base rate."""
        modules = [self.classifier] + ([self.pcm] if self.pcm is not None else [])
        return [p for m in modules for p in m.parameters()]

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.classifier.weight)
        if self.pcm is not None:
            nn.init.kaiming_normal_(self.pcm.weight)

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def class_maps(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.backbone(x)[2]))

    def maps_and_theta(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class maps (B, K, h, w) and SEAM's PCM embedding theta (B, pcm_channels, h, w) of the same pass: a 1x1
        conv of the detached taps 1 and 2 and the image, each resized to the final tap's grid (SEAM's PCM input)."""
        if self.pcm is None:
            raise ValueError("this CAMNet has no PCM (cam.ecr_weight 0)")
        taps = self.backbone(x)
        maps = self.classifier(self.dropout(taps[2]))
        size = maps.shape[2:]
        parts = [F.interpolate(t.detach(), size=size, mode="bilinear", align_corners=False) for t in taps[1:]]
        parts.append(F.interpolate(x, size=size, mode="area"))
        return maps, self.pcm(torch.cat(parts, dim=1))

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        return masked_gap(self.class_maps(x), valid)


def masked_gap(maps: Tensor, valid: Tensor | None) -> Tensor:
    """Global average pooling over the valid area. maps (B, K, h, w), valid (B, 1, H, W) in {0, 1} -> (B, K).

    ``valid`` is area-resampled to (h, w), so a feature cell counts with the fraction of its pixels
    that belong to the image (padding is ignored)."""
    if valid is None:
        return maps.mean(dim=(2, 3))
    weight = F.interpolate(valid, size=maps.shape[2:], mode="area")
    return (maps * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(CAM_EPS)


def multi_hot(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Image labels (foreground class indices >= 1) -> (num_classes - 1,) float32 0/1 target."""
    target = np.zeros(num_classes - 1, dtype=np.float32)
    target[np.asarray(labels, dtype=np.int64) - 1] = 1.0
    return target


def build_cam_model(cfg: CAMConfig, num_classes: int) -> CAMNet:
    """CAMNet over ``num_classes - 1`` foreground classes (class 0 = background has no output); under
    ``supervision: objectness`` over one foreground map, the class-agnostic object."""
    if num_classes < 2:
        raise ValueError("need background plus at least one foreground class")
    supervision = CAM_SUPERVISIONS[cfg.supervision]
    return CAMNet(build_backbone(cfg.backbone), supervision.maps(num_classes), cfg.dropout,
                  background=supervision.by_box, pcm_channels=cfg.pcm_channels if cfg.ecr_weight > 0 else 0)


def image_cams(model: CAMNet, image: np.ndarray, annotation, cfg: CAMConfig, device: str = "cpu"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(CAMs (K, H, W) float32 in [0, 1], labels (K,)) of one image's labels, as M_I reads them: the class maps
    (:func:`compute_cams`), or under ``supervision: objectness`` the object map given to each box's class
    (:func:`a2gnn.seeds.box_cam.objectness_class_cams`)."""
    labels = np.asarray(annotation.image_labels, dtype=np.int64)
    return CAM_SUPERVISIONS[cfg.supervision].read(model, image, annotation, labels, cfg, device), labels


def normalize_cams(cams: Tensor) -> Tensor:
    """Per-class max normalisation (SEAM): cams (K, H, W) >= 0 -> cams / (max_hw cams + CAM_EPS), in [0, 1)."""
    peak = cams.flatten(1).amax(dim=1) if cams.numel() else cams.new_zeros(cams.shape[0])
    return cams / (peak.view(-1, 1, 1) + CAM_EPS)


@torch.no_grad()
def compute_cams(
    model: CAMNet, image: np.ndarray, labels: Sequence[int], cfg: CAMConfig, device: str = "cpu"
) -> np.ndarray:
    """Normalised CAMs of the image's labels: image (H, W, 3) uint8, labels (K,) -> (K, H, W) float32 in [0, 1].

    A model with a background map (``supervision: boxes``) gives instead the softmax over the background and the
    labels of its maps averaged over the scales and flips (:func:`a2gnn.seeds.box_cam.box_probabilities`).
    Otherwise, for each inference scale (and its flip when ``infer_flip``): ReLU(class maps) up-sampled
    bilinearly by the stride (cropped to the scaled image) and then to (H, W); the sum over scales
    is restricted to ``labels`` (class c -> map c - 1) and max-normalised per class."""
    model.eval()
    labels = np.asarray(labels, dtype=np.int64)
    h, w = image.shape[:2]
    total = torch.zeros(model.classifier.out_channels, h, w, device=device)
    for scale in cfg.scales:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        scaled = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
        x = normalize_image(scaled)[None].to(device)
        if cfg.infer_flip:
            x = torch.cat([x, x.flip(-1)])
        if model.pcm is not None:  # SEAM: the PCM-refined foreground CAMs (background channel dropped)
            maps, theta = model.maps_and_theta(x)
            maps = pcm_refine(cams_with_background(maps), theta)[:, 1:]
        else:
            maps = model.class_maps(x)
            maps = maps if model.background else torch.relu(maps)  # boxes: logits, averaged then soft-maxed
        gh, gw = maps.shape[2:]
        maps = F.interpolate(maps, size=(gh * model.stride, gw * model.stride), mode="bilinear", align_corners=False)
        maps = maps[:, :, :sh, :sw]
        if (sh, sw) != (h, w):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
        total += maps[0] + (maps[1].flip(-1) if cfg.infer_flip else 0)
    if model.background:
        views = len(cfg.scales) * (2 if cfg.infer_flip else 1)
        return box_probabilities(total / views, labels).cpu().numpy().astype(np.float32)
    return normalize_cams(total[torch.from_numpy(labels - 1).to(device)]).cpu().numpy().astype(np.float32)


def cam_seeds(cams: np.ndarray, labels: Sequence[int], bg_alpha: float) -> np.ndarray:
    r"""Eq. (1) seed labels :math:`M_I` from normalised CAMs.

    .. math::
        M_I(i) = \mathrm{lut}\big[\arg\max([\,bg(i), CAM_1(i), \dots, CAM_K(i)\,])\big],\quad
        bg(i) = (1 - \max_k CAM_k(i))^{\alpha}

    where ``lut = [0, labels...]`` maps the argmax back to class indices (0 = background); ties
    go to the earlier entry (background first). An image without labels is all background.

    Shapes: cams (K, H, W) in [0, 1], labels (K,) class indices >= 1 -> (H, W) uint8.
    """
    cams = np.asarray(cams, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if cams.ndim != 3 or cams.shape[0] != labels.shape[0]:
        raise ValueError(f"cams {cams.shape} do not match labels {labels.shape}")
    if labels.size == 0:
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    index = with_background(cams, bg_alpha).argmax(axis=0)
    lut = np.concatenate([[0], labels]).astype(np.uint8)
    return lut[index]


def confident_cam_seeds(
    image: np.ndarray, cams: np.ndarray, labels: Sequence[int], bg_alpha: float, crf: CRFConfig, threshold: float
) -> np.ndarray:
    """M_I with the authors' confidence: dense CRF over the distribution [bg; CAMs] / sum (Eq. 1 scores),
    arg-max mapped to class ids, and 255 where the CRF's probability of that arg-max is below ``threshold``.

    Shapes: image (H, W, 3) uint8, cams (K, H, W) in [0, 1], labels (K,) -> (H, W) uint8.
    """
    scores = with_background(cams, bg_alpha)
    probs = scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-12)
    refined = dense_crf(image, probs.astype(np.float32), crf)
    lut = np.concatenate([[0], np.asarray(labels, dtype=np.int64)]).astype(np.uint8)
    seeds = lut[refined.argmax(axis=0)]
    seeds[refined.max(axis=0) < threshold] = IGNORE_INDEX
    return seeds


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def save_cam_checkpoint(
    path: os.PathLike | str, model: CAMNet, cfg: CAMConfig, class_names: Sequence[str], epoch: int
) -> None:
    """Save ``{model: state_dict, config: cfg dict, class_names, epoch}`` (serialised in memory, so the
    bytes do not depend on the temporary file name)."""
    checkpoint = {
        "model": model.state_dict(), "config": cfg.to_dict(), "class_names": list(class_names), "epoch": int(epoch)
    }
    save_torch(path, checkpoint)


def load_cam_checkpoint(path: os.PathLike | str, device: str = "cpu") -> tuple[CAMNet, CAMConfig, tuple[str, ...], int]:
    """Rebuild a trained CAMNet (eval mode) -> (model, config, class_names, epoch). The backbone's
    ``weights`` file is not re-read: the checkpoint holds all weights."""
    path = Path(path)
    ckpt = load_torch(path, "CAM checkpoint", map_location=device)
    try:
        cfg = CAMConfig.from_params(ckpt["config"])
        cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, weights=None))
        class_names = tuple(ckpt["class_names"])
        model = build_cam_model(cfg, len(class_names)).to(device)
        model.load_state_dict(ckpt["model"])
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"cannot load CAM checkpoint ({type(exc).__name__}: {exc})") from exc
    return model.eval(), cfg, class_names, int(ckpt["epoch"])


# ------------------------------------------------------------------------------------------------------------------
# What trains the classifier: one registry entry per ``cam.supervision`` reading
# ------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CamSupervision:
    """One ``cam.supervision`` reading: how many class maps the net has, whether it trains on the boxes (then it
    has a background map too, and box + background cross-entropy terms: :mod:`a2gnn.seeds.box_cam`), how the
    training boxes' classes are relabelled, and how CAMs are read for an image's labels."""

    maps: typing.Callable[[int], int]  # num_classes (background included) -> class maps of the classifier
    by_box: bool  # trained on the boxes (background map last) rather than on the image labels
    relabel: typing.Callable[[np.ndarray], np.ndarray]  # training boxes (n, 5) rows x1 y1 x2 y2 class -> rows
    read: typing.Callable[..., np.ndarray]  # (model, image, annotation, labels, cfg, device) -> (K, H, W) CAMs


def _class_cams(model, image, annotation, labels, cfg, device):
    return compute_cams(model, image, labels, cfg, device)


def _objectness_cams(model, image, annotation, labels, cfg, device):
    objectness = compute_cams(model, image, [1], cfg, device)[0]  # the one "object" map
    return objectness_class_cams(objectness, annotation.boxes, labels)


CAM_SUPERVISIONS: Registry[CamSupervision] = Registry("CAM supervision")
"""``cam.supervision`` -> :class:`CamSupervision`: ``image`` (Eq. 1's image labels), ``boxes`` (each box with its
class) or ``objectness`` (the boxes as one class-agnostic "object" class, whose map each box gives its own class
at inference)."""
CAM_SUPERVISIONS.add("image", CamSupervision(lambda n: n - 1, False, lambda rows: rows, _class_cams))
CAM_SUPERVISIONS.add("boxes", CamSupervision(lambda n: n - 1, True, lambda rows: rows, _class_cams))
CAM_SUPERVISIONS.add("objectness", CamSupervision(lambda n: 1, True, as_object_boxes, _objectness_cams))
