"""File I/O shared by every stage: images, palette label PNGs, JSON metrics, atomic outputs.

Every reader raises :class:`DataError` naming the offending file, and every writer goes through a
temporary file or directory that is renamed into place only on success, so an interrupted or
failing stage never leaves half-written outputs behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from PIL import Image

IGNORE_INDEX = 255
"""Label value meaning "unknown / not labelled" in every label map (VOC convention, Eq. 2, 5, 6)."""


class DataError(ValueError):
    """Bad input data. The message always names the file and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable, so it crosses process boundaries (parallel_map workers) intact
        return (type(self), (self.path, self.problem))


def voc_palette(num_entries: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map (bit-interleaved class index), shape (num_entries, 3) uint8."""
    idx = np.arange(num_entries)
    palette = np.zeros((num_entries, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= (((idx >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    return palette


def read_image(path: os.PathLike | str) -> np.ndarray:
    """Read an image as RGB uint8 of shape (H, W, 3); missing or corrupt files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode image ({exc})") from exc


def read_label(path: os.PathLike | str) -> np.ndarray:
    """Read a palette (or grey) label PNG as class indices, shape (H, W) uint8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise DataError(path, f"label PNG must be palette or greyscale, got mode {im.mode}")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"cannot decode label image ({exc})") from exc


def encode_label_png(label: np.ndarray) -> Image.Image:
    """Class-index map (H, W) -> palette PIL image with the VOC colour map (255 = white-ish ignore)."""
    if label.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label.shape}")
    im = Image.fromarray(np.ascontiguousarray(label.astype(np.uint8)), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    return im


def write_label(path: os.PathLike | str, label: np.ndarray) -> None:
    """Write a class-index map as a palette PNG, atomically."""
    with atomic_file(path) as tmp:
        encode_label_png(label).save(tmp, format="PNG")


@contextlib.contextmanager
def atomic_file(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _round(value, ndigits: int):
    if isinstance(value, float):
        return round(value, ndigits)
    if isinstance(value, Mapping):
        return {str(k): _round(v, ndigits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, ndigits) for v in value]
    if isinstance(value, np.generic):
        return _round(value.item(), ndigits)
    return value


def write_json(path: os.PathLike | str, data: Mapping, ndigits: int = 4) -> None:
    """Write metrics JSON atomically: sorted keys, floats rounded (stable diffs for ``dvc metrics diff``)."""
    text = json.dumps(_round(dict(data), ndigits), indent=2, sort_keys=True) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)


UNAVAILABLE = "unavailable"
"""Key of a metrics file (or of a model file) whose figures cannot be computed, holding the one-line reason."""


def unavailable_figures(names, reason: str) -> dict:
    """A metrics record of ``names`` marked not available (null), with the reason under :data:`UNAVAILABLE`
    (e.g. no ground-truth masks: boxes only). Never a made-up number."""
    return {**{str(name): None for name in names}, UNAVAILABLE: reason}


def save_unavailable(path: os.PathLike | str, reason: str) -> None:
    """Stand-in for a model that cannot be trained (the ground-truth upper bound without ground truth)."""
    save_torch(path, {UNAVAILABLE: reason})


def unavailable_reason(path: os.PathLike | str) -> str | None:
    """The reason stored by :func:`save_unavailable` in a model file, or None for a real model (or no file)."""
    if not Path(path).is_file():
        return None
    state = load_torch(path, "model")
    return str(state[UNAVAILABLE]) if isinstance(state, dict) and UNAVAILABLE in state else None


def read_ids(path: os.PathLike | str) -> list[str]:
    """Read an image-id list (one id per line, as in VOC ImageSets); empty or missing lists raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image list is missing")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(path, "image list is empty")
    return ids


def save_torch(path: os.PathLike | str, obj) -> None:
    """``torch.save`` atomically and byte-reproducibly: serialised in memory first, because saving to a path
    names the zip's root folder after the (random temporary) file name."""
    import io as _io

    import torch

    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_torch(path: os.PathLike | str, what: str, map_location="cpu"):
    """``torch.load`` (weights only) of a local file; a missing or unreadable file raises DataError naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} is missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / non-torch files
        raise DataError(path, f"cannot read {what} ({type(exc).__name__}: {exc})") from exc
