r"""DeepLab-v2 (Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous
Convolution, and Fully Connected CRFs", TPAMI 2018, arXiv:1606.00915): the segmentation network of Table 1
(Deeplab-ResNet101, trained on the A²GNN pseudo labels; "w/ CRF" = dense-CRF post-processing).

**Head: DeepLab-v2 ASPP**, not torchvision's DeepLabV3 head. The paper's reference [14] is DeepLab-v2, whose
ASPP is a sum of parallel 3x3 atrous *classifiers* on the last backbone feature (rates 6, 12, 18, 24 at
output stride 8). The v3 head (atrous convs + image pooling + BatchNorm + a 1x1 fusion) is a later, stronger
network; using it would overstate the paper's setting. :class:`ASPP` computes, for the final tap :math:`F`,

.. math::
    \mathrm{logits} = \sum_{r \in \text{rates}} W_r *_r F + b_r

with :math:`*_r` a 3x3 convolution of dilation r. Logits at stride s are up-sampled bilinearly to the image
(training: the loss is taken at full resolution against labels with 255 = ignore; inference: softmax of the
up-sampled logits, arg-max, optionally a dense CRF over those probabilities, :mod:`a2gnn.ops.crf`).

Backbone: any :data:`a2gnn.backbones.base.BACKBONES` entry (``small`` from scratch on the CPU, ``resnet101`` as in
the paper, ``efficientnet_lite0`` with ``weights: imagenet``). Training: the joint random scale / flip / crop of
:mod:`a2gnn.data.transforms`; optimizer, poly schedule (``poly_power``) and resumable checkpoints from
:mod:`a2gnn.core.training` (DeepLab-v2: SGD, momentum 0.9, lr 2.5e-4, classifier at 10x, poly 0.9, weight decay 5e-4).

Defaults are the embedded CPU profile (the ``deeplab`` section of params.yaml equals them): ``small`` width 16,
rates (1, 2, 4, 6) (the embedded images give 16-24-cell feature grids, so VOC's rates would look mostly at
padding), Adam 1e-3 for 12 epochs of 128 px crops, batch 8, scale 0.7-1.3: about 85 CPU-seconds of training
(one thread) on the embedded train split, reaching 48.8 % val mIoU (53.7 % with CRF) on its ground truth.

Shapes: x (B, 3, H, W) -> logits (B, C, ceil(H / s), ceil(W / s)); :func:`predict_probs`: image (H, W, 3)
uint8 -> (C, H, W) float32 probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import typing
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a2gnn.backbones.base import Backbone, BackboneConfig, build_backbone
from a2gnn.data.transforms import normalize_image
from a2gnn.core.cli import progress
from a2gnn.core.config import PSEUDO_LABEL_METHODS, Config, ConfigError
from a2gnn.ops.crf import CRFConfig, crf_labels_job
from a2gnn.data.segmentation import SegmentationDataset
from a2gnn.evaluation.confusion import ConfusionMatrix
from a2gnn.core.io import IGNORE_INDEX, DataError, load_torch, save_torch
from a2gnn.core.parallel import parallel_map
from a2gnn.core import distributed
from a2gnn.core.training import Checkpointer, OptimConfig, digest_arrays, fingerprint, make_optimizer, make_schedule
from a2gnn.data.transforms import train_transform

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DeepLabConfig(Config):
    """``deeplab`` section: the segmentation network of Table 1, its training and evaluation."""

    SECTION: typing.ClassVar[str] = "deeplab"
    labels: str = "a2gnn"  # train on outputs/pseudo_labels_<labels>: a2gnn | rw | baseline | grabcut | boxes
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)  # paper: ResNet-101 (ImageNet)
    aspp_rates: tuple[int, ...] = (1, 2, 4, 6)  # atrous rates of the ASPP classifiers (DeepLab-v2: 6, 12, 18, 24)
    epochs: int = 12  # training epochs over the train split (DeepLab-v2 VOC: 20k iterations of batch 10)
    batch_size: int = 8  # images per step (DeepLab-v2: 10)
    crop_size: int = 128  # square random crop, padded with ignore / mean colour (DeepLab-v2: 321)
    scale_range: tuple[float, float] = (0.7, 1.3)  # random rescale factor range (DeepLab-v2: 0.5-1.5)
    flip: bool = True  # random horizontal flip
    # optimiser + poly schedule (DeepLab-v2: SGD, lr 2.5e-4 on ImageNet weights, momentum 0.9, weight decay 5e-4,
    # power 0.9, ASPP classifiers 10x)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    val_every: int = 3  # evaluate val mIoU (logged, dvclive) every this many epochs (and after the last); 0 = never

    def validate(self) -> None:
        self.check(len(self.aspp_rates) >= 1 and all(r >= 1 for r in self.aspp_rates), "aspp_rates",
                   "a non-empty list of rates >= 1")
        self.check(self.epochs >= 1, "epochs", ">= 1")
        self.check(self.batch_size >= 1, "batch_size", ">= 1")
        self.check(self.crop_size >= self.backbone.stride, "crop_size", f">= backbone.stride ({self.backbone.stride})")
        self.check(len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1], "scale_range",
                   "[lo, hi] with 0 < lo <= hi")
        self.check(self.val_every >= 0, "val_every", ">= 0")
        self.check(self.labels in PSEUDO_LABEL_METHODS, "labels", f"one of {PSEUDO_LABEL_METHODS}")


class ASPP(nn.Module):
    """DeepLab-v2 atrous spatial pyramid pooling: sum of 3x3 classifiers of dilation r over ``rates``.

    Shapes: (B, C_in, h, w) -> (B, num_classes, h, w)."""

    def __init__(self, in_channels: int, num_classes: int, rates: typing.Sequence[int]):
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in self.rates
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.branches:  # DeepLab-v2: N(0, 0.01) classifiers, zero bias
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLab(nn.Module):
    """Backbone (final tap) -> ASPP. ``forward`` returns stride-s logits; :meth:`upsampled` full-size ones."""

    def __init__(self, backbone: Backbone, num_classes: int, rates: typing.Sequence[int]):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = ASPP(backbone.tap_channels[2], num_classes, rates)

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x)[2])

    def upsampled(self, x: Tensor) -> Tensor:
        """Logits bilinearly up-sampled by the stride and cropped to x's size: (B, C, H, W)."""
        return upsample_logits(self(x), self.stride, x.shape[2:])


def upsample_logits(logits: Tensor, stride: int, size: typing.Sequence[int]) -> Tensor:
    """(B, C, h, w) logits -> bilinearly up-sampled by ``stride`` and cropped to ``size`` = (H, W)."""
    h, w = logits.shape[2:]
    logits = F.interpolate(logits, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    return logits[:, :, : size[0], : size[1]]


def build_deeplab(cfg: DeepLabConfig, num_classes: int) -> DeepLab:
    """DeepLab over ``num_classes`` classes (background included) on ``cfg.backbone`` (loads its weights)."""
    return DeepLab(build_backbone(cfg.backbone), num_classes, cfg.aspp_rates)


# ------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------
def train_deeplab(
    train: SegmentationDataset,
    cfg: DeepLabConfig,
    device: str = "cpu",
    seed: int = 0,
    val: SegmentationDataset | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_dir: os.PathLike | str | None = None,
) -> DeepLab:
    """Train DeepLab with per-pixel cross-entropy (255 ignored) on ``train``; returns it in eval mode.

    Deterministic for a given ``seed`` (init, order, augmentation). After each epoch ``on_epoch(epoch, logs)``
    gets ``{"loss": mean train loss}`` plus ``"val_miou"`` every ``cfg.val_every`` epochs when ``val`` is
    given. ``checkpoint_dir`` (e.g. ``checkpoints/train_deeplab``): resume as in :mod:`a2gnn.core.training`.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    samples = [train.sample(i) for i in train.ids]
    model = build_deeplab(cfg, train.num_classes).to(device)
    optimizer = make_optimizer(model, cfg.optim, model.head_parameters())
    steps_per_epoch = math.ceil(len(samples) / cfg.batch_size)
    schedule = make_schedule(optimizer, cfg.epochs * steps_per_epoch, cfg.optim)
    data = digest_arrays([a for pair in samples for a in pair])
    ckpt = Checkpointer(checkpoint_dir, fingerprint(config=cfg.to_dict(), seed=seed, ids=train.ids, data=data))
    start, _ = ckpt.restore(model, optimizer, schedule, {"rng": rng})
    net = distributed.wrap_ddp(model)  # several processes: each takes its share of every batch
    for epoch in progress(range(start, cfg.epochs), desc="deeplab: train", total=cfg.epochs - start):
        model.train()
        order = rng.permutation(len(samples))
        losses = []
        for b in range(steps_per_epoch):
            batch = [train_transform(*samples[i], cfg.crop_size, cfg.scale_range, cfg.flip, rng)
                     for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            x = torch.stack([s[0] for s in batch]).to(device)
            y = torch.stack([s[1] for s in batch]).to(device)
            schedule.apply()
            # sum over this rank's pixels / the whole batch's labelled pixels: DDP's mean over ranks times the
            # world size is then exactly the one-process loss (mean over the batch's labelled pixels)
            labelled = (y != IGNORE_INDEX).sum().clamp(min=1)
            mine = distributed.rank_share(range(len(batch)))
            logits = upsample_logits(net(x[mine]), model.stride, x.shape[2:])
            loss = F.cross_entropy(logits, y[mine], ignore_index=IGNORE_INDEX, reduction="sum")
            loss = loss * distributed.world_size() / labelled
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        logs = distributed.all_mean({"loss": float(np.mean(losses))})  # collective: every rank
        if val is not None and cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            if distributed.is_main():
                logs["val_miou"] = evaluate_deeplab(model, val, device=device)["miou"].miou()
        ckpt.save(epoch + 1, model, optimizer, schedule, {"rng": rng})
        if distributed.is_main():
            log.info("deeplab epoch %d/%d: %s", epoch + 1, cfg.epochs, logs)
            if on_epoch is not None:
                on_epoch(epoch, logs)
    return model.eval()


@dataclasses.dataclass(frozen=True)
class TrainJob(distributed.StageJob):
    """One rank of the ``train_deeplab`` stage."""

    label_dir: str = ""  # folder of <id>.png label maps, or "gt"
    out_model: str = ""
    live_dir: str = ""
    cfg: DeepLabConfig = dataclasses.field(default_factory=DeepLabConfig)


def run_train_job(job: TrainJob) -> None:
    """One rank of the stage: train on the job's labels; rank 0 also logs loss and val mIoU (dvclive), saves the
    weights and clears the resumable checkpoint. Run it through :func:`a2gnn.core.distributed.launch`."""
    from a2gnn.data.formats import open_dataset
    from a2gnn.data.segmentation import GT_LABELS
    from a2gnn.core.training import CHECKPOINT_FILE, clear_checkpoint, live_curves

    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING, format="%(message)s")
    train = SegmentationDataset(open_dataset(job.dataset, job.dataset.train_split, job.data_root), job.label_dir)
    val_reader = open_dataset(job.dataset, job.dataset.val_split, job.data_root)
    # the per-epoch val mIoU curve needs val ground truth; boxes only: no curve
    val = None if val_reader.missing_ground_truth("semantic") else SegmentationDataset(val_reader, GT_LABELS)
    if not distributed.is_main():
        train_deeplab(train, job.cfg, job.device, job.seed, None, None, job.checkpoints)
        return
    # the curves continue only when the training does (a checkpoint of an interrupted run); else start afresh
    resume = (Path(job.checkpoints) / CHECKPOINT_FILE).is_file()
    with live_curves(job.live_dir, "train_deeplab", resume) as log_epoch:
        model = train_deeplab(train, job.cfg, job.device, job.seed, val, log_epoch, job.checkpoints)
    save_deeplab(job.out_model, model, job.cfg, train.class_names)
    clear_checkpoint(job.checkpoints)


# ------------------------------------------------------------------------------------------------------------
# Inference and evaluation
# ------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_probs(model: DeepLab, image: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Softmax of the full-size logits of one whole image: (H, W, 3) uint8 -> (C, H, W) float32."""
    model.eval()
    x = normalize_image(image)[None].to(device)
    return torch.softmax(model.upsampled(x)[0], dim=0).cpu().numpy().astype(np.float32)


def evaluate_deeplab(
    model: DeepLab,
    dataset: SegmentationDataset,
    crf: CRFConfig | None = None,
    device: str = "cpu",
    workers: int = 0,
) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of the arg-max prediction (``"miou"``) and, with ``crf``, of the dense-CRF-refined
    prediction (``"miou_crf"``) against ``dataset``'s labels (255 ignored). CRFs run in ``workers`` processes."""
    results = {"miou": ConfusionMatrix(dataset.num_classes)}
    jobs, labels = [], []
    for image_id in progress(dataset.ids, desc="deeplab: predict", total=len(dataset)):
        image, label = dataset.sample(image_id)
        probs = predict_probs(model, image, device)
        results["miou"].update(label, probs.argmax(axis=0))
        if crf is not None:
            jobs.append((image, probs, crf))
            labels.append(label)
    if crf is not None:
        results["miou_crf"] = ConfusionMatrix(dataset.num_classes)
        for label, pred in zip(labels, parallel_map(crf_labels_job, jobs, workers)):
            results["miou_crf"].update(label, pred)
    return results


# ------------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------------
def save_deeplab(path: os.PathLike | str, model: DeepLab, cfg: DeepLabConfig, class_names: typing.Sequence[str]) -> None:
    """Write ``{"model", "config", "class_names"}`` atomically and byte-reproducibly (tensors on the CPU)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"model": state, "config": cfg.to_dict(), "class_names": list(class_names)})


def load_deeplab(path: os.PathLike | str, device: str = "cpu") -> tuple[DeepLab, DeepLabConfig, tuple[str, ...]]:
    """Rebuild a trained DeepLab (eval mode) -> (model, config, class_names); errors name the file."""
    path = Path(path)
    ckpt = load_torch(path, "DeepLab checkpoint", map_location=device)
    if not isinstance(ckpt, dict) or not {"model", "config", "class_names"} <= set(ckpt):
        raise DataError(path, "not a DeepLab checkpoint (needs 'model', 'config' and 'class_names')")
    try:
        cfg = DeepLabConfig.from_params(ckpt["config"])
    except ConfigError as exc:
        raise DataError(path, f"stored config is invalid ({exc})") from exc
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, weights=None))
    class_names = tuple(ckpt["class_names"])
    model = build_deeplab(cfg, len(class_names))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit the stored architecture ({exc})") from exc
    return model.to(device).eval(), cfg, class_names

