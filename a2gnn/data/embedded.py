"""The embedded default dataset: a deterministic, box-supervised test bed in the VOC layout.

No real data ships with the repository, so the default pipeline runs on images generated here.
They are built to exercise box supervision honestly (paper §3: GrabCut seeds M_B, Eq. 2-3; MP
loss, Eq. 23-26), not to be solved by a colour threshold:

* **Classes** (``EmbeddedConfig.classes``, any subset of :data:`SHAPES`): ``disc``, ``triangle``,
  ``ring`` (an annulus: its hole is background inside the box), ``star``, ``cross`` and ``crescent``.
  Each class has its own shape **and** texture (:data:`SHAPE_SPECS`: stripes, dots, checker, hatch,
  concentric waves, gradient) and a hue range centred on its own hue. Neighbouring hue ranges
  overlap, and background clutter takes any hue, so colour alone does not identify a class or
  separate it from the background.
* **Several objects per image** (``min_objects .. max_objects``), each a random similarity +
  anisotropic stretch of its shape, painted in order: a later object hides an earlier one. The
  instance map keeps only the visible part of each object, an object whose visible part is smaller
  than ``min_visible_fraction`` of its in-image area (or ``min_visible_pixels``) is dropped
  (not painted at all), and every box is the *tight* box of the visible part (so "box tightness"
  holds: each box row and column contains a pixel of its object, as the MP loss assumes; with an
  ignore band, the box is that of the visible part before the band is cut out).
  Non-rectangular shapes fill only part of their box.
* **Cluttered background**: a colour gradient, low-frequency colour noise, textured irregular blobs
  and strokes, all of random hue; then mild Gaussian blur and pixel noise on the whole image, and
  JPEG compression.

Ground truth (per image ``<id>``, 0-based half-open boxes in memory, VOC 1-based inclusive in XML):

* ``SegmentationClass/<id>.png``: class index per pixel, 0 = background. With
  ``boundary_ignore = b > 0``, pixels within ``b`` px of a boundary between two different instance
  values (background included) are 255 = ignore, like VOC's void band; the default 0 gives exact labels.
* ``SegmentationObject/<id>.png``: ``k`` on the visible pixels of the k-th ``<object>`` of the XML
  (1-based, painting order), 0 background, 255 on the same ignore band.
* ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``, ``ImageSets/Segmentation/{train,val}.txt``,
  ``classes.txt`` (background first), and the stamp ``embedded.json`` (the config that made it).

Determinism: image ``i`` of split ``s`` draws everything from ``numpy.random.default_rng((seed, s, i))``;
files are written with fixed encoder settings (PIL JPEG without optimisation or progressive mode, PNG
palette labels via :func:`a2gnn.core.io.encode_label_png`, XML from a fixed template), so the same config
gives byte-identical files.

CLI::

    python -m a2gnn.data.embedded --params params.yaml --out data [--force]
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from a2gnn.core.config import Config, ConfigError, load_params
from a2gnn.data.voc import Box
from a2gnn.core.io import IGNORE_INDEX, atomic_dir, encode_label_png

GENERATOR_VERSION = 1
"""Bumped whenever the drawing code changes, so an old ``embedded.json`` stamp no longer matches."""

STAMP_NAME = "embedded.json"
SPLITS: tuple[str, ...] = ("train", "val")

# --------------------------------------------------------------------------------------------------
# Textures: t(u, v, period) in [0, 1] on object-aligned pixel coordinates (u, v), (H, W) float32.
# --------------------------------------------------------------------------------------------------
TextureFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _stripes(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Parallel bands along v with soft edges."""
    return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * u / period), 0.0, 1.0)


def _dots(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """A square lattice of round dots of diameter ~0.6 period."""
    du = np.mod(u, period) - period / 2
    dv = np.mod(v, period) - period / 2
    return ((du * du + dv * dv) < (0.3 * period) ** 2).astype(np.float32)


def _checker(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Checkerboard with squares of side period / 2."""
    return np.mod(np.floor(2 * u / period) + np.floor(2 * v / period), 2).astype(np.float32)


def _hatch(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Crossed thin lines (a grid)."""
    return ((np.abs(np.sin(np.pi * u / period)) < 0.35) | (np.abs(np.sin(np.pi * v / period)) < 0.35)).astype(
        np.float32
    )


def _waves(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Concentric rings around the object centre."""
    return 0.5 + 0.5 * np.sin(2 * np.pi * np.sqrt(u * u + v * v) / period)


def _gradient(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """A smooth ramp along u repeating every 4 periods (a sawtooth of long wavelength)."""
    return np.abs(np.mod(u / (4 * period), 2.0) - 1.0)


TEXTURES: dict[str, TextureFn] = {
    "stripes": _stripes,
    "dots": _dots,
    "checker": _checker,
    "hatch": _hatch,
    "waves": _waves,
    "gradient": _gradient,
}


@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    """How one class looks: its texture, the centre of its hue range (degrees) and the uniform
    ranges its shape parameters are drawn from (their meaning: :func:`_object_mask`, :func:`_polygon`)."""

    texture: str
    hue: float
    param_ranges: tuple[tuple[float, float], ...] = ()


SHAPES: tuple[str, ...] = ("disc", "triangle", "ring", "star", "cross", "crescent")
"""Every class the generator can draw; ``EmbeddedConfig.classes`` picks a subset (in this order or not)."""

_SHAPE_PARAM_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "disc": (),
    "triangle": ((-0.25, 0.25),) * 3 + ((0.85, 1.0),) * 3,  # vertex angle jitter (rad), vertex radius
    "ring": ((0.45, 0.65),),  # inner / outer radius
    "star": ((5.0, 7.0), (0.38, 0.55)),  # number of points (floored: 5 or 6), inner / outer radius
    "cross": ((0.25, 0.4),),  # arm half-width / arm length
    "crescent": ((0.35, 0.6), (0.75, 0.95)),  # offset of the cut-out disc, its radius (both / radius)
}

SHAPE_SPECS: dict[str, ShapeSpec] = {
    name: ShapeSpec(texture, 360.0 * i / len(SHAPES), _SHAPE_PARAM_RANGES[name])
    for i, (name, texture) in enumerate(zip(SHAPES, ("stripes", "dots", "checker", "hatch", "waves", "gradient")))
}
"""Class appearance table: hues evenly spaced on the colour wheel (disc red, triangle yellow, ...)."""

# Background drawing constants (the knobs worth tuning are in EmbeddedConfig).
_BG_VALUE_RANGE = (0.25, 0.95)  # HSV brightness of background colours
_BG_NOISE_CELL = 16  # px per cell of the low-frequency colour noise grid
_BLOB_VERTICES = (5, 9)  # vertices of an irregular blob polygon (inclusive range)
_BLOB_RADIUS_JITTER = (0.45, 1.0)  # per-vertex radius / blob radius
_STROKE_POINTS = (2, 4)  # points of a stroke polyline (inclusive range)
_STROKE_THICKNESS = (1, 3)  # stroke thickness in px (inclusive range)
_MAX_LAYOUT_ATTEMPTS = 100  # object layouts tried before giving up on an image where no object stays visible


@dataclasses.dataclass(frozen=True)
class EmbeddedConfig(Config):
    """``embedded`` section: size, content and difficulty of the generated default dataset."""

    SECTION: typing.ClassVar[str] = "embedded"
    seed: int = 0  # dataset seed; image i of split s uses default_rng((seed, s, i))
    n_train: int = 200  # images in ImageSets/Segmentation/train.txt
    n_val: int = 60  # images in ImageSets/Segmentation/val.txt
    min_size: int = 128  # image height and width are drawn independently in [min_size, max_size]
    max_size: int = 192
    classes: tuple[str, ...] = ("disc", "triangle", "ring", "star", "cross")  # foreground classes (from SHAPES)
    min_objects: int = 1  # objects drawn per image, before dropping hidden ones
    max_objects: int = 4
    min_object_scale: float = 0.3  # object diameter / shorter image side
    max_object_scale: float = 0.65
    max_stretch: float = 1.35  # anisotropic stretch: axis ratio drawn in [1, max_stretch] (either axis)
    min_visible_fraction: float = 0.35  # drop an object whose visible part < this fraction of its in-image area
    min_visible_pixels: int = 40  # ... or smaller than this many pixels
    hue_jitter: float = 40.0  # half-width (degrees) of a class's hue range; ranges overlap when > 30
    min_saturation: float = 0.35  # object colour saturation range (background: [0, bg_max_saturation])
    min_value: float = 0.4  # object colour brightness range [min_value, 1]
    texture_contrast: tuple[float, ...] = (0.25, 0.6)  # brightness drop of a texture's dark phase (range)
    texture_period: tuple[float, ...] = (5.0, 11.0)  # texture period in pixels (range)
    shading: float = 0.25  # max relative brightness ramp across an object (lighting)
    bg_blobs: tuple[int, ...] = (4, 10)  # number of background blobs (range, inclusive)
    bg_strokes: tuple[int, ...] = (2, 7)  # number of background strokes (range, inclusive)
    bg_blob_scale: tuple[float, ...] = (0.1, 0.45)  # blob radius / shorter image side (range)
    bg_texture_prob: float = 0.5  # probability that a background blob is textured (any texture)
    bg_max_saturation: float = 0.8  # background colour saturation range [0, bg_max_saturation]
    bg_noise_amplitude: float = 18.0  # low-frequency colour noise amplitude (grey levels)
    blur_sigma: float = 0.7  # Gaussian blur of the final image (pixels); 0 = none
    noise_sigma: float = 5.0  # per-pixel Gaussian noise (grey levels)
    boundary_ignore: int = 0  # width (px) of the 255 band on instance boundaries in the GT; 0 = exact GT
    jpeg_quality: int = 90  # PIL JPEG quality
    jpeg_subsampling: int = 2  # PIL chroma subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (as VOC's JPEGs)

    def validate(self) -> None:
        self.check(self.n_train >= 1, "n_train", ">= 1")
        self.check(self.n_val >= 1, "n_val", ">= 1")
        self.check(16 <= self.min_size <= self.max_size, "min_size", "in [16, max_size]")
        self.check(len(self.classes) >= 1, "classes", "a non-empty list")
        self.check(set(self.classes) <= set(SHAPES), "classes", f"a subset of {list(SHAPES)}")
        self.check(len(set(self.classes)) == len(self.classes), "classes", "without duplicates")
        self.check(1 <= self.min_objects <= self.max_objects, "min_objects", "in [1, max_objects]")
        self.check(self.max_objects <= 254, "max_objects", "<= 254 (instance PNG values)")
        self.check(0 < self.min_object_scale <= self.max_object_scale, "min_object_scale", "in (0, max_object_scale]")
        self.check(self.max_object_scale <= 1.5, "max_object_scale", "<= 1.5")
        self.check(self.max_stretch >= 1, "max_stretch", ">= 1")
        self.check(0 <= self.min_visible_fraction <= 1, "min_visible_fraction", "in [0, 1]")
        self.check(self.min_visible_pixels >= 1, "min_visible_pixels", ">= 1")
        self.check(0 <= self.hue_jitter <= 180, "hue_jitter", "in [0, 180]")
        self.check(0 <= self.min_saturation <= 1, "min_saturation", "in [0, 1]")
        self.check(0 <= self.min_value <= 1, "min_value", "in [0, 1]")
        self._check_range("texture_contrast", 0.0, 1.0)
        self._check_range("texture_period", 1.0, float("inf"))
        self.check(0 <= self.shading < 1, "shading", "in [0, 1)")
        self._check_range("bg_blobs", 0, float("inf"))
        self._check_range("bg_strokes", 0, float("inf"))
        self._check_range("bg_blob_scale", 0.0, 2.0)
        self.check(0 <= self.bg_texture_prob <= 1, "bg_texture_prob", "in [0, 1]")
        self.check(0 <= self.bg_max_saturation <= 1, "bg_max_saturation", "in [0, 1]")
        self.check(self.bg_noise_amplitude >= 0, "bg_noise_amplitude", ">= 0")
        self.check(self.blur_sigma >= 0, "blur_sigma", ">= 0")
        self.check(self.noise_sigma >= 0, "noise_sigma", ">= 0")
        self.check(self.boundary_ignore >= 0, "boundary_ignore", ">= 0")
        self.check(1 <= self.jpeg_quality <= 100, "jpeg_quality", "in [1, 100]")
        self.check(self.jpeg_subsampling in (0, 1, 2), "jpeg_subsampling", "0, 1 or 2")

    def _check_range(self, key: str, low: float, high: float) -> None:
        value = getattr(self, key)
        self.check(
            len(value) == 2 and low <= value[0] <= value[1] <= high,
            key,
            f"[min, max] with {low} <= min <= max <= {high}",
        )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class list of the generated dataset, background first (what ``classes.txt`` holds)."""
        return ("background", *self.classes)


# --------------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated image with its ground truth.

    image (H, W, 3) uint8 RGB (before JPEG compression); class_map (H, W) uint8; instance_map (H, W)
    uint8 (k = boxes[k-1], 0 background, 255 ignore band); boxes: tight boxes of the visible parts,
    in painting order; truncated[k]: the object touches the image border.
    """

    image: np.ndarray
    class_map: np.ndarray
    instance_map: np.ndarray
    boxes: tuple[Box, ...]
    truncated: tuple[bool, ...]


@dataclasses.dataclass(frozen=True)
class _Object:
    label: int  # class index (1..)
    shape: str
    cx: float
    cy: float
    rx: float  # semi-axes in pixels before rotation
    ry: float
    theta: float  # rotation (radians)
    params: tuple[float, ...]  # shape-specific parameters (see _object_mask)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG of image ``index`` of ``split``: independent of every other image and of the image count."""
    return np.random.default_rng((seed, SPLITS.index(split), index))


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (hue in degrees, s and v in [0, 1]) -> RGB float32 (3,) in [0, 255]."""
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v), dtype=np.float32) * 255.0


def _local_coords(obj: _Object, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres -> object-aligned coordinates (u along the rotated x axis), in pixels."""
    dx, dy = xs - obj.cx, ys - obj.cy
    c, s = np.cos(obj.theta), np.sin(obj.theta)
    return dx * c + dy * s, -dx * s + dy * c


def _polygon(obj: _Object) -> np.ndarray:
    """Unit-radius outline of a polygonal class (P, 2) in local coordinates."""
    if obj.shape == "triangle":
        jitter = np.asarray(obj.params[:3])
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3 + jitter
        radii = np.asarray(obj.params[3:6])
    elif obj.shape == "star":
        n_points, inner = int(np.floor(obj.params[0])), obj.params[1]
        angles = np.pi / 2 + np.pi * np.arange(2 * n_points) / n_points
        radii = np.where(np.arange(2 * n_points) % 2 == 0, 1.0, inner)
    elif obj.shape == "cross":
        w = obj.params[0]
        corners = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1)]  # the outline where x > 0 ...
        return np.array(corners + [(-x, -y) for x, y in corners], dtype=np.float64)  # ... and its 180-degree turn
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(obj.shape)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_SUBPIXEL_SHIFT = 4  # cv2.fillPoly fixed-point bits: vertices placed with 1/16 px precision


def _object_mask(obj: _Object, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of an object on the image grid (unoccluded, clipped to the image).

    disc: ellipse; ring: ellipse minus an inner ellipse (params[0] = inner radius ratio); crescent:
    ellipse minus a shifted ellipse (params = shift, radius ratio); triangle / star / cross: polygons
    rasterised by cv2.fillPoly with sub-pixel vertices.
    """
    u, v = _local_coords(obj, xs, ys)
    r2 = (u / obj.rx) ** 2 + (v / obj.ry) ** 2
    if obj.shape == "disc":
        return r2 <= 1.0
    if obj.shape == "ring":
        return (r2 <= 1.0) & (r2 >= obj.params[0] ** 2)
    if obj.shape == "crescent":
        shift, ratio = obj.params[0], obj.params[1]
        cut = ((u / obj.rx - shift) / ratio) ** 2 + (v / obj.ry / ratio) ** 2
        return (r2 <= 1.0) & (cut > 1.0)
    pts = _polygon(obj)
    c, s = np.cos(obj.theta), np.sin(obj.theta)
    px = obj.cx + c * pts[:, 0] * obj.rx - s * pts[:, 1] * obj.ry
    py = obj.cy + s * pts[:, 0] * obj.rx + c * pts[:, 1] * obj.ry
    # pixel (x, y) covers [x, x+1); its centre x+0.5 is what the implicit shapes test, so shift by -0.5
    fixed = np.round(np.stack([px - 0.5, py - 0.5], axis=1) * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    canvas = np.zeros(xs.shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return canvas.astype(bool)


def _sample_object(cfg: EmbeddedConfig, rng: np.random.Generator, height: int, width: int) -> _Object:
    label = int(rng.integers(1, len(cfg.classes) + 1))
    shape = cfg.classes[label - 1]
    radius = 0.5 * min(height, width) * rng.uniform(cfg.min_object_scale, cfg.max_object_scale)
    stretch = rng.uniform(1.0, cfg.max_stretch)
    rx, ry = (radius * stretch, radius / stretch) if rng.random() < 0.5 else (radius / stretch, radius * stretch)
    margin = 0.5 * radius  # the centre stays inside the image: at most about half an object is cut off
    cx = rng.uniform(min(margin, width / 2), max(width - margin, width / 2))
    cy = rng.uniform(min(margin, height / 2), max(height - margin, height / 2))
    theta = rng.uniform(0.0, 2 * np.pi)
    params = tuple(float(rng.uniform(low, high)) for low, high in SHAPE_SPECS[shape].param_ranges)
    return _Object(label, shape, cx, cy, rx, ry, theta, params)


def _paint_texture(
    canvas: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    texture: str | None,
    period: float,
    contrast: float,
    u: np.ndarray,
    v: np.ndarray,
    shading: float = 0.0,
    extent: float = 1.0,
) -> None:
    """Paint ``colour`` (3,) on ``canvas[mask]``, darkened by ``contrast`` where the texture is 1 and
    ramped by ``shading`` along u over ``extent`` pixels (in place)."""
    if not mask.any():
        return
    ys, xs = np.nonzero(mask)
    uu, vv = u[ys, xs], v[ys, xs]
    gain = np.ones_like(uu)
    if texture is not None:
        gain = gain - contrast * TEXTURES[texture](uu, vv, period)
    if shading:
        gain = gain * (1.0 + shading * np.clip(uu / extent, -1.0, 1.0))
    canvas[ys, xs] = colour[None, :] * gain[:, None]


def _background(cfg: EmbeddedConfig, rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Cluttered background (H, W, 3) float32: gradient + low-frequency noise + textured blobs + strokes."""
    height, width = xs.shape
    side = min(height, width)

    def bg_colour() -> np.ndarray:
        return _hsv(rng.uniform(0, 360), rng.uniform(0, cfg.bg_max_saturation), rng.uniform(*_BG_VALUE_RANGE))

    corners = np.stack([bg_colour() for _ in range(4)]).reshape(2, 2, 3)
    canvas = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    cells = max(2, side // _BG_NOISE_CELL)
    noise = rng.normal(0.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
    canvas += cfg.bg_noise_amplitude * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)

    texture_names = sorted(TEXTURES)
    for _ in range(int(rng.integers(cfg.bg_blobs[0], cfg.bg_blobs[1] + 1))):
        radius = side * rng.uniform(*cfg.bg_blob_scale)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        n_vertices = int(rng.integers(_BLOB_VERTICES[0], _BLOB_VERTICES[1] + 1))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=n_vertices))
        radii = radius * rng.uniform(*_BLOB_RADIUS_JITTER, size=n_vertices)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        blob = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(blob, [np.round(pts * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)], 1, shift=_SUBPIXEL_SHIFT)
        textured = rng.random() < cfg.bg_texture_prob
        texture = texture_names[int(rng.integers(len(texture_names)))] if textured else None
        theta = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        u, v = (xs - cx) * c + (ys - cy) * s, -(xs - cx) * s + (ys - cy) * c
        _paint_texture(
            canvas, blob.astype(bool), bg_colour(), texture, rng.uniform(*cfg.texture_period),
            rng.uniform(*cfg.texture_contrast), u, v,
        )
    for _ in range(int(rng.integers(cfg.bg_strokes[0], cfg.bg_strokes[1] + 1))):
        n_points = int(rng.integers(_STROKE_POINTS[0], _STROKE_POINTS[1] + 1))
        pts = np.stack([rng.uniform(0, width, n_points), rng.uniform(0, height, n_points)], axis=1)
        colour = tuple(float(c) for c in bg_colour())
        thickness = int(rng.integers(_STROKE_THICKNESS[0], _STROKE_THICKNESS[1] + 1))
        fixed = np.round(pts * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
        cv2.polylines(canvas, [fixed], False, colour, thickness, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return canvas


def _visible_instances(masks: list[np.ndarray], cfg: EmbeddedConfig) -> tuple[np.ndarray, list[int]]:
    """Paint masks in order; keep objects whose visible part is large enough. Returns (instance map, kept).

    Dropping an object only uncovers the ones below it, so one pass of dropping followed by a
    repaint leaves every kept object at least as visible as it was checked to be.
    """
    shape = masks[0].shape if masks else (0, 0)
    order = np.zeros(shape, dtype=np.int32)
    for k, mask in enumerate(masks, start=1):
        order[mask] = k
    visible = np.bincount(order.ravel(), minlength=len(masks) + 1)[1:]
    kept = [
        k
        for k, mask in enumerate(masks)
        if visible[k] >= max(cfg.min_visible_pixels, cfg.min_visible_fraction * mask.sum())
    ]
    inst = np.zeros(shape, dtype=np.uint8)
    for new_k, k in enumerate(kept, start=1):
        inst[masks[k]] = new_k
    return inst, kept


def render_image(cfg: EmbeddedConfig, split: str, index: int) -> Sample:
    """Generate image ``index`` of ``split`` (deterministic in ``(cfg, split, index)``)."""
    rng = image_rng(cfg.seed, split, index)
    height = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    width = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres

    canvas = _background(cfg, rng, xs, ys)
    for _ in range(_MAX_LAYOUT_ATTEMPTS):  # the top object is never hidden: one attempt unless objects are tiny
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        objects = [_sample_object(cfg, rng, height, width) for _ in range(n)]
        masks = [_object_mask(o, xs, ys) for o in objects]
        inst, kept = _visible_instances(masks, cfg)
        if kept:
            break
    else:
        raise ConfigError(
            f"params.yaml [{cfg.SECTION}] min_visible_pixels={cfg.min_visible_pixels}: no object of {split} image "
            f"{index} ({width}x{height}) is that large after {_MAX_LAYOUT_ATTEMPTS} layouts; lower it or raise "
            "min_object_scale / min_size"
        )

    boxes, truncated = [], []
    for new_k, k in enumerate(kept, start=1):
        obj = objects[k]
        spec = SHAPE_SPECS[obj.shape]
        colour = _hsv(
            spec.hue + rng.uniform(-cfg.hue_jitter, cfg.hue_jitter),
            rng.uniform(cfg.min_saturation, 1.0),
            rng.uniform(cfg.min_value, 1.0),
        )
        u, v = _local_coords(obj, xs, ys)
        _paint_texture(
            canvas, inst == new_k, colour, spec.texture, rng.uniform(*cfg.texture_period),
            rng.uniform(*cfg.texture_contrast), u, v, rng.uniform(-cfg.shading, cfg.shading), max(obj.rx, obj.ry),
        )
        rows = np.flatnonzero((inst == new_k).any(axis=1))
        cols = np.flatnonzero((inst == new_k).any(axis=0))
        boxes.append(Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1, obj.label))
        full = masks[k]
        truncated.append(bool(full[0].any() or full[-1].any() or full[:, 0].any() or full[:, -1].any()))

    if cfg.blur_sigma > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), cfg.blur_sigma, borderType=cv2.BORDER_REFLECT)
    canvas = canvas + rng.normal(0.0, cfg.noise_sigma, size=canvas.shape).astype(np.float32)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)

    labels = np.array([0] + [objects[k].label for k in kept], dtype=np.uint8)
    class_map = labels[inst]
    if cfg.boundary_ignore > 0:
        band = _boundary_band(inst, cfg.boundary_ignore)
        class_map = np.where(band, IGNORE_INDEX, class_map).astype(np.uint8)
        inst = np.where(band, IGNORE_INDEX, inst).astype(np.uint8)
    return Sample(image, class_map, inst, tuple(boxes), tuple(truncated))


def _boundary_band(inst: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: pixels whose (2*width+1)^2 neighbourhood holds more than one instance value."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    return cv2.dilate(inst, kernel) != cv2.erode(inst, kernel)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
_XML_TEMPLATE = """<annotation>
\t<folder>embedded</folder>
\t<filename>{image_id}.jpg</filename>
\t<source>
\t\t<database>a2gnn embedded dataset</database>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>1</segmented>
{objects}</annotation>
"""

_OBJECT_TEMPLATE = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>{truncated}</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
"""


def annotation_xml(image_id: str, width: int, height: int, boxes: tuple[Box, ...], class_names: tuple[str, ...],
                   truncated: tuple[bool, ...] | None = None) -> str:
    """VOC annotation XML text; half-open 0-based boxes become 1-based inclusive corners."""
    truncated = truncated or (False,) * len(boxes)
    objects = "".join(
        _OBJECT_TEMPLATE.format(
            name=class_names[b.label], truncated=int(t), xmin=b.x1 + 1, ymin=b.y1 + 1, xmax=b.x2, ymax=b.y2
        )
        for b, t in zip(boxes, truncated)
    )
    return _XML_TEMPLATE.format(image_id=image_id, width=width, height=height, objects=objects)


def image_ids(cfg: EmbeddedConfig, split: str) -> list[str]:
    """Sorted ids of a split: ``<split>_<index>`` zero-padded to a common width."""
    count = cfg.n_train if split == "train" else cfg.n_val
    digits = max(4, len(str(count - 1)))
    return [f"{split}_{i:0{digits}d}" for i in range(count)]


def stamp_text(cfg: EmbeddedConfig) -> str:
    """Contents of ``embedded.json``: the config and the generator version, canonical JSON."""
    stamp = {"config": cfg.to_dict(), "generator_version": GENERATOR_VERSION}
    return json.dumps(stamp, indent=2, sort_keys=True) + "\n"


def write_dataset(cfg: EmbeddedConfig, root: os.PathLike | str, progress: bool = False) -> None:
    """Write the whole dataset into the directory ``root`` (created; existing files are overwritten)."""
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    class_names = cfg.class_names
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    for split in SPLITS:
        ids = image_ids(cfg, split)
        items = enumerate(ids)
        if progress:
            from a2gnn.core.cli import progress as bar

            items = bar(items, desc=f"embedded {split}", total=len(ids))
        for index, image_id in items:
            sample = render_image(cfg, split, index)
            height, width = sample.class_map.shape
            Image.fromarray(sample.image).save(
                root / "JPEGImages" / f"{image_id}.jpg", format="JPEG", quality=cfg.jpeg_quality,
                subsampling=cfg.jpeg_subsampling, optimize=False, progressive=False,
            )
            encode_label_png(sample.class_map).save(root / "SegmentationClass" / f"{image_id}.png", format="PNG")
            encode_label_png(sample.instance_map).save(root / "SegmentationObject" / f"{image_id}.png", format="PNG")
            xml = annotation_xml(image_id, width, height, sample.boxes, class_names, sample.truncated)
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / STAMP_NAME).write_text(stamp_text(cfg))


def is_up_to_date(cfg: EmbeddedConfig, out_dir: os.PathLike | str) -> bool:
    """True when ``out_dir`` holds a dataset stamped with exactly this config and generator version."""
    stamp = Path(out_dir) / STAMP_NAME
    return stamp.is_file() and stamp.read_text() == stamp_text(cfg)


def generate(cfg: EmbeddedConfig, out_dir: os.PathLike | str, force: bool = False, progress: bool = False) -> bool:
    """Generate the dataset into ``out_dir`` atomically (temp dir renamed over it on success).

    Does nothing when ``out_dir`` already carries an identical stamp, unless ``force``.
    Returns True when it (re)generated the data.
    """
    if not force and is_up_to_date(cfg, out_dir):
        return False
    with atomic_dir(out_dir) as tmp:
        write_dataset(cfg, tmp, progress=progress)
    return True


def main(argv: list[str] | None = None) -> None:
    from a2gnn.core.cli import stage_parser

    parser = stage_parser("Generate the embedded default dataset (VOC layout).")
    parser.add_argument("--out", required=True, help="output dataset root (replaced atomically)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    args = parser.parse_args(argv)
    cfg = EmbeddedConfig.from_params(load_params(args.params).get(EmbeddedConfig.SECTION))
    if generate(cfg, args.out, force=args.force, progress=True):
        print(f"embedded dataset written to {args.out} ({cfg.n_train} train / {cfg.n_val} val)", file=sys.stderr)
    else:
        print(f"{args.out} is up to date ({STAMP_NAME} matches); nothing to do (use --force to regenerate)",
              file=sys.stderr)


if __name__ == "__main__":
    from a2gnn.core.cli import run_stage

    run_stage(main)
