"""Affinity CNN: Eq. 6-13 against direct loops, the model, training, determinism and checkpoints."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import tiny_affinity_cfg as tiny_cfg
from helpers import two_images
from a2gnn.affinity.losses import (
    AffinityLabels,
    affinity,
    affinity_ce_loss,
    affinity_labels,
    affinity_regularised_loss,
    affinity_total_loss,
    downsample_image,
    downsample_labels,
    feature_distance,
    gaussian_kernel,
    pair_gaussian_kernel,
)
from a2gnn.affinity.model import AffinityNet
from a2gnn.affinity.train import (
    AffinityConfig,
    affinity_batch_loss,
    build_affinity_net,
    fit_affinity,
    load_affinity,
    make_batch,
    save_affinity,
)
from a2gnn.core.config import ConfigError
from a2gnn.data.voc import VOCDataset
from a2gnn.core.io import DataError, write_label
from a2gnn.ops.neighbours import grid_pairs, neighbour_valid, radius_offsets
from helpers import DummyBackbone

REPO = Path(__file__).resolve().parents[2]

LABELS_5x5 = torch.tensor(
    [
        [0, 0, 0, 255, 1],
        [0, 1, 1, 1, 1],
        [255, 1, 2, 2, 255],
        [0, 0, 2, 2, 0],
        [0, 255, 0, 0, 0],
    ]
)


def pairs_of(dense: torch.Tensor, h: int, w: int, offsets) -> dict:
    """Dense (K, h, w) pair map -> {(i, j): value} over in-grid pairs."""
    valid = neighbour_valid(h, w, offsets)
    i, j = grid_pairs(h, w, offsets)
    return dict(zip(zip(i.tolist(), j.tolist()), dense[valid].tolist()))


# ---------------------------------------------------------------------------------------------- down-sampling
def test_downsample_labels_centre_and_majority():
    label = np.array(
        [
            [1, 1, 2, 2],
            [1, 3, 2, 255],
            [255, 255, 0, 0],
            [255, 4, 0, 5],
        ],
        dtype=np.uint8,
    )
    # 2x2 cells; centre of cell (a, b) = pixel (2a + 1, 2b + 1)
    assert downsample_labels(label, (2, 2), "centre").tolist() == [[3, 255], [4, 5]]
    # majority per 2x2 block, ties -> smaller value: {1,1,1,3} -> 1, {2,2,2,255} -> 2, {255,255,255,4}, {0,0,0,5}
    assert downsample_labels(label, (2, 2), "majority").tolist() == [[1, 2], [255, 0]]
    # identity grid and batched input
    batch = torch.from_numpy(np.stack([label, label[::-1].copy()]))
    assert torch.equal(downsample_labels(batch, (4, 4)), batch.long())
    with pytest.raises(ValueError):
        downsample_labels(label, (2, 2), "mode")


def test_downsample_labels_majority_matches_loop_on_uneven_grid():
    g = np.random.default_rng(0)
    label = g.choice([0, 1, 2, 255], size=(7, 10)).astype(np.uint8)
    got = downsample_labels(label, (3, 4), "majority")
    for a in range(3):
        for b in range(4):
            ys = [y for y in range(7) if y * 3 // 7 == a]
            xs = [x for x in range(10) if x * 4 // 10 == b]
            vals, counts = np.unique(label[np.ix_(ys, xs)], return_counts=True)
            assert got[a, b] == vals[np.argmax(counts)]


def test_downsample_image_is_area_average():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    got = downsample_image(img, (2, 2))
    assert torch.allclose(got[1, 2, 1, 0], img[1, 2, 2:4, 0:2].mean())


# ---------------------------------------------------------------------------------------------- Eq. 6-7
@pytest.mark.parametrize("half", [False, True])
def test_eq6_7_pair_labels_match_loop_over_all_pixel_pairs(half):
    r = 2
    offsets = radius_offsets(r, half=half)
    out = affinity_labels(LABELS_5x5.unsqueeze(0), offsets)
    got = {name: pairs_of(getattr(out, name)[0].long(), 5, 5, offsets) for name in ("label", "bg_pos", "fg_pos", "neg")}
    seen = set()
    for i in range(25):
        for j in range(25):
            (yi, xi), (yj, xj) = divmod(i, 5), divmod(j, 5)
            if i == j or (yi - yj) ** 2 + (xi - xj) ** 2 > r * r:
                continue
            key = (i, j) if (i, j) in got["label"] else (j, i)
            assert key in got["label"]
            if half and frozenset((i, j)) in seen:
                continue
            seen.add(frozenset((i, j)))
            li, lj = int(LABELS_5x5[yi, xi]), int(LABELS_5x5[yj, xj])
            in_r_pair = li != 255 and lj != 255
            expected = 255 if not in_r_pair else int(li == lj)
            assert got["label"][key] == expected, (i, j)
            assert got["bg_pos"][key] == int(in_r_pair and li == lj == 0)
            assert got["fg_pos"][key] == int(in_r_pair and li == lj != 0)
            assert got["neg"][key] == int(in_r_pair and li != lj)
    n_pairs = sum(1 for i in range(25) for j in range(25) if i != j and sum(
        (a - b) ** 2 for a, b in zip(divmod(i, 5), divmod(j, 5))) <= r * r)
    assert len(got["label"]) == (n_pairs // 2 if half else n_pairs)
    # pairs leaving the grid are outside R_pair
    assert (out.label[0][~neighbour_valid(5, 5, offsets)] == 255).all()


# ---------------------------------------------------------------------------------------------- Eq. 8
def test_eq8_affinity_matches_direct():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 7, 4, 5, generator=g)
    offsets = radius_offsets(2, include_self=True)
    d = affinity(feature_distance(f, offsets))
    valid = neighbour_valid(4, 5, offsets)
    for b in range(2):
        got = pairs_of(d[b], 4, 5, offsets)
        flat = f[b].flatten(1)
        for (i, j), value in got.items():
            direct = math.exp(-(flat[:, i] - flat[:, j]).abs().sum().item() / 7)
            assert value == pytest.approx(direct, rel=1e-5)
    assert torch.all(d[:, (offsets == 0).all(1)] == 1.0)  # D(i, i) = 1
    assert valid.sum() == len(got)


# ---------------------------------------------------------------------------------------------- Eq. 10
def hand_labels(kinds):
    """kinds: per-pair 'b' (bg positive), 'f' (fg positive), 'n' (negative), 'x' (ignored) -> (1, 1, 1, P)."""
    as_mask = lambda k: torch.tensor([c == k for c in kinds]).view(1, 1, 1, -1)  # noqa: E731
    label = torch.tensor([{"b": 1, "f": 1, "n": 0, "x": 255}[c] for c in kinds]).view(1, 1, 1, -1)
    return AffinityLabels(label, as_mask("b"), as_mask("f"), as_mask("n"))


def test_eq10_paper_and_psa_weighting_on_hand_made_pairs():
    d = torch.tensor([0.9, 0.5, 0.7, 0.2, 0.6, 0.01]).view(1, 1, 1, -1)
    labels = hand_labels("bffnnx")
    pos = -(math.log(0.9) + math.log(0.5) + math.log(0.7)) / 3
    neg = -(math.log(0.8) + math.log(0.4)) / 2
    assert affinity_ce_loss(d, labels, "paper", eps=0.0).item() == pytest.approx(pos + neg, rel=1e-6)
    bg, fg = -math.log(0.9), -(math.log(0.5) + math.log(0.7)) / 2
    psa = 0.25 * bg + 0.25 * fg + 0.5 * neg
    assert affinity_ce_loss(d, labels, "psa", eps=0.0).item() == pytest.approx(psa, rel=1e-6)
    # empty sets contribute nothing; the ignored pair never does
    only_pos = hand_labels("bfxxxx")
    assert affinity_ce_loss(d, only_pos, "paper", eps=0.0).item() == pytest.approx(
        -(math.log(0.9) + math.log(0.5)) / 2, rel=1e-6
    )
    with pytest.raises(ValueError):
        affinity_ce_loss(d, labels, "other")


def test_eq10_gradient_pulls_positives_and_pushes_negatives():
    f = torch.tensor([[[[0.0, 1.0, 0.2]]]], requires_grad=True)  # 1 channel, 1x3 grid
    offsets = torch.tensor([[0, 1]])
    m = torch.tensor([[[1, 1, 2]]])  # pair (0,1) positive, (1,2) negative
    loss = affinity_ce_loss(affinity(feature_distance(f, offsets)), affinity_labels(m, offsets))
    loss.backward()
    # node 0 moves toward node 1 (positive pair): gradient on f0 is negative (descent increases f0)
    assert f.grad[0, 0, 0, 0] < 0


# ---------------------------------------------------------------------------------------------- Eq. 11-13
@pytest.mark.parametrize("squared", [True, False])
def test_eq13_kernel_matches_double_loop(squared):
    g = torch.Generator().manual_seed(2)
    img = torch.rand(1, 3, 4, 5, generator=g)
    r, sxy, srgb = 2, 1.5, 0.3
    offsets = radius_offsets(r, include_self=True)
    got = pairs_of(pair_gaussian_kernel(img, offsets, sxy, srgb, squared)[0], 4, 5, offsets)
    flat = img[0].flatten(1)
    for (i, j), value in got.items():
        (yi, xi), (yj, xj) = divmod(i, 5), divmod(j, 5)
        dxy = (yi - yj) ** 2 + (xi - xj) ** 2
        drgb = ((flat[:, i] - flat[:, j]) ** 2).sum().item()
        if not squared:
            dxy, drgb = math.sqrt(dxy), math.sqrt(drgb)
        expected = math.exp(-dxy / (2 * sxy**2) - drgb / (2 * srgb**2)) * (i != j)
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_gaussian_kernel_function_self_pair_is_zero():
    pos = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    col = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    got = gaussian_kernel(pos, col, sigma_xy=5.0, sigma_rgb=0.1, squared_distance=False)
    assert got[0] == 0.0 and got[1].item() == pytest.approx(math.exp(-5 / 50))


@pytest.mark.parametrize("normalisation", ["pairs", "sum"])
def test_eq11_12_regularised_loss_matches_double_loop(normalisation):
    g = torch.Generator().manual_seed(3)
    f = torch.randn(2, 4, 4, 4, generator=g)
    img = torch.rand(2, 3, 4, 4, generator=g)
    r, sxy, srgb = 2, 6.0, 0.5
    half = radius_offsets(r, half=True)
    dist = feature_distance(f, half)
    kernel = pair_gaussian_kernel(img, half, sxy, srgb)
    mask = neighbour_valid(4, 4, half).expand(2, -1, -1, -1)
    got = affinity_regularised_loss(dist, kernel, mask, normalisation, pair_multiplicity=2).item()
    total, count = 0.0, 0
    for b in range(2):
        ff, cc = f[b].flatten(1), img[b].flatten(1)
        for i in range(16):
            for j in range(16):  # all ordered pairs (i, j) of R_Ar (Eq. 11)
                (yi, xi), (yj, xj) = divmod(i, 4), divmod(j, 4)
                dxy = (yi - yj) ** 2 + (xi - xj) ** 2
                if i == j or dxy > r * r:
                    continue
                G = math.exp(-dxy / (2 * sxy**2) - ((cc[:, i] - cc[:, j]) ** 2).sum().item() / (2 * srgb**2))
                total += G * (ff[:, i] - ff[:, j]).abs().sum().item() / 4
                count += 1
    expected = total / count if normalisation == "pairs" else total / 2
    assert got == pytest.approx(expected, rel=1e-5)


def test_eq9_total_loss():
    assert affinity_total_loss(torch.tensor(0.5), torch.tensor(0.25), 3.0).item() == pytest.approx(1.25)


# ---------------------------------------------------------------------------------------------- model
def test_affinity_net_shapes_and_node_features():
    torch.manual_seed(0)
    net = AffinityNet(DummyBackbone(stride=4, channels=(6, 8, 10)), reduce_channels=(4, 5, 6), embed_channels=9)
    f_a, taps = net(torch.randn(2, 3, 30, 17))
    assert f_a.shape == (2, 9, 8, 5)
    assert [t.shape[1] for t in taps] == [6, 8, 10]
    x = AffinityNet.node_features(taps)
    assert x.shape == (2, 24, 8, 5) and torch.equal(x[:, 6:14], taps[1])
    with pytest.raises(ValueError):
        AffinityNet(DummyBackbone(stride=4, channels=(6, 8, 10)), reduce_channels=(4, 5))


def test_make_batch_pads_small_images_with_ignore():
    img, seed = np.full((10, 12, 3), 255, np.uint8), np.ones((10, 12), np.uint8)
    batch = make_batch([(img, seed)], np.random.default_rng(0), crop_size=16, stride=4, flip=False)
    assert batch.x.shape == (1, 3, 16, 16) and batch.m_g.shape == (1, 4, 4)
    assert ((batch.m_g == 255) == ~batch.valid).all()  # padding is unknown, image cells keep their label
    assert (batch.m_g[batch.valid] == 1).all() and batch.valid.sum() >= 4


@pytest.mark.parametrize("use_ar", [True, False])
def test_tiny_training_reduces_loss(use_ar):
    data = two_images()
    cfg = tiny_cfg(use_ar=use_ar)
    torch.manual_seed(0)
    net = AffinityNet(DummyBackbone(stride=4, channels=(6, 8, 10)), cfg.reduce_channels, cfg.embed_channels)
    fixed = make_batch(data, np.random.default_rng(0), 32, 4, flip=False)
    before, _ = affinity_batch_loss(net, fixed, cfg)
    fit_affinity(net, lambda i: data[i], 2, cfg, "cpu", seed=0, steps=15)
    after, terms = affinity_batch_loss(net, fixed, cfg)
    assert after.item() < 0.5 * before.item()
    assert (terms["l_ar"] > 0) == use_ar


def test_training_is_deterministic_and_seed_dependent():
    data = two_images()
    cfg = tiny_cfg()

    def run(seed):
        torch.manual_seed(0)
        net = build_affinity_net(cfg)
        hist = fit_affinity(net, lambda i: data[i], 2, cfg, "cpu", seed=seed, steps=3)
        return hist, net.state_dict()

    (h1, s1), (h2, s2), (h3, _) = run(5), run(5), run(6)
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1 != h3


def test_checkpoint_round_trip(tmp_path):
    cfg = tiny_cfg(backbone={"name": "small", "stride": 4, "width": 4, "weights": str(tmp_path / "gone.pt")})
    cfg_nw = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, weights=None))
    torch.manual_seed(0)
    net = build_affinity_net(cfg_nw)
    fit_affinity(net, lambda i: two_images()[i], 2, cfg_nw, "cpu", seed=0, steps=1)
    path = tmp_path / "model.pt"
    save_affinity(net.eval(), cfg, epoch=3, path=path)  # stored config names a weights file that no longer exists
    loaded = load_affinity(path)
    assert not loaded.training
    x = torch.randn(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.equal(net(x)[0], loaded(x)[0])
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_load_affinity_bad_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.pt"):
        load_affinity(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        load_affinity(bad)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {}, "config": tiny_cfg().to_dict()}, wrong)
    with pytest.raises(DataError, match="wrong.pt"):
        load_affinity(wrong)


def test_config_validation():
    with pytest.raises(ConfigError, match="crop_size"):
        tiny_cfg(crop_size=30)
    with pytest.raises(ConfigError, match="loss_weighting"):
        tiny_cfg(loss_weighting="uniform")
    with pytest.raises(ConfigError, match="unknown"):
        tiny_cfg(gamma=1)
    assert tiny_cfg(backbone={"name": "small", "stride": 8, "width": 4}, crop_size=32).backbone.stride == 8


# ---------------------------------------------------------------------------------------------- stage
def _stage_main():
    spec = importlib.util.spec_from_file_location("stage_affinity", REPO / "stages" / "affinity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow  # over 10 s on 2 cores (docs/testing.md)
def test_stage_is_deterministic_and_names_missing_seeds(tiny_voc, tmp_path):
    main = _stage_main()
    ds = VOCDataset(tiny_voc, "train")
    seeds = tmp_path / "M_g"
    for image_id in ds.ids:
        gt = ds.semantic_gt(image_id).copy()
        gt[::4] = 255
        write_label(seeds / f"{image_id}.png", gt)
    params = tmp_path / "params.yaml"
    affinity = {
        "backbone": {"name": "small", "stride": 8, "width": 4}, "radius": 2, "reduce_channels": [4, 4, 4],
        "embed_channels": 8, "crop_size": 32, "batch_size": 3, "epochs": 1, "optim": {"name": "adam", "lr": 0.001},
    }
    params.write_text(yaml.safe_dump({"base": {"seed": 3}, "affinity": affinity}))
    outs = [tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"]
    for out in outs:
        main(["--params", str(params), str(tiny_voc), str(seeds), str(out)])
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert load_affinity(outs[0]).embed_channels == 8
    (seeds / f"{ds.ids[-1]}.png").unlink()
    with pytest.raises(DataError, match=ds.ids[-1]):
        main(["--params", str(params), str(tiny_voc), str(seeds), str(tmp_path / "c" / "model.pt")])
    assert not (tmp_path / "c" / "model.pt").exists()
