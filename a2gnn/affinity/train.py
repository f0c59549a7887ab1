r"""Training of the affinity CNN on the confident seeds M_g (paper §4.3.1, Eq. 6-13; §5).

One step: random crop (+ flip) of a batch of images and their seeds -> F_A -> pairs within radius r on the
feature grid (half disc, each unordered pair once) -> L_Aff = L_Ac + λ L_Ar (Eq. 9). The optimiser is a param
(``affinity.optim``): the embedded default is Adam 1e-3 with a poly decay (the small net trains from scratch);
the authors' code uses SGD, momentum 0.9, poly learning rate with power 0.9, weight decay 5e-4, new layers at 10x
the base rate, which ``profiles/voc_paper.yaml`` selects (docs/deviations.md row 27). Colour jitter and random rescaling of
the authors' pipeline are not used.

Checkpoints are ``{"state_dict", "config", "epoch"}`` dicts; :func:`load_affinity` rebuilds the backbone from the
stored config (with ``weights`` cleared: the state_dict already holds the trained weights).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from a2gnn.affinity.losses import (
    AR_NORMALISATIONS,
    LABEL_DOWNSAMPLE_MODES,
    LOSS_WEIGHTINGS,
    affinity,
    affinity_ce_loss,
    affinity_labels,
    affinity_regularised_loss,
    affinity_total_loss,
    downsample_image,
    downsample_labels,
    feature_distance,
    pair_gaussian_kernel,
)
from a2gnn.affinity.model import AffinityNet
from a2gnn.data.labels import load_seed_pair
from a2gnn.backbones.base import BackboneConfig, build_backbone
from a2gnn.data.transforms import normalize_image
from a2gnn.core.cli import progress
from a2gnn.core.config import Config, ConfigError
from a2gnn.data.voc import VOCDataset
from a2gnn.core.io import IGNORE_INDEX, DataError, load_torch, save_torch
from a2gnn.ops.neighbours import neighbour_gather, neighbour_valid, radius_offsets
from a2gnn.core import distributed
from a2gnn.core.training import Checkpointer, OptimConfig, digest_files, fingerprint, make_optimizer, make_schedule
from a2gnn.data.transforms import crop_window, paste_window

log = logging.getLogger(__name__)

SEED_SOURCES = ("M_g", "M_F", "weak/affinity", "weak/gnn")  # outputs/seeds/<name>; weak/*: §7.1, stages/weak_seeds.py


@dataclasses.dataclass(frozen=True)
class AffinityConfig(Config):
    """``affinity`` section: the affinity CNN, its losses (Eq. 6-13) and its training schedule."""

    SECTION: typing.ClassVar[str] = "affinity"
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)  # backbone of F_A (paper: ResNet-38)
    radius: int = 5  # r of R_pair / R_Ar (Eq. 7, 11), in feature-grid cells
    lambda_ar: float = 3.0  # λ of Eq. (9), weight of L_Ar
    sigma_xy: float = 6.0  # σ_xy of G (Eq. 13), in feature-grid cells
    sigma_rgb: float = 0.1  # σ_rgb of G (Eq. 13), colours in [0, 1]
    kernel_squared_distance: bool = True  # Eq. 13 with squared distances (usual Gaussian); false = as printed
    ar_normalisation: str = "pairs"  # L_Ar (Eq. 12): "pairs" = mean over R_Ar; "sum" = printed sum per image
    reduce_channels: tuple[int, ...] = (32, 32, 64)  # 1x1 reductions of the three taps (paper §5: 64, 128, 256)
    embed_channels: int = 128  # d_A, channels of F_A (Eq. 8; paper §5: 448)
    label_downsample: str = "centre"  # M_g -> M'_g (Eq. 6): "centre" (nearest) | "majority" of the cell
    loss_weighting: str = "paper"  # L_Ac (Eq. 10): "paper" (A+ / A- means) | "psa" (bg+ 1/4, fg+ 1/4, neg 1/2)
    use_ar: bool = True  # include L_Ar (false: L_Aff = L_Ac, ablation)
    seeds: str = "M_g"  # which seeds supervise L_A: "M_g" (Eq. 5, paper) | "M_F" (Eq. 4, Table 4(e))
    epochs: int = 40  # training epochs over the train split (authors: 12 on VOC)
    batch_size: int = 8  # images per step (authors: 4)
    crop_size: int = 128  # square random crop (authors: 448) (padded with ignore), a multiple of backbone.stride
    flip: bool = True  # random horizontal flips
    # optimiser + poly schedule (authors: SGD, lr 0.01, momentum 0.9, weight decay 5e-4, power 0.9, new 1x1 layers 10x;
    # embedded default: Adam 1e-3, the small net trains from scratch)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)

    def validate(self) -> None:
        self.check(self.radius >= 1, "radius", ">= 1")
        self.check(self.lambda_ar >= 0, "lambda_ar", ">= 0")
        self.check(self.sigma_xy > 0, "sigma_xy", "> 0")
        self.check(self.sigma_rgb > 0, "sigma_rgb", "> 0")
        self.check(self.ar_normalisation in AR_NORMALISATIONS, "ar_normalisation", f"one of {AR_NORMALISATIONS}")
        self.check(
            len(self.reduce_channels) == 3 and all(c >= 1 for c in self.reduce_channels),
            "reduce_channels", "three positive channel counts",
        )
        self.check(self.embed_channels >= 1, "embed_channels", ">= 1")
        self.check(
            self.label_downsample in LABEL_DOWNSAMPLE_MODES, "label_downsample", f"one of {LABEL_DOWNSAMPLE_MODES}"
        )
        self.check(self.loss_weighting in LOSS_WEIGHTINGS, "loss_weighting", f"one of {LOSS_WEIGHTINGS}")
        self.check(self.seeds in SEED_SOURCES, "seeds", f"one of {SEED_SOURCES}")
        self.check(self.epochs >= 1, "epochs", ">= 1")
        self.check(self.batch_size >= 1, "batch_size", ">= 1")
        self.check(
            self.crop_size >= self.backbone.stride and self.crop_size % self.backbone.stride == 0,
            "crop_size", f"a positive multiple of backbone.stride ({self.backbone.stride})",
        )


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------


class AffinityBatch(NamedTuple):
    """One training batch (S = crop size, h = w = S / stride)."""

    x: Tensor  # (B, 3, S, S) normalised image crops (padding = 0)
    colours: Tensor  # (B, 3, h, w) Cor(.) of Eq. (13): crop colours in [0, 1], area-averaged onto the grid
    m_g: Tensor  # (B, h, w) int64 M'_g, 255 = unknown (and padding)
    valid: Tensor  # (B, h, w) bool, grid cell lies on the image (not on the crop's padding)


def make_batch(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    crop_size: int,
    stride: int,
    flip: bool,
    label_downsample: str = "centre",
) -> AffinityBatch:
    """Random flip + square crop of (image, seed) pairs, and their grid versions (see :class:`AffinityBatch`).

    Images smaller than the crop are placed at a random position inside it; padding is 0 after normalisation
    (the mean colour), 255 in the seeds and invalid in ``valid``.
    """
    xs, cols, seeds, valids = [], [], [], []
    grid = (crop_size // stride, crop_size // stride)
    for image, seed in pairs:
        if flip and rng.random() < 0.5:
            image, seed = image[:, ::-1], seed[:, ::-1]
        sy, sx = crop_window(image.shape[0], crop_size, rng), crop_window(image.shape[1], crop_size, rng)
        inside = paste_window(np.ones(image.shape[:2], dtype=np.uint8), sy, sx, crop_size, 0)
        img = paste_window(image, sy, sx, crop_size, 0)
        mask = torch.from_numpy(inside).bool()
        xs.append(normalize_image(img) * mask)
        cols.append(torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0))
        seeds.append(torch.from_numpy(paste_window(seed, sy, sx, crop_size, IGNORE_INDEX)))
        valids.append(mask)
    m_g = downsample_labels(torch.stack(seeds), grid, label_downsample)
    valid = downsample_labels(torch.stack(valids), grid, "centre").bool()
    return AffinityBatch(torch.stack(xs), downsample_image(torch.stack(cols), grid), m_g, valid)


# --------------------------------------------------------------------------------------------------------------
# Loss of one batch
# --------------------------------------------------------------------------------------------------------------


def training_offsets(radius: int) -> Tensor:
    """Pair offsets for training: half disc of radius r without (0, 0) (each unordered pair once)."""
    return radius_offsets(radius, include_self=False, half=True)


def affinity_batch_loss(
    model: AffinityNet, batch: AffinityBatch, cfg: AffinityConfig
) -> tuple[Tensor, dict[str, float]]:
    """L_Aff of Eq. (9) on one batch (tensors already on the model's device). Returns (loss, terms)."""
    offsets = training_offsets(cfg.radius)
    f_a, _ = model(batch.x)
    h, w = f_a.shape[-2:]
    if (h, w) != tuple(batch.m_g.shape[-2:]):
        raise ValueError(f"F_A grid {(h, w)} does not match the label grid {tuple(batch.m_g.shape[-2:])}")
    distance = feature_distance(f_a, offsets)  # (B, K, h, w)
    labels = affinity_labels(batch.m_g, offsets)
    l_ac = affinity_ce_loss(affinity(distance), labels, cfg.loss_weighting)
    if cfg.use_ar:
        kernel = pair_gaussian_kernel(batch.colours, offsets, cfg.sigma_xy, cfg.sigma_rgb, cfg.kernel_squared_distance)
        valid_j = neighbour_gather(batch.valid.unsqueeze(1).float(), offsets).squeeze(1).bool()
        in_grid = neighbour_valid(h, w, offsets).to(f_a.device)
        mask = batch.valid.unsqueeze(1) & valid_j & in_grid
        l_ar = affinity_regularised_loss(distance, kernel, mask, cfg.ar_normalisation, pair_multiplicity=2)
    else:
        l_ar = torch.zeros((), device=f_a.device)
    loss = affinity_total_loss(l_ac, l_ar, cfg.lambda_ar if cfg.use_ar else 0.0)
    return loss, {"loss": float(loss.detach()), "l_ac": float(l_ac.detach()), "l_ar": float(l_ar.detach())}


# --------------------------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------------------------


def build_affinity_net(cfg: AffinityConfig) -> AffinityNet:
    """AffinityNet on the configured backbone (loads ``cfg.backbone.weights`` if given)."""
    return AffinityNet(build_backbone(cfg.backbone), cfg.reduce_channels, cfg.embed_channels)


def fit_affinity(
    model: AffinityNet,
    load_pair: Callable[[int], tuple[np.ndarray, np.ndarray]],
    num_images: int,
    cfg: AffinityConfig,
    device: torch.device | str,
    seed: int,
    steps: int | None = None,
    checkpoint_dir: os.PathLike | str | None = None,
    run_id: typing.Any = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``num_images`` (image, seed) pairs given by ``load_pair(index)``.

    Deterministic for a given ``seed`` (data order, crops and flips from ``numpy.random.default_rng(seed)``,
    dropout from ``torch.manual_seed(seed)``). ``steps`` caps the number of optimiser steps (tests); the poly
    schedule runs over ``cfg.epochs`` epochs (or ``steps``). Returns the per-step loss terms (of this run:
    a resumed run returns those of the epochs it trained). With ``checkpoint_dir`` (e.g.
    ``checkpoints/affinity``, see :mod:`a2gnn.core.training`) the state is saved after every epoch and a rerun
    with the same config, seed, ``steps`` and ``run_id`` (e.g. the image ids) resumes from it.
    ``on_epoch(epoch, mean_loss)`` is called after each (saved) epoch.
    """
    if num_images < 1:
        raise ValueError("no training images")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg.optim, model.head_parameters())
    per_epoch = -(-num_images // cfg.batch_size)
    total = per_epoch * cfg.epochs if steps is None else steps
    schedule = make_schedule(optimizer, total, cfg.optim)
    ckpt = Checkpointer(
        checkpoint_dir, fingerprint(config=cfg.to_dict(), seed=seed, steps=total, n=num_images, run=run_id)
    )
    start, _ = ckpt.restore(model, optimizer, schedule, {"rng": rng})
    history: list[dict[str, float]] = []
    epochs = -(-total // per_epoch)
    bar = iter(progress(range(start * per_epoch, total), desc="affinity", total=total - start * per_epoch))
    for epoch in range(start, epochs):
        order = rng.permutation(num_images)
        recent: list[dict[str, float]] = []
        for begin in range(0, num_images, cfg.batch_size):
            step = next(bar, None)
            if step is None:
                break
            idx = order[begin : begin + cfg.batch_size]
            batch = make_batch(
                [load_pair(int(i)) for i in idx], rng, cfg.crop_size, model.stride, cfg.flip, cfg.label_downsample
            )
            share = distributed.rank_share(range(len(idx)))  # several processes: this rank's part of the batch
            schedule.apply()
            optimizer.zero_grad(set_to_none=True)
            if share:
                loss, terms = affinity_batch_loss(model, AffinityBatch(*(t[share].to(device) for t in batch)), cfg)
                loss.backward()
                recent.append(terms)
            # mean over ranks weighted by their share of the images (L_Aff averages pairs: close to the one-process
            # gradient, equal to it when every image contributes as many pairs)
            distributed.average_gradients(model, len(share) / len(idx))
            optimizer.step()
            schedule.step()
        history.extend(recent)
        log.info(
            "affinity step %d/%d: L_Aff %.4f (L_Ac %.4f, L_Ar %.4f)", schedule.last_step, total,
            *(float(np.mean([t[k] for t in recent])) for k in ("loss", "l_ac", "l_ar")),
        )
        distributed.broadcast_buffers(model)  # BatchNorm statistics: rank 0's on every rank (what gets saved)
        ckpt.save(epoch + 1, model, optimizer, schedule, {"rng": rng})
        if on_epoch is not None:
            on_epoch(epoch, float(np.mean([t["loss"] for t in recent])))
    return history


def check_seed_files(dataset: VOCDataset, seed_dir: os.PathLike | str) -> None:
    """DataError naming the first image of ``dataset`` whose ``seed_dir/<id>.png`` is missing."""
    for image_id in dataset.ids:
        path = Path(seed_dir) / f"{image_id}.png"
        if not path.is_file():
            raise DataError(path, "seed map is missing")


def train_affinity(
    dataset: VOCDataset,
    seed_dir: os.PathLike | str,
    cfg: AffinityConfig,
    device: torch.device | str,
    seed: int,
    checkpoint_dir: os.PathLike | str | None = None,
) -> AffinityNet:
    """Build the affinity CNN and train it on the dataset's images with the seeds in ``seed_dir/<id>.png``.

    Every seed file must exist (checked before training: a missing one raises DataError naming it).
    ``checkpoint_dir`` (e.g. ``checkpoints/affinity``): resumable per-epoch checkpoints, valid for the same
    config, seed, image files and seed files (:mod:`a2gnn.core.training`).
    """
    ids = list(dataset.ids)
    check_seed_files(dataset, seed_dir)
    torch.manual_seed(seed)
    model = build_affinity_net(cfg)
    run_id = None
    if checkpoint_dir is not None:
        files = [p for i in ids for p in (dataset.image_path(i), Path(seed_dir) / f"{i}.png")]
        run_id = {"ids": ids, "files": digest_files(files)}
    fit_affinity(
        model, lambda i: load_seed_pair(dataset, seed_dir, ids[i]), len(ids), cfg, device, seed,
        checkpoint_dir=checkpoint_dir, run_id=run_id,
    )
    return model.eval()


@dataclasses.dataclass(frozen=True)
class AffinityJob(distributed.StageJob):
    """One rank of the ``affinity`` stage."""

    seed_dir: str = ""
    out_model: str = ""
    cfg: AffinityConfig = dataclasses.field(default_factory=AffinityConfig)


def run_affinity_job(job: AffinityJob) -> None:
    """One rank of the stage: train; rank 0 saves the model and clears the resumable checkpoint. Run it through
    :func:`a2gnn.core.distributed.launch`."""
    from a2gnn.data.formats import open_dataset
    from a2gnn.core.training import clear_checkpoint

    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING, format="%(message)s")
    dataset = open_dataset(job.dataset, job.dataset.train_split, job.data_root)
    model = train_affinity(dataset, job.seed_dir, job.cfg, job.device, job.seed, checkpoint_dir=job.checkpoints)
    if distributed.is_main():
        save_affinity(model, job.cfg, job.cfg.epochs, job.out_model)
        clear_checkpoint(job.checkpoints)


# --------------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------------


def save_affinity(model: AffinityNet, cfg: AffinityConfig, epoch: int, path: os.PathLike | str) -> None:
    """Write ``{"state_dict", "config", "epoch"}`` atomically and byte-reproducibly (tensors moved to the CPU)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"state_dict": state, "config": cfg.to_dict(), "epoch": int(epoch)})


def load_affinity(path: os.PathLike | str, device: torch.device | str = "cpu") -> AffinityNet:
    """Rebuild an AffinityNet from a checkpoint of :func:`save_affinity` (eval mode, on ``device``).

    A missing, unreadable or mismatching checkpoint raises DataError naming the file.
    """
    path = Path(path)
    ckpt = load_torch(path, "affinity checkpoint")
    if not isinstance(ckpt, dict) or not {"state_dict", "config"} <= set(ckpt):
        raise DataError(path, "not an affinity checkpoint (needs 'state_dict' and 'config')")
    try:
        cfg = AffinityConfig.from_params(ckpt["config"])
    except ConfigError as exc:
        raise DataError(path, f"stored config is invalid ({exc})") from exc
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, weights=None))
    model = build_affinity_net(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit the stored architecture ({exc})") from exc
    return model.to(device).eval()
