r"""Instance-segmentation AP with pycocotools' COCOeval: paper Table 2 (mAP^r at IoU 0.5 / 0.7 / 0.75, VOC) and
Table 3 (COCO AP, AP_50, AP_75, AP_S, AP_M, AP_L).

For IoU threshold :math:`\tau`, AP is COCO's: detections of a class sorted by score are matched greedily to
unmatched ground truths with IoU :math:`\ge \tau` (crowd / VOC-difficult ground truths are ignored: matching
them neither helps nor hurts), precision is made monotone and read at the 101 recall points
:math:`0, 0.01, \dots, 1`, averaged over them and over the classes that have ground truth:

.. math::
    AP_\tau = \frac{1}{|C|} \sum_{c \in C} \frac{1}{101} \sum_{r \in \{0, .01, .., 1\}} \max_{r' \ge r} p_c(r')

``ap`` averages :math:`AP_\tau` over :math:`\tau \in \{0.5, 0.55, \dots, 0.95\}`; ``ap_s`` / ``ap_m`` / ``ap_l``
restrict it to objects of area < 32², 32²-96², > 96² pixels (-1 when the split has no object of that size,
as pycocotools reports). The paper's VOC numbers (mAP^r, from SDS's evaluation) use VOC's AP integration
rather than 101 recall points; the difference is small, the thresholds are the same. With up to 100
detections per image (COCO's largest ``maxDets``).
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Sequence

import numpy as np

IOU_THRESHOLDS = (0.5, 0.7, 0.75)
"""The single-threshold APs reported (mAP^r_0.5, mAP^r_0.7, mAP^r_0.75 of Table 2)."""


def ap_at_iou(precision: np.ndarray, iou_thresholds: np.ndarray, iou: float) -> float:
    """AP at one IoU threshold from COCOeval's ``eval["precision"]`` (T, R, K, A, M): area "all", largest maxDets,
    mean over recall points and over the classes with ground truth (entries -1 are classes without any)."""
    t = np.flatnonzero(np.isclose(iou_thresholds, iou))
    if t.size == 0:
        raise ValueError(f"IoU {iou} is not one of COCOeval's thresholds {list(iou_thresholds)}")
    p = precision[t[0], :, :, 0, -1]
    p = p[p > -1]
    return float(p.mean()) if p.size else -1.0


def coco_ap(gt, results: Sequence[dict[str, Any]], iou_type: str = "segm") -> dict[str, float]:
    """AP of ``results`` (COCO result dicts: image_id, category_id, score and ``segmentation`` RLE for "segm"
    or ``bbox`` [x, y, w, h] for "bbox") against the ``pycocotools.coco.COCO`` ground truth ``gt``.

    Returns ``{ap, ap50, ap70, ap75, ap_s, ap_m, ap_l}`` in [0, 1] (no detection at all: zeros; ap_s/m/l -1
    where no ground truth of that size exists). pycocotools' printout is swallowed.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be segm or bbox, got {iou_type!r}")
    key = "segmentation" if iou_type == "segm" else "bbox"
    dets = [{k: v for k, v in r.items() if k in ("image_id", "category_id", "score", key)} for r in results]
    names = ["ap", *(f"ap{round(100 * t)}" for t in IOU_THRESHOLDS), "ap_s", "ap_m", "ap_l"]
    if not dets:
        areas = _gt_area_presence(gt)
        return {n: (0.0 if n not in areas or areas[n] else -1.0) for n in names}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {"ap": float(ev.stats[0])}
    for t in IOU_THRESHOLDS:
        out[f"ap{round(100 * t)}"] = ap_at_iou(ev.eval["precision"], ev.params.iouThrs, t)
    out.update(ap_s=float(ev.stats[3]), ap_m=float(ev.stats[4]), ap_l=float(ev.stats[5]))
    return out


def _gt_area_presence(gt) -> dict[str, bool]:
    """Whether the ground truth has a non-crowd object in each COCO area range (small, medium, large)."""
    areas = np.array([a["area"] for a in gt.dataset["annotations"] if not a.get("iscrowd", 0)], dtype=float)
    return {"ap_s": bool((areas < 32**2).any()), "ap_m": bool(((areas >= 32**2) & (areas < 96**2)).any()),
            "ap_l": bool((areas >= 96**2).any())}


def instance_metrics(gt_json, results: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"mask": coco_ap(segm), "box": {ap, ap50, ap70, ap75}}`` of ``results`` against the COCO JSON ``gt_json``."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
    box = coco_ap(gt, results, "bbox")
    return {"mask": coco_ap(gt, results, "segm"), "box": {k: box[k] for k in ("ap", "ap50", "ap70", "ap75")}}
