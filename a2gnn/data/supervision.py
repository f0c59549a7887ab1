"""Which weak supervision the pipeline runs on (paper §7): the ``weak`` section and its guard.

Kept apart from the seed making (:mod:`a2gnn.seeds.weak`) so the stages that only need to know the supervision
(``pseudo_labels``) do not depend on the code that draws scribbles and points.

``pseudo_labels`` does not read the ``weak`` and ``random_walk`` params itself: ``weak_seeds`` writes the part it
needs (the supervision, and the random-walk settings only when §7.1's fusion is on) to a small JSON record
(:func:`supervision_record`). A knob of the random walk then reruns the cheap ``weak_seeds`` stage, whose record is
unchanged under box supervision, so DVC skips the A²GNN (it reruns it when the fusion really reads the knob).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path

from a2gnn.core.config import Config, ConfigError
from a2gnn.core.io import DataError
from a2gnn.core.registry import Registry

BOX = "box"


@dataclasses.dataclass(frozen=True)
class SupervisionForm:
    """One form of supervision (``weak.supervision``) and what its annotator gives for an image."""

    annotation: str | None  # "scribbles" | "points" (a map per image) | None (boxes, image-level labels)


SUPERVISION_FORMS: Registry[SupervisionForm] = Registry("supervision form")
"""``weak.supervision`` -> :class:`SupervisionForm`; every form but ``box`` has its seed rule in
:data:`a2gnn.seeds.weak.WEAK_SEEDS` (§7.1)."""
SUPERVISION_FORMS.add(BOX, SupervisionForm(None))
SUPERVISION_FORMS.add("scribble", SupervisionForm("scribbles"))
SUPERVISION_FORMS.add("point", SupervisionForm("points"))
SUPERVISION_FORMS.add("image", SupervisionForm(None))


@dataclasses.dataclass(frozen=True)
class WeakConfig(Config):
    """``weak`` section: §7 supervision other than boxes (Table 5)."""

    SECTION: typing.ClassVar[str] = "weak"
    supervision: str = "box"  # box | scribble | point | image
    annotation_dir: str | None = None  # dataset folder of <id>.png scribble/point maps; null = synthetic from GT
    sp_segments: int = 400  # SLIC superpixels per image expanding scribbles / points (§7.1, SLIC [23])
    sp_compactness: float = 10.0  # SLIC compactness m
    scribble_points: int = 4  # control points of a synthetic scribble
    scribble_width: int = 3  # px
    margin: float = 2.0  # px: synthetic scribble control points lie at least this far inside their region
    point_centre: float = 0.5  # synthetic clicks among pixels >= this x the region's largest inner distance
    min_background_area: int = 64  # px: background regions smaller than this get no scribble
    rw_fusion: float = 0.0  # share of the random walk in the final scores (§7.1 image-level 1:3 -> 0.75); 0 = off

    def validate(self) -> None:
        self.check(self.supervision in SUPERVISION_FORMS, "supervision", f"one of {SUPERVISION_FORMS.names()}")
        self.check(self.sp_segments >= 1, "sp_segments", ">= 1")
        self.check(self.sp_compactness > 0, "sp_compactness", "> 0")
        self.check(self.scribble_points >= 1, "scribble_points", ">= 1")
        self.check(self.scribble_width >= 1, "scribble_width", ">= 1")
        self.check(self.margin >= 0, "margin", ">= 0")
        self.check(0.0 <= self.point_centre <= 1.0, "point_centre", "in [0, 1]")
        self.check(self.min_background_area >= 1, "min_background_area", ">= 1")
        self.check(0.0 <= self.rw_fusion <= 1.0, "rw_fusion", "in [0, 1]")

    @property
    def uses_boxes(self) -> bool:
        return self.supervision == BOX


@dataclasses.dataclass(frozen=True)
class SupervisionRecord:
    """What ``pseudo_labels`` needs to know of the supervision (written by ``weak_seeds``)."""

    supervision: str = BOX
    rw_fusion: float = 0.0  # share of the random walk in the final scores; 0 = no fusion
    random_walk: Mapping | None = None  # the ``random_walk`` params section, only when rw_fusion > 0

    @property
    def uses_boxes(self) -> bool:
        return self.supervision == BOX


def supervision_record(cfg: WeakConfig, random_walk: Mapping | None, images: int) -> dict:
    """The JSON record of ``weak_seeds``: the supervision, its image count and source of annotations, and the
    fusion settings, which carry the ``random_walk`` section only when ``cfg.rw_fusion`` > 0 (else null)."""
    fused = cfg.rw_fusion > 0
    return {"supervision": cfg.supervision, "images": images,
            "annotations": "synthetic" if not cfg.annotation_dir else cfg.annotation_dir,
            "rw_fusion": cfg.rw_fusion, "random_walk": dict(random_walk or {}) if fused else None}


def read_supervision_record(path: os.PathLike | str) -> SupervisionRecord:
    """Read the record of :func:`supervision_record`; a missing or malformed file raises DataError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        record = SupervisionRecord(supervision=data["supervision"], rw_fusion=float(data["rw_fusion"]),
                                   random_walk=data["random_walk"])
    except FileNotFoundError:
        raise DataError(path, "supervision record is missing (written by stages/weak_seeds.py)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a supervision record of stages/weak_seeds.py ({exc!r})") from None
    if record.supervision not in SUPERVISION_FORMS:
        raise DataError(path, f"supervision {record.supervision!r} is not one of {SUPERVISION_FORMS.names()}")
    if record.rw_fusion > 0 and not isinstance(record.random_walk, Mapping):
        raise DataError(path, "rw_fusion > 0 but no random_walk settings")
    return record


def check_supervision(cfg: WeakConfig | SupervisionRecord, gnn, post) -> None:
    """Refuse settings that would read boxes the supervision does not have, or the wrong seeds (ConfigError).

    ``cfg``: the ``weak`` section or the record of ``weak_seeds`` (``supervision``, ``uses_boxes``);
    ``gnn``: a GNNConfig (``use_mp``, ``use_consistency``, ``seeds``); ``post``: a PostprocessConfig.
    """
    if cfg.uses_boxes:
        if gnn.seeds.startswith("weak/"):
            raise ConfigError(f"params.yaml [gnn] seeds={gnn.seeds} needs weak.supervision scribble | point | image "
                              f"(weak.supervision is box: stages/weak_seeds.py writes no seeds)")
        return
    box_only = {"gnn.use_mp": gnn.use_mp, "gnn.use_consistency": gnn.use_consistency,
                "postprocess.box_constraint": post.box_constraint}
    on = [key for key, value in box_only.items() if value]
    if on:
        raise ConfigError(f"params.yaml: weak.supervision={cfg.supervision} has no boxes, but {', '.join(on)} "
                          f"use them; set them to false (paper §7)")
    if not gnn.seeds.startswith("weak/"):
        raise ConfigError(f"params.yaml [gnn] seeds={gnn.seeds} comes from boxes; with weak.supervision="
                          f"{cfg.supervision} use weak/gnn (§7.1)")
