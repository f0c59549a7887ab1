"""The CAM score files of the ``cam`` stage: ``scores/<id>.npz`` = {cams float16 (K, H, W), labels int64 (K,)}.

Kept free of torch so that the seed fusion (Eq. 4-5) can read them cheaply.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from a2gnn.core.io import DataError, atomic_file

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""Fixed member timestamp of the ``.npz`` score files (the earliest a zip can store)."""


def with_background(cams: np.ndarray, alpha: float) -> np.ndarray:
    r"""Prepend the PSA/SEAM background score :math:`bg = (1 - \max_k CAM_k)^{\alpha}` to normalised CAMs.

    Shapes: cams (K, H, W) in [0, 1] -> (1 + K, H, W) float32; K = 0 gives an all-ones background.
    """
    cams = np.asarray(cams, dtype=np.float32)
    peak = np.clip(cams.max(axis=0), 0.0, 1.0) if cams.shape[0] else np.zeros(cams.shape[1:], np.float32)
    return np.concatenate([((1.0 - peak) ** alpha)[None], cams]).astype(np.float32)


def save_cam_scores(path: os.PathLike | str, cams: np.ndarray, labels: Sequence[int]) -> None:
    """Write ``{cams: float16 (K, H, W), labels: int64 (K,)}`` as a deflated ``.npz`` (np.load-able).

    Unlike ``np.savez_compressed``, every zip member carries a fixed timestamp, so equal arrays give
    byte-identical files (dvc.lock stays unchanged when a stage re-runs)."""
    arrays = {"cams": np.asarray(cams, dtype=np.float16), "labels": np.asarray(labels, dtype=np.int64)}
    with atomic_file(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def load_cam_scores(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
    """Read a scores file -> (cams float32 (K, H, W), labels int64 (K,)); bad files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "CAM scores file is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            cams, labels = data["cams"].astype(np.float32), data["labels"].astype(np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(path, f"cannot read CAM scores ({exc})") from exc
    if cams.ndim != 3 or labels.shape != (cams.shape[0],):
        raise DataError(path, f"cams {cams.shape} and labels {labels.shape} do not match")
    return cams, labels
