"""Speed of GrabCut's two readings, plain (Eq. 2 on the photo) and zoomed on small boxes (``grabcut.zoom_side``).

    python benchmarks/grabcut_zoom.py                              # the dataset of params.yaml, train split
    python benchmarks/grabcut_zoom.py --params P --zoom-side 160 --images 20
    python benchmarks/grabcut_zoom.py --synthetic 8                # no dataset: 8 generated photos

Both readings run on the same photos in one process, one thread, interleaved photo by photo (so both see the same
machine state), from the M_B of each photo (Eq. 2-3) as the ``grabcut`` stage computes it. Prints the seconds of
each reading and the share of in-box pixels whose label the zoom changes.
"""

from __future__ import annotations

import argparse
import time

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import cv2
import numpy as np

from a2gnn.data.boxes import box_union_mask
from a2gnn.data.voc import Annotation, Box
from a2gnn.seeds.grabcut import GrabCutConfig, box_seeds


def synthetic_photos(count: int, size: int = 160, seed: int = 0) -> list[tuple[np.ndarray, Annotation]]:
    """``count`` noisy photos, each with a few discs of 3-20 px radius and their boxes (a margin of 2 px)."""
    rng = np.random.default_rng(seed)
    photos = []
    yy, xx = np.mgrid[:size, :size]
    for index in range(count):
        image = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
        image = cv2.GaussianBlur(image, (0, 0), 4.0)
        boxes = []
        for _ in range(int(rng.integers(2, 6))):
            r = int(rng.integers(3, 21))
            cy, cx = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
            boxes.append(Box(cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2, int(rng.integers(1, 4))))
        noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
        photos.append((noisy, Annotation(f"synthetic_{index}", size, size, tuple(boxes))))
    return photos


def dataset_photos(params_path: str, count: int) -> list[tuple[np.ndarray, Annotation]]:
    """The first ``count`` photos of the train split named by ``params_path``, at the size the stages see."""
    from a2gnn.core.config import load_params
    from a2gnn.data.formats import DatasetConfig, open_dataset

    cfg = DatasetConfig.from_params(load_params(params_path).get("dataset"))
    dataset = open_dataset(cfg, cfg.train_split, cfg.root)
    return [(dataset.image(i), dataset.annotation(i)) for i in dataset.ids[:count]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params whose dataset to read")
    parser.add_argument("--images", type=int, default=20, help="photos of the train split")
    parser.add_argument("--synthetic", type=int, default=0, help="use this many generated photos instead")
    parser.add_argument("--zoom-side", type=int, default=160, help="grabcut.zoom_side of the zoomed reading")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    photos = synthetic_photos(args.synthetic) if args.synthetic else dataset_photos(args.params, args.images)
    readings = {"plain": GrabCutConfig(), f"zoom {args.zoom_side}": GrabCutConfig(zoom_side=args.zoom_side)}
    seconds = dict.fromkeys(readings, 0.0)
    changed = inside = 0
    for image, annotation in photos:
        maps = {}
        for name, cfg in readings.items():
            start = time.perf_counter()
            maps[name] = box_seeds(image, annotation, cfg)
            seconds[name] += time.perf_counter() - start
        in_boxes = box_union_mask(annotation.boxes, image.shape[:2])
        plain, zoomed = maps.values()
        changed += int((plain != zoomed)[in_boxes].sum())
        inside += int(in_boxes.sum())
    boxes = sum(len(a.boxes) for _, a in photos)
    print(f"{len(photos)} photos, {boxes} boxes, one thread")
    for name, total in seconds.items():
        print(f"  {name:>10}: {total:7.2f} s  ({total / len(photos):.3f} s per photo)")
    print(f"  in-box pixels whose M_B label the zoom changes: {100.0 * changed / max(inside, 1):.1f} %")


if __name__ == "__main__":
    main()
