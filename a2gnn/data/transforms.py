"""Joint image / label-map transforms for training segmentation networks (torchvision references/segmentation
style): random rescale, horizontal flip and square crop, all drawn from one ``numpy.random.Generator``, so a
sample is a deterministic function of the generator's state.

Conventions (docs/ARCHITECTURE.md): images (H, W, 3) uint8 RGB, labels (H, W) uint8 with 255 = ignore.
Images are resized bilinearly, labels with nearest neighbour (class indices are never blended). A crop window
may extend past the image (an image smaller than the crop sits at a random position inside it): out-of-image
label cells are 255 (ignored by the loss) and out-of-image image cells are 0 *after*
:func:`normalize_image`, i.e. the ImageNet mean colour.

:func:`crop_window` / :func:`paste_window` are the crop of the affinity training (``a2gnn.affinity.train``
uses them). The CAM training (``a2gnn.seeds.cam_augment.augment``) keeps its own crop: it places a small image with
an offset drawn from ``[0, S - n]`` rather than ``[n - S, 0]``, so sharing this one would change its results.

Shapes: (H, W, 3) uint8, (H, W) uint8 -> (3, S, S) float32 normalised, (S, S) int64.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from a2gnn.core.io import IGNORE_INDEX


IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet on the [0, 1] scale (the normalisation every backbone expects)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet on the [0, 1] scale."""



def normalize_image(image: np.ndarray) -> Tensor:
    """RGB uint8 image (H, W, 3) -> float32 tensor (3, H, W), ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def crop_window(size: int, crop: int, rng: np.random.Generator) -> int:
    """Start of a random crop window in image coordinates (negative: the image sits inside padding)."""
    lo, hi = min(0, size - crop), max(0, size - crop)
    return int(rng.integers(lo, hi + 1))


def paste_window(src: np.ndarray, start_y: int, start_x: int, crop: int, fill) -> np.ndarray:
    """``crop x crop`` window of ``src`` starting at (start_y, start_x), out-of-image cells = ``fill``."""
    out = np.full((crop, crop) + src.shape[2:], fill, dtype=src.dtype)
    h, w = src.shape[:2]
    y0, x0 = max(start_y, 0), max(start_x, 0)
    y1, x1 = min(start_y + crop, h), min(start_x + crop, w)
    out[y0 - start_y : y1 - start_y, x0 - start_x : x1 - start_x] = src[y0:y1, x0:x1]
    return out


def random_scale(
    image: np.ndarray, label: np.ndarray, scale_range: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rescale both by one factor drawn uniformly from ``scale_range`` (image bilinear, label nearest)."""
    h, w = image.shape[:2]
    scale = rng.uniform(*scale_range)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return image, label
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return image, label


def random_flip(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of both with probability ``p``."""
    if rng.random() < p:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def random_crop(
    image: np.ndarray, label: np.ndarray, crop: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """Square ``crop`` window (see :func:`crop_window`) -> (normalised image (3, S, S), label (S, S) int64);
    padding: 0 in the normalised image (= mean colour), 255 in the label."""
    sy, sx = crop_window(image.shape[0], crop, rng), crop_window(image.shape[1], crop, rng)
    inside = torch.from_numpy(paste_window(np.ones(image.shape[:2], dtype=np.uint8), sy, sx, crop, 0)).bool()
    x = normalize_image(paste_window(image, sy, sx, crop, 0)) * inside
    y = torch.from_numpy(paste_window(label, sy, sx, crop, IGNORE_INDEX).astype(np.int64))
    return x, y


def train_transform(
    image: np.ndarray,
    label: np.ndarray,
    crop: int,
    scale_range: tuple[float, float],
    flip: bool,
    rng: np.random.Generator,
) -> tuple[Tensor, Tensor]:
    """DeepLab training sample: :func:`random_scale` -> :func:`random_flip` (if ``flip``) -> :func:`random_crop`.

    image (H, W, 3) uint8, label (H, W) uint8 -> ((3, crop, crop) float32, (crop, crop) int64)."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
    image, label = random_scale(image, label, scale_range, rng)
    if flip:
        image, label = random_flip(image, label, rng)
    return random_crop(image, label, crop, rng)
