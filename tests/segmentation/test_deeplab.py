"""a2gnn.segmentation (DeepLab-v2 ASPP on a registry backbone) and stages/train_deeplab.py, evaluate_deeplab.py
on the tiny embedded dataset: shapes, resume, checkpoint round trip, stage outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from a2gnn.backbones.base import BackboneConfig
from a2gnn.data.formats import DatasetConfig
from a2gnn.ops.crf import CRFConfig
from a2gnn.data.formats import open_dataset
from a2gnn.data.segmentation import SegmentationDataset
from a2gnn.core.io import DataError, write_label
from a2gnn.segmentation.deeplab import (
    ASPP,
    DeepLabConfig,
    build_deeplab,
    evaluate_deeplab,
    load_deeplab,
    predict_probs,
    save_deeplab,
    train_deeplab,
)

REPO = Path(__file__).resolve().parents[2]
TINY = {"backbone": {"width": 4}, "epochs": 2, "batch_size": 3, "crop_size": 48, "val_every": 1}


def tiny_cfg(**overrides) -> DeepLabConfig:
    return DeepLabConfig.from_params({**TINY, **overrides})


def test_aspp_is_sum_of_dilated_classifiers():
    torch.manual_seed(0)
    aspp = ASPP(5, 3, (1, 2, 3))
    x = torch.randn(2, 5, 7, 9)
    ref = sum(F.conv2d(x, b.weight, b.bias, padding=r, dilation=r) for b, r in zip(aspp.branches, (1, 2, 3)))
    assert torch.allclose(aspp(x), ref, atol=1e-6)


def test_deeplab_shapes_and_probabilities():
    model = build_deeplab(tiny_cfg(), 4).eval()
    x = torch.randn(1, 3, 37, 50)
    assert model(x).shape == (1, 4, 5, 7) and model.upsampled(x).shape == (1, 4, 37, 50)
    probs = predict_probs(model, np.zeros((37, 50, 3), np.uint8))
    assert probs.shape == (4, 37, 50) and np.allclose(probs.sum(axis=0), 1, atol=1e-5)
    with pytest.raises(Exception):
        DeepLabConfig.from_params({"aspp_rates": []})


@pytest.fixture
def tiny_sets(tiny_voc):
    torch.set_num_threads(1)
    data = DatasetConfig()
    return (SegmentationDataset(open_dataset(data, "train", tiny_voc), "gt"),
            SegmentationDataset(open_dataset(data, "val", tiny_voc), "gt"))


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


class Interrupt(Exception):
    pass


def test_training_resumes_to_same_weights_and_logs(tiny_sets, tmp_path):
    train, val = tiny_sets
    cfg = tiny_cfg(epochs=3, scale_range=(0.8, 1.2))
    logs = []
    full = train_deeplab(train, cfg, seed=1, val=val, on_epoch=lambda e, l: logs.append(l))
    assert len(logs) == 3 and all({"loss", "val_miou"} <= set(l) for l in logs)

    def stop(epoch, _):
        if epoch == 0:
            raise Interrupt

    ckpt = tmp_path / "checkpoints" / "train_deeplab"
    with pytest.raises(Interrupt):
        train_deeplab(train, cfg, seed=1, on_epoch=stop, checkpoint_dir=ckpt)
    epochs = []
    resumed = train_deeplab(train, cfg, seed=1, on_epoch=lambda e, l: epochs.append(e), checkpoint_dir=ckpt)
    assert epochs == [1, 2] and same_weights(full, resumed)


def test_checkpoint_round_trip_and_errors(tiny_sets, tmp_path):
    train, val = tiny_sets
    model = train_deeplab(train, tiny_cfg(epochs=1), seed=0)
    path = tmp_path / "model.pt"
    save_deeplab(path, model, tiny_cfg(epochs=1), train.class_names)
    loaded, cfg, names = load_deeplab(path)
    assert names == train.class_names and cfg == tiny_cfg(epochs=1)
    image = val.image(val.ids[0])
    assert np.array_equal(predict_probs(model, image), predict_probs(loaded, image))
    res = evaluate_deeplab(loaded, val, CRFConfig(iterations=2))
    assert set(res) == {"miou", "miou_crf"} and res["miou"].mat.sum() == res["miou_crf"].mat.sum() > 0
    for bad in (tmp_path / "missing.pt", tmp_path / "junk.pt"):
        if bad.name == "junk.pt":
            bad.write_text("not torch")
        with pytest.raises(DataError, match=bad.name):
            load_deeplab(bad)


def _stage(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow  # over 10 s on 2 cores (docs/testing.md)
def test_stages_train_on_a_label_folder_and_evaluate(tiny_voc, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "base": {"seed": 0}, "runtime": {"workers": 0, "torch_threads": 1},
        "deeplab": TINY, "crf": {"iterations": 2},
    }))
    labels = tmp_path / "labels"  # a "pseudo label" folder: GT with the object borders unknown
    reader = open_dataset(DatasetConfig(), "train", tiny_voc)
    for image_id in reader.ids:
        gt = reader.semantic_gt(image_id)
        write_label(labels / f"{image_id}.png", np.where(gt > 0, 255, gt).astype(np.uint8) if image_id == reader.ids[0] else gt)
    common = ["--params", str(params)]
    model = tmp_path / "model.pt"
    _stage("train_deeplab")([str(tiny_voc), str(labels), str(model), "--live-dir", str(tmp_path / "live"),
                             "--checkpoints", str(tmp_path / "ckpt"), *common])
    assert not (tmp_path / "ckpt" / "last.pt").exists()  # cleared once the model is written (no stale resume)
    assert (tmp_path / "live" / "plots" / "metrics" / "train_deeplab" / "loss.tsv").is_file()
    csv = tmp_path / "per_class.csv"
    _stage("evaluate_deeplab")([str(tiny_voc), f"pseudo={model}", f"again={model}",
                                *(f"--metric={f}={tmp_path / f}.json" for f in ("miou", "miou_crf")),
                                "--per-class", str(csv), *common])
    figures = {f: json.loads((tmp_path / f"{f}.json").read_text()) for f in ("miou", "miou_crf")}
    result = figures["miou"]
    assert set(result) == {"pseudo", "again"} and 0 <= result["pseudo"] <= 1 and result["again"] == result["pseudo"]
    assert set(figures["miou_crf"]) == {"pseudo", "again"}
    rows = csv.read_text().splitlines()
    assert rows[0] == "class,pseudo,pseudo_crf,again,again_crf" and len(rows) == 1 + len(reader.class_names)
    first = model.read_bytes()
    _stage("train_deeplab")([str(tiny_voc), str(labels), str(model), "--live-dir", str(tmp_path / "live"),
                             "--checkpoints", str(tmp_path / "ckpt2"), *common])
    assert model.read_bytes() == first  # reproducible bytes
    (labels / f"{reader.ids[1]}.png").unlink()
    with pytest.raises(DataError, match=f"{reader.ids[1]}.png"):
        _stage("train_deeplab")([str(tiny_voc), str(labels), str(model), *common])


@pytest.mark.slow
def test_train_stage_under_torchrun_matches_the_launcher(tiny_voc, tmp_path):
    """`torchrun --nproc_per_node 2 stages/train_deeplab.py` (what a GPU lab runs) trains on the two torchrun
    ranks and writes the same weights as the stage's own 2-process launcher (runtime.train_processes: 2)."""
    import os
    import subprocess
    import sys

    from a2gnn.segmentation.deeplab import load_deeplab

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "dataset": {"root": str(tiny_voc)}, "deeplab": {**TINY, "val_every": 0},
        "runtime": {"torch_threads": 1, "workers": 0, "train_processes": 2},
    }))
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    outs = {}
    for name, launcher in (("own", [sys.executable]),
                           ("torchrun", [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2",
                                         "--standalone"])):
        out = tmp_path / name / "model.pt"
        subprocess.run([*launcher, str(root / "stages" / "train_deeplab.py"), "--params", str(params), str(tiny_voc),
                        "gt", str(out), "--live-dir", str(tmp_path / name / "live"),
                        "--checkpoints", str(tmp_path / name / "ckpt")], check=True, env=env, cwd=tmp_path)
        outs[name] = load_deeplab(out)[0]
    assert same_weights(outs["own"], outs["torchrun"])


def test_full_size_pseudo_labels_are_shrunk_with_the_photos(tiny_voc, tmp_path):
    """``dataset.max_side``: DeepLab sees the shrunk photo; a label map written at the photo's full size is
    shrunk to it by nearest neighbour (the ground truth's rule), a map of any other size is an error."""
    small = open_dataset(DatasetConfig(max_side=64), "train", tiny_voc)
    labels = tmp_path / "labels"
    for image_id in small.ids:
        write_label(labels / f"{image_id}.png", small.original.semantic_gt(image_id))
    data = SegmentationDataset(small, labels)
    first = small.ids[0]
    image, label = data.sample(first)
    assert image.shape[:2] == label.shape == small.semantic_gt(first).shape and max(label.shape) == 64
    assert np.array_equal(label, small.semantic_gt(first))
    write_label(labels / f"{first}.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(DataError, match=f"{first}.png"):
        data.sample(first)
