"""The CAM classifier's training crops (Eq. 1's training, PSA / SEAM style): one random rescale, flip and
crop plan per image (:class:`CropPlan`), applied to the image and, with box supervision, to its boxes."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch
from torch import Tensor

from a2gnn.data.transforms import normalize_image
from a2gnn.seeds.box_cam import plan_boxes
from a2gnn.seeds.cam import CAMConfig


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
