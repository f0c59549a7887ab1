"""Which weak supervision the pipeline runs on (paper §7): the ``weak`` section and its guard.

Kept apart from the seed making (:mod:`a2gnn.seeds.weak`) so the stages that only need to know the supervision
(``pseudo_labels``) do not depend on the code that draws scribbles and points.
"""

from __future__ import annotations

import dataclasses
import typing

from a2gnn.config import Config, ConfigError

BOX = "box"
SUPERVISION_TYPES = (BOX, "scribble", "point", "image")  # a2gnn.seeds.weak.SUPERVISIONS has the last three


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
        self.check(self.supervision in SUPERVISION_TYPES, "supervision", f"one of {SUPERVISION_TYPES}")
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


def check_supervision(cfg: WeakConfig, gnn, post) -> None:
    """Refuse settings that would read boxes the supervision does not have, or the wrong seeds (ConfigError).

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
