"""a2gnn.core.training: optimizer groups, poly schedule, checkpoints, resume — and the CAM / affinity trainings built
on them give the same weights as before (hashes frozen under the numerics pin, 1 thread; skipped without it)."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import numpy as np
import pytest
import torch
from torch import nn

from a2gnn.core import numerics
from a2gnn.affinity.train import build_affinity_net, fit_affinity
from a2gnn.data.voc import VOCDataset
from a2gnn.seeds.cam import CAMConfig, build_cam_model
from a2gnn.seeds.cam_train import train_cam_model
from a2gnn.affinity.train import AffinityConfig
from a2gnn.core.config import ConfigError, load_params
from a2gnn.segmentation.deeplab import DeepLabConfig
from a2gnn.core.training import (
    Checkpointer,
    OptimConfig,
    PolySchedule,
    build_optimizer,
    fingerprint,
    make_optimizer,
    make_schedule,
    param_groups,
    poly_factor,
    rng_state,
    set_rng_state,
)
from helpers import tiny_affinity_cfg as tiny_cfg
from helpers import two_images
from helpers import TINY_CAM as TINY
from helpers import make_tiny_voc


def weights_hash(model: nn.Module) -> str:
    d = hashlib.sha256()
    for k, v in model.state_dict().items():
        d.update(k.encode())
        d.update(v.detach().cpu().contiguous().numpy().tobytes())
    return d.hexdigest()[:16]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def cam_data(tmp_path):
    torch.set_num_threads(1)
    return VOCDataset(make_tiny_voc(tmp_path / "data"), "train")


# ----------------------------------------------------------------------------------- pieces
def test_param_groups_and_optimizers():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    groups = param_groups(model, 0.1, model[1].parameters(), head_lr_mult=10.0)
    assert [len(g["params"]) for g in groups] == [2, 2] and [g["lr"] for g in groups] == [0.1, 1.0]
    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        opt = build_optimizer(groups, name, 0.1, momentum=0.9, weight_decay=1e-4)
        assert isinstance(opt, cls) and [g["initial_lr"] for g in opt.param_groups] == [0.1, 1.0]
    with pytest.raises(ValueError):
        build_optimizer(groups, "lbfgs", 0.1)


def test_optim_config_one_nested_block_for_the_three_trainings():
    """cam, affinity and deeplab read the same ``optim`` block; the old flat keys are refused by name."""
    params = load_params("params.yaml")
    for cls, section in ((CAMConfig, "cam"), (AffinityConfig, "affinity"), (DeepLabConfig, "deeplab")):
        cfg = cls.from_params(params[section])
        assert cfg.optim == OptimConfig.from_params(params[section]["optim"])
        assert cfg.optim == OptimConfig()  # the embedded profile: Adam 1e-3, poly 0.9 everywhere
    for old in ("lr_power", "optimizer", "lr", "poly_power"):
        with pytest.raises(ConfigError, match=old):
            CAMConfig.from_params({old: 0.9})
    with pytest.raises(ConfigError, match="rmsprop"):
        OptimConfig.from_params({"name": "rmsprop"})
    with pytest.raises(ConfigError, match="momentum"):
        AffinityConfig.from_params({"optim": {"momentum": 1.0}})


def test_make_optimizer_and_schedule_follow_the_config():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    cfg = OptimConfig(name="sgd", lr=0.2, head_lr_mult=10.0, momentum=0.5, weight_decay=0.01, poly_power=2.0)
    opt = make_optimizer(model, cfg, model[1].parameters())
    assert isinstance(opt, torch.optim.SGD)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert [g["lr"] for g in opt.param_groups] == [0.2, 2.0]
    assert all(g["momentum"] == 0.5 and g["weight_decay"] == 0.01 for g in opt.param_groups)
    sched = make_schedule(opt, 4, cfg)
    for _ in range(3):
        sched.step()
    sched.apply()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2 * 0.25**2, 2.0 * 0.25**2])  # (1 - 3/4)^2


def test_cam_head_is_the_new_layers():
    """CAM's head (``cam.optim.head_lr_mult``): its classifier and SEAM's PCM, nothing of the backbone."""
    model = build_cam_model(dataclasses.replace(TINY, ecr_weight=1.0, pcm_channels=4), 3)
    head = {id(p) for p in model.head_parameters()}
    assert head == {id(model.classifier.weight), id(model.pcm.weight)}
    assert not head & {id(p) for p in model.backbone.parameters()}


def test_poly_schedule_matches_formula_and_resumes():
    opt = build_optimizer(param_groups(nn.Linear(2, 2), 0.5), "sgd", 0.5)
    sched = PolySchedule(opt, total_steps=10, power=0.9)
    lrs = []
    for _ in range(10):
        sched.apply()
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [0.5 * (1 - t / 10) ** 0.9 for t in range(10)]
    assert poly_factor(0, 10, 0.9) == 1.0 and poly_factor(10, 10, 0.9) == 0.0
    other = PolySchedule(opt, 10, 0.9)
    other.load_state_dict(sched.state_dict())
    assert other.last_step == 10
    with pytest.raises(ValueError):
        PolySchedule(opt, 11, 0.9).load_state_dict(sched.state_dict())


def test_rng_state_round_trip():
    gen = np.random.default_rng(1)
    state = rng_state({"g": gen})
    first = (gen.random(), np.random.random(), random.random(), torch.rand(2))
    set_rng_state(state, {"g": gen})
    again = (gen.random(), np.random.random(), random.random(), torch.rand(2))
    assert first[:3] == again[:3] and torch.equal(first[3], again[3])


def test_checkpointer_ignores_other_runs_and_writes_gitignore(tmp_path):
    model = nn.Linear(2, 2)
    opt = build_optimizer(param_groups(model, 0.1), "adam", 0.1)
    sched = PolySchedule(opt, 5, 0.9)
    directory = tmp_path / "checkpoints" / "stage"
    Checkpointer(directory, fingerprint(a=1)).save(3, model, opt, sched)
    assert (tmp_path / "checkpoints" / ".gitignore").read_text().strip().endswith("*")
    assert Checkpointer(directory, fingerprint(a=2)).restore(model, opt, sched) == (0, {})
    assert Checkpointer(directory, fingerprint(a=1)).restore(model, opt, sched)[0] == 3
    assert Checkpointer(None, "x").restore(model, opt, sched) == (0, {})


# ----------------------------------------------------------------------------------- unchanged results
FROZEN = {  # torch 2.14.1 CPU, 1 thread, under the numerics pin (a2gnn/core/numerics.py: AVX2 kernels); Zen 3 and Zen 4
    "cam_sgd": "a366c0f3c5545da5", "cam_adam_er": "5dcdf150ae14006a", "cam_adamw": "1a7b9a020a451121",
    "aff_adam": "5bc8be70a21bea66", "aff_sgd": "239f62a452dca0a2", "aff_epochs": "8f41f9362fb94004",
}
FROZEN_STRICT = {  # the same under A2GNN_NUMERICS=strict (no oneDNN / NNPACK convolutions)
    "cam_sgd": "ade0657784448d60", "cam_adam_er": "d403c7a7ebd05477", "cam_adamw": "d2269461adfb22ee",
    "aff_adam": "be1eed571b56ab0a", "aff_sgd": "cea076fef7cf0cae", "aff_epochs": "8f41f9362fb94004",
}
needs_pin = pytest.mark.skipif(not numerics.pinned(), reason="frozen hashes hold only under the numerics pin "
                                                              "(x86-64 with AVX2, A2GNN_NUMERICS not native)")


@needs_pin
def test_cam_training_unchanged_by_refactor(cam_data):
    got = {
        "cam_sgd": train_cam_model(cam_data, dataclasses.replace(TINY, epochs=3), seed=0),
        "cam_adam_er": train_cam_model(cam_data, dataclasses.replace(
            TINY, epochs=2, optim=OptimConfig(name="adam", lr=1e-3), dropout=0.2, scale_range=(0.9, 1.1), equivariance_weight=1.0
        ), seed=3),
        "cam_adamw": train_cam_model(cam_data, dataclasses.replace(TINY, epochs=2, optim=OptimConfig(name="adamw", lr=1e-3)), seed=1),
    }
    frozen = FROZEN_STRICT if numerics.strict() else FROZEN
    assert {k: weights_hash(m) for k, m in got.items()} == {k: frozen[k] for k in got}


@needs_pin
def test_affinity_training_unchanged_by_refactor():
    torch.set_num_threads(1)
    data = two_images()
    got = {}
    for name, cfg, steps in [
        ("aff_adam", tiny_cfg(), 3), ("aff_sgd", tiny_cfg(optim={"name": "sgd", "lr": 0.01, "head_lr_mult": 10.0}), 3),
        ("aff_epochs", tiny_cfg(epochs=2, batch_size=1), None),
    ]:
        torch.manual_seed(0)
        net = build_affinity_net(cfg)
        fit_affinity(net, lambda i: data[i], 2, cfg, "cpu", seed=5, steps=steps)
        got[name] = weights_hash(net)
    frozen = FROZEN_STRICT if numerics.strict() else FROZEN
    assert got == {k: frozen[k] for k in got}


# ----------------------------------------------------------------------------------- resume
class Interrupt(Exception):
    pass


def stop_after(k: int):
    def callback(epoch: int, loss: float) -> None:
        if epoch + 1 == k:
            raise Interrupt

    return callback


def test_cam_interrupted_training_resumes_to_same_weights(cam_data, tmp_path):
    cfg = dataclasses.replace(TINY, epochs=3, optim=OptimConfig(name="adam", lr=1e-3), dropout=0.2, scale_range=(0.9, 1.1))
    full = train_cam_model(cam_data, cfg, seed=2)
    ckpt = tmp_path / "checkpoints" / "cam"
    with pytest.raises(Interrupt):
        train_cam_model(cam_data, cfg, seed=2, checkpoint_dir=ckpt, on_epoch=stop_after(2))
    epochs = []
    resumed = train_cam_model(cam_data, cfg, seed=2, checkpoint_dir=ckpt, on_epoch=lambda e, l: epochs.append(e))
    assert epochs == [2] and same_weights(full, resumed)
    # another seed does not resume from that checkpoint
    epochs.clear()
    train_cam_model(cam_data, cfg, seed=3, checkpoint_dir=ckpt, on_epoch=lambda e, l: epochs.append(e))
    assert epochs == [0, 1, 2]


def test_affinity_interrupted_training_resumes_to_same_weights(tmp_path):
    torch.set_num_threads(1)
    data = two_images()
    cfg = tiny_cfg(epochs=3, batch_size=1, optim={"name": "sgd", "lr": 0.01, "head_lr_mult": 10.0})

    def run(**kwargs):
        torch.manual_seed(0)
        net = build_affinity_net(cfg)
        history = fit_affinity(net, lambda i: data[i], 2, cfg, "cpu", seed=4, **kwargs)
        return net, history

    full, history = run()
    ckpt = tmp_path / "checkpoints" / "affinity"
    with pytest.raises(Interrupt):
        run(checkpoint_dir=ckpt, on_epoch=stop_after(1))
    resumed, rest = run(checkpoint_dir=ckpt)
    assert same_weights(full, resumed) and rest == history[2:]
