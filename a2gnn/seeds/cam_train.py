"""Training of the CAM classifier (Eq. 1; SEAM's L_ER, PCM and L_ECR when ``cam.ecr_weight`` > 0; box
supervision when ``cam.supervision: boxes``): batches, losses, the resumable loop and the stage's job."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from a2gnn.data.transforms import normalize_image
from a2gnn.core.cli import progress
from a2gnn.data.voc import VOCDataset
from a2gnn.core.io import write_label
from a2gnn.seeds.box_cam import boxes_array, box_supervision_loss
from a2gnn.seeds.scores import save_cam_scores
from a2gnn.seeds.seam import cams_with_background, ecr_loss, pcm_refine
from a2gnn.core import distributed
from a2gnn.core.training import Checkpointer, digest_arrays, fingerprint, make_optimizer, make_schedule
from a2gnn.seeds.cam import (
    CAM_SUPERVISIONS,
    CAMConfig,
    CAMNet,
    CAM_EPS,
    build_cam_model,
    cam_seeds,
    confident_cam_seeds,
    image_cams,
    masked_gap,
    multi_hot,
    save_cam_checkpoint,
)
from a2gnn.seeds.cam_augment import augment, augment_with_boxes


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
    supervision = CAM_SUPERVISIONS[cfg.supervision]
    by_box = supervision.by_box
    boxes = [supervision.relabel(boxes_array(dataset.annotation(i).boxes)) for i in dataset.ids] if by_box else []
    model = build_cam_model(cfg, dataset.num_classes).to(device)
    optimizer = make_optimizer(model, cfg.optim, model.head_parameters())
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    schedule = make_schedule(optimizer, cfg.epochs * steps_per_epoch, cfg.optim)
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


def write_cam_outputs(
    model: CAMNet, dataset: VOCDataset, cfg: CAMConfig, out_dir: os.PathLike | str, device: str = "cpu"
) -> None:
    """For every image: ``out_dir/scores/<id>.npz`` and ``out_dir/M_I/<id>.png`` (Eq. 1).

    M_I is computed from the float16-rounded CAMs that are stored, so it equals
    ``cam_seeds(*load_cam_scores(...), bg_alpha)`` exactly."""
    out_dir = Path(out_dir)
    for image_id in progress(dataset.ids, desc="cam: infer", total=len(dataset)):
        image = dataset.image(image_id)
        cams, labels = image_cams(model, image, dataset.annotation(image_id), cfg, device)
        cams = cams.astype(np.float16)
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
