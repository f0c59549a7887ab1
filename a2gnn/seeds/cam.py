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
import math
import os
import typing
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a2gnn.backbones.base import Backbone, BackboneConfig, build_backbone
from a2gnn.data.transforms import normalize_image
from a2gnn.core.cli import progress
from a2gnn.core.config import Config
from a2gnn.ops.crf import CRFConfig, dense_crf
from a2gnn.data.voc import VOCDataset
from a2gnn.core.io import IGNORE_INDEX, DataError, load_torch, save_torch, write_label
from a2gnn.seeds.box_cam import box_probabilities, boxes_array, box_supervision_loss, plan_boxes
from a2gnn.seeds.scores import load_cam_scores, save_cam_scores, with_background  # noqa: F401  (re-exported)
from a2gnn.seeds.seam import cams_with_background, ecr_loss, pcm_refine
from a2gnn.core import distributed
from a2gnn.core.training import (
    OPTIMIZERS,
    Checkpointer,
    PolySchedule,
    build_optimizer,
    digest_arrays,
    fingerprint,
    param_groups,
)

CAM_EPS = 1e-5
"""Added to each class's maximum before dividing (CAM normalisation, as in SEAM)."""


CAM_SUPERVISION = ("image", "boxes")
"""What trains the classifier: Eq. (1)'s image labels, or the boxes (:mod:`a2gnn.seeds.box_cam`)."""


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
    optimizer: str = "adam"  # "sgd" (momentum; PSA/SEAM) | "adam" | "adamw"
    lr: float = 1e-3  # base learning rate, decayed by the poly schedule (SGD from scratch: ~0.05)
    lr_power: float = 0.9  # poly schedule: lr * (1 - step / steps) ** lr_power (PSA/SEAM)
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 5e-4  # L2 weight decay (PSA/SEAM: 5e-4)
    dropout: float = 0.0  # channel dropout on the final tap before the classifier (training only)
    crop_size: int = 128  # side of the square training canvas; larger images are randomly cropped,
    #                       smaller ones placed at a random offset; padding is excluded from pooling
    scale_range: tuple[float, float] = (0.9, 1.1)  # random rescale factor range for training
    flip: bool = True  # random horizontal flip in training
    supervision: str = "image"  # what trains the classifier: image = Eq. 1's image labels | boxes (box_cam.py)
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
        self.check(self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS.names()}")
        self.check(self.lr > 0, "lr", "> 0")
        self.check(self.lr_power >= 0, "lr_power", ">= 0")
        self.check(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        self.check(self.weight_decay >= 0, "weight_decay", ">= 0")
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
        self.check(self.supervision in CAM_SUPERVISION, "supervision", f"one of {sorted(CAM_SUPERVISION)}")
        self.check(self.background_weight >= 0, "background_weight", ">= 0")
        self.check(self.supervision == "image" or self.equivariance_weight == 0, "equivariance_weight",
                   "0 under supervision: boxes (L_ER is defined for image labels)")
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


@dataclasses.dataclass(frozen=True)
class CropPlan:
    """One random training view: rescaled size, flip, and per axis (rows, cols) the source and canvas slices."""

    size: tuple[int, int]  # (nh, nw) after the rescale
    flip: bool
    src: tuple[slice, slice]
    dst: tuple[slice, slice]


def crop_plan(height: int, width: int, cfg: CAMConfig, rng: np.random.Generator) -> CropPlan:
    """Draw a rescale in ``scale_range``, a flip and, per axis, a crop (side > crop_size) or a placement offset."""
    scale = rng.uniform(*cfg.scale_range)
    nh, nw = max(1, round(height * scale)), max(1, round(width * scale))
    flip = bool(cfg.flip and rng.random() < 0.5)
    size = cfg.crop_size
    src, dst = [], []
    for n in (nh, nw):
        offset = int(rng.integers(0, abs(n - size) + 1))
        if n > size:  # crop a window of the image
            src.append(slice(offset, offset + size))
            dst.append(slice(0, size))
        else:  # place the whole image on the canvas
            src.append(slice(0, n))
            dst.append(slice(offset, offset + n))
    return CropPlan((nh, nw), flip, (src[0], src[1]), (dst[0], dst[1]))


def augment(image: np.ndarray, cfg: CAMConfig, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """One training sample: random rescale and flip, then random crop / pad to crop_size.

    Per axis, a side longer than crop_size is cropped at a random offset (a crop may cut an object
    out while its image label stays, as in PSA/SEAM's random crops), a shorter one is placed at a
    random offset on a zero (= mean colour) canvas and marked invalid for pooling.

    image (H, W, 3) uint8 -> (normalised image (3, S, S) with zero padding, valid mask (1, S, S))."""
    return apply_plan(image, crop_plan(*image.shape[:2], cfg, rng), cfg.crop_size)


def augment_with_boxes(image: np.ndarray, boxes: np.ndarray, cfg: CAMConfig, rng: np.random.Generator
                       ) -> tuple[Tensor, Tensor, np.ndarray]:
    """:func:`augment` that also carries the boxes (n, 5) into the view -> (canvas, valid, boxes (m, 5))."""
    plan = crop_plan(*image.shape[:2], cfg, rng)
    canvas, valid = apply_plan(image, plan, cfg.crop_size)
    return canvas, valid, plan_boxes(boxes, image.shape[:2], plan)


def apply_plan(image: np.ndarray, plan: CropPlan, size: int) -> tuple[Tensor, Tensor]:
    """image (H, W, 3) uint8 -> (normalised canvas (3, S, S), valid (1, S, S)) under ``plan``."""
    nh, nw = plan.size
    if (nh, nw) != image.shape[:2]:
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if plan.flip:
        image = image[:, ::-1]
    x = normalize_image(image)
    canvas = torch.zeros(3, size, size)
    valid = torch.zeros(1, size, size)
    canvas[:, plan.dst[0], plan.dst[1]] = x[:, plan.src[0], plan.src[1]]
    valid[:, plan.dst[0], plan.dst[1]] = 1.0
    return canvas, valid


def _masked_max_norm(maps: Tensor, weight: Tensor) -> Tensor:
    """maps (B, K, h, w) >= 0 divided by their per-(image, class) maximum over the valid area."""
    peak = (maps * (weight > 0)).flatten(2).amax(dim=2)
    return maps / (peak[:, :, None, None] + CAM_EPS)


def equivariance_loss(maps: Tensor, maps_small: Tensor, target: Tensor, valid_small: Tensor) -> Tensor:
    r"""SEAM's equivariant regularisation for a rescale A: :math:`L_{ER} = \| A(\hat y) - \hat y_A \|_1`.

    ``maps`` are the class maps of the batch, ``maps_small`` those of the batch rescaled by A
    (each before ReLU); both are ReLU'd and max-normalised per image and class (SEAM normalises
    before comparing), ``maps`` is resized bilinearly to the small grid, and the absolute difference
    is averaged over the valid cells of the classes present in each image.

    Shapes: maps (B, K, h, w), maps_small (B, K, h', w'), target (B, K) in {0, 1},
    valid_small (B, 1, H', W') (the rescaled padding mask) -> scalar.
    """
    weight = F.interpolate(valid_small, size=maps_small.shape[2:], mode="area")
    small = _masked_max_norm(torch.relu(maps_small), weight)
    big = F.interpolate(torch.relu(maps), size=maps_small.shape[2:], mode="bilinear", align_corners=False)
    big = _masked_max_norm(big, weight)
    mask = weight * target[:, :, None, None]
    return ((big - small).abs() * mask).sum() / mask.sum().clamp_min(CAM_EPS)


def build_cam_model(cfg: CAMConfig, num_classes: int) -> CAMNet:
    """CAMNet over ``num_classes - 1`` foreground classes (class 0 = background has no output)."""
    if num_classes < 2:
        raise ValueError("need background plus at least one foreground class")
    return CAMNet(build_backbone(cfg.backbone), num_classes - 1, cfg.dropout, background=cfg.supervision == "boxes",
                  pcm_channels=cfg.pcm_channels if cfg.ecr_weight > 0 else 0)


def train_cam_model(
    dataset: VOCDataset,
    cfg: CAMConfig,
    device: str = "cpu",
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint_dir: os.PathLike | str | None = None,
) -> CAMNet:
    """Train the classifier on every image of ``dataset`` with multi-label BCE; returns it in eval mode.

    Deterministic for a given ``seed`` (model init, shuffling, augmentation and dropout are all
    seeded from it). ``on_epoch(epoch, mean_loss)`` is called after each epoch. With ``checkpoint_dir``
    (e.g. ``checkpoints/cam``, see :mod:`a2gnn.core.training`) the state is saved after every epoch and a rerun
    of the same config, seed and images resumes from it, reaching the same weights.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = [dataset.image(i) for i in dataset.ids]
    targets = torch.from_numpy(
        np.stack([multi_hot(dataset.annotation(i).image_labels, dataset.num_classes) for i in dataset.ids])
    )
    by_box = cfg.supervision == "boxes"
    boxes = [boxes_array(dataset.annotation(i).boxes) for i in dataset.ids] if by_box else []
    model = build_cam_model(cfg, dataset.num_classes).to(device)
    optimizer = build_optimizer(param_groups(model, cfg.lr), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    schedule = PolySchedule(optimizer, cfg.epochs * steps_per_epoch, cfg.lr_power)
    ckpt = Checkpointer(checkpoint_dir, fingerprint(
        config=cfg.to_dict(), seed=seed, ids=list(dataset.ids), data=digest_arrays([*images, targets.numpy(), *boxes])
    ))
    start, _ = ckpt.restore(model, optimizer, schedule, {"rng": rng})
    model.train()
    for epoch in progress(range(start, cfg.epochs), desc="cam: train", total=cfg.epochs - start):
        order = rng.permutation(len(images))
        losses = []
        for b in range(steps_per_epoch):
            batch = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            # every rank draws the whole batch's crops
            samples = [augment_with_boxes(images[i], boxes[i], cfg, rng) if by_box else augment(images[i], cfg, rng)
                       for i in batch]
            share = distributed.rank_share(range(len(batch)))  # ... and keeps its part (all of it in one process)
            schedule.apply()
            optimizer.zero_grad(set_to_none=True)
            if share:
                mine = [samples[k] for k in share]
                loss = (box_cam_batch_loss(model, mine, cfg, device) if by_box
                        else cam_batch_loss(model, mine, targets[batch[share]], cfg, device))
                loss.backward()
                losses.append(float(loss.detach()))
            distributed.average_gradients(model, len(share) / len(batch))  # the whole batch's mean gradient
            optimizer.step()
            schedule.step()
        distributed.broadcast_buffers(model)  # BatchNorm statistics: rank 0's on every rank (what gets saved)
        ckpt.save(epoch + 1, model, optimizer, schedule, {"rng": rng})
        if on_epoch is not None:
            on_epoch(epoch, float(np.mean(losses)))
    return model.eval()


def cam_batch_loss(model: CAMNet, samples: Sequence[tuple[Tensor, Tensor]], target: Tensor, cfg: CAMConfig,
                   device: str = "cpu") -> Tensor:
    """Multi-label BCE of the masked-GAP logits (+ SEAM's scale branch and L_ER when ``equivariance_weight``).

    Shapes: samples: (image (3, S, S), valid (1, S, S)) pairs from :func:`augment`; target (B, K_fg) 0/1."""
    x = torch.stack([s[0] for s in samples]).to(device)
    valid = torch.stack([s[1] for s in samples]).to(device)
    target = target.to(device)
    seam = cfg.ecr_weight > 0
    maps, theta = model.maps_and_theta(x) if seam else (model.class_maps(x), None)
    loss = F.binary_cross_entropy_with_logits(masked_gap(maps, valid), target)
    if cfg.equivariance_weight > 0:
        size = [max(1, round(n * cfg.equivariance_scale)) for n in x.shape[2:]]
        x_small = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        valid_small = F.interpolate(valid, size=size, mode="area")
        maps_small, theta_small = model.maps_and_theta(x_small) if seam else (model.class_maps(x_small), None)
        loss = loss + F.binary_cross_entropy_with_logits(masked_gap(maps_small, valid_small), target)
        loss = loss + cfg.equivariance_weight * equivariance_loss(maps, maps_small, target, valid_small)
        if seam:
            loss = loss + cfg.ecr_weight * seam_ecr_term(maps, theta, maps_small, theta_small, target, valid_small)
    return loss


def seam_ecr_term(maps: Tensor, theta: Tensor, maps_small: Tensor, theta_small: Tensor, target: Tensor,
                  valid_small: Tensor) -> Tensor:
    """SEAM's L_ECR (:func:`a2gnn.seeds.seam.ecr_loss`) of the two branches: CAMs with background
    (:func:`~a2gnn.seeds.seam.cams_with_background`) refined by the PCM, over the small branch's valid cells of the
    background and the image's classes. Shapes: maps (B, K, h, w), theta (B, D, h, w), the small branch's
    (B, K, h', w') / (B, D, h', w'), target (B, K), valid_small (B, 1, H', W')."""
    cams, cams_small = cams_with_background(maps), cams_with_background(maps_small)
    weight = F.interpolate(valid_small, size=maps_small.shape[2:], mode="area")
    present = torch.cat([torch.ones_like(target[:, :1]), target], dim=1)[:, :, None, None]
    return ecr_loss(cams, pcm_refine(cams, theta), cams_small, pcm_refine(cams_small, theta_small), weight * present)


def box_cam_batch_loss(model: CAMNet, samples: Sequence[tuple[Tensor, Tensor, np.ndarray]], cfg: CAMConfig,
                       device: str = "cpu") -> Tensor:
    """``supervision: boxes`` loss of a batch (:func:`a2gnn.seeds.box_cam.box_supervision_loss`).

    Shapes: samples: (image (3, S, S), valid (1, S, S), boxes (n, 5)) from :func:`augment_with_boxes`."""
    x = torch.stack([s[0] for s in samples]).to(device)
    valid = torch.stack([s[1] for s in samples]).to(device)
    return box_supervision_loss(model.class_maps(x), valid, [s[2] for s in samples], cfg.background_weight)


@torch.no_grad()
def evaluate_bce(model: CAMNet, dataset: VOCDataset, device: str = "cpu") -> float:
    """Mean multi-label BCE of ``model`` (eval mode, whole un-augmented images) over ``dataset``."""
    model.eval()
    losses = []
    for image_id in dataset.ids:
        x = normalize_image(dataset.image(image_id))[None].to(device)
        target = torch.from_numpy(multi_hot(dataset.annotation(image_id).image_labels, dataset.num_classes))
        losses.append(float(F.binary_cross_entropy_with_logits(model(x)[0], target.to(device))))
    return float(np.mean(losses))


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


def write_cam_outputs(
    model: CAMNet, dataset: VOCDataset, cfg: CAMConfig, out_dir: os.PathLike | str, device: str = "cpu"
) -> None:
    """For every image: ``out_dir/scores/<id>.npz`` and ``out_dir/M_I/<id>.png`` (Eq. 1).

    M_I is computed from the float16-rounded CAMs that are stored, so it equals
    ``cam_seeds(*load_cam_scores(...), bg_alpha)`` exactly."""
    out_dir = Path(out_dir)
    for image_id in progress(dataset.ids, desc="cam: infer", total=len(dataset)):
        labels = dataset.annotation(image_id).image_labels
        image = dataset.image(image_id)
        cams = compute_cams(model, image, labels, cfg, device).astype(np.float16)
        save_cam_scores(out_dir / "scores" / f"{image_id}.npz", cams, labels)
        if cfg.seed_confidence > 0:
            seeds = confident_cam_seeds(image, cams.astype(np.float32), labels, cfg.bg_alpha,
                                        cfg.seed_crf, cfg.seed_confidence)
        else:
            seeds = cam_seeds(cams.astype(np.float32), labels, cfg.bg_alpha)
        write_label(out_dir / "M_I" / f"{image_id}.png", seeds)


@dataclasses.dataclass(frozen=True)
class CAMJob(distributed.StageJob):
    """One rank of the ``cam`` stage."""

    out_dir: str = ""
    cfg: CAMConfig = dataclasses.field(default_factory=CAMConfig)


def run_cam_job(job: CAMJob) -> None:
    """One rank of the stage: train the classifier; rank 0 then writes model, CAMs and M_I (one atomic folder)
    and clears the resumable checkpoint. Run it through :func:`a2gnn.core.distributed.launch`."""
    import sys

    from a2gnn.data.formats import open_dataset
    from a2gnn.core.io import atomic_dir
    from a2gnn.core.training import clear_checkpoint

    dataset = open_dataset(job.dataset, job.dataset.train_split, job.data_root)
    cfg = job.cfg

    def report(epoch: int, loss: float) -> None:
        if distributed.is_main():
            print(f"cam: epoch {epoch + 1}/{cfg.epochs} BCE loss {loss:.4f}", file=sys.stderr)

    model = train_cam_model(dataset, cfg, job.device, job.seed, on_epoch=report, checkpoint_dir=job.checkpoints)
    if not distributed.is_main():
        return
    with atomic_dir(job.out_dir) as tmp:
        save_cam_checkpoint(tmp / "model.pt", model, cfg, dataset.class_names, cfg.epochs)
        write_cam_outputs(model, dataset, cfg, tmp, job.device)
    clear_checkpoint(job.checkpoints)
