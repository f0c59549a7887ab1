"""graph.nodes: superpixels (Table 4(c) "S.P. + Dis.", GraphNet [21]) wired into the A²GNN pipeline.

Hand-computed 4-superpixel graph, superpixels = grid cells reproduce the grid-node tables, end-to-end training and
scoring give maps constant on every superpixel, and grid graphs are unchanged.
"""

import math

import numpy as np
import pytest
import torch

from a2gnn.core.config import ConfigError
from helpers import box_seed_candidates, outside_boxes
from a2gnn.graph.nodes import box_nodes
from a2gnn.data.embedded import generate
from a2gnn.data.voc import Annotation, Box, VOCDataset
from a2gnn.gnn.model import GNNConfig
from a2gnn.pseudo_labels.a2gnn import A2GNNScorer, graph_probs_to_image
from a2gnn.graph.nodes import grid_probs_to_image
from a2gnn.gnn.batch import collate
from a2gnn.gnn.train import train_a2gnn
from a2gnn.graph.build import build_image_graph
from a2gnn.graph.edges import regulariser_pairs
from a2gnn.graph.types import GraphConfig, ImageGraph
from a2gnn.graph.nodes import GridNodes, SuperpixelNodes
from a2gnn.graph.types import NODE_LAYOUTS
from a2gnn.ops.grid import GridMap
from a2gnn.gnn.losses import box_lines
from a2gnn.graph.superpixels import (
    pool_features,
    slic,
    superpixel_box_nodes,
    superpixel_means,
    superpixel_node_fields,
    superpixel_positions,
    superpixel_regulariser_pairs,
)
from helpers import tiny_embedded_config
from test_graph import dummy_model, synthetic_image, write_seeds
from test_graph_nodes import blocks_image

SP_CFG = {"nodes": "superpixels", "edges": "l1"}
QUADRANT_RGB = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40))  # TL, TR, BL, BR


def quadrant_image() -> np.ndarray:
    """16 x 16 image of four flat 8 x 8 quadrants: SLIC with 4 seeds returns exactly them (0 TL, 1 TR, 2 BL, 3 BR)."""
    image = np.zeros((16, 16, 3), np.uint8)
    for k, (y, x) in enumerate(((0, 0), (0, 8), (8, 0), (8, 8))):
        image[y:y + 8, x:x + 8] = QUADRANT_RGB[k]
    return image


def quadrant_graph(**cfg):
    """The quadrant image's superpixel fields on a stride-4 (4 x 4) feature grid with hand-made features."""
    f = torch.zeros(2, 4, 4)
    f[:, :2, :2] = torch.tensor([[2.0, 4.0], [2.0, 4.0]])[None] * torch.tensor([1.0, 0.0])[:, None, None]  # TL
    f[:, :2, 2:] = 1.0  # TR: [1, 1]
    f[0, 2:, :2], f[1, 2:, :2] = 0.0, torch.tensor([[1.0, 3.0], [1.0, 3.0]])  # BL: [0, 1] and [0, 3]
    f[0, 2:, 2:], f[1, 2:, 2:] = 3.0, 1.0  # BR: [3, 1]
    m_g = np.full((16, 16), 255, np.uint8)
    m_g[0, :3], m_g[1, 0] = 1, 2  # TL: three 1s, one 2 -> 1
    m_g[10, :2], m_g[11, :2] = 3, 2  # BL: two 3s, two 2s -> 2 (tie: the smaller class)
    m_g[8:, 8:] = 0  # BR -> 0; TR unlabelled -> 255
    config = GraphConfig.from_params({**SP_CFG, "sp_segments": 4, **cfg})
    image = quadrant_image()
    return superpixel_node_fields(torch.zeros(1, 4, 4), f, image, m_g, torch.zeros(3, 4, 4), config), image


def as_graph(fields, image, boxes=((0, 0, 2, 4, 1),), grid=(4, 4)) -> ImageGraph:
    return ImageGraph("q", fields.x, fields.edge_index, fields.edge_weight, fields.labels,
                      torch.tensor(boxes, dtype=torch.int64).reshape(-1, 5), grid, image.shape[:2], fields.pair_index,
                      fields.pair_weight, seeds=None, superpixels=fields.superpixels)


def test_config_switch_and_registry():
    cfg = GraphConfig()
    assert cfg.nodes == "grid" and cfg.sp_segments == 400 and cfg.sp_compactness == 10.0
    assert set(NODE_LAYOUTS) == {"grid", "superpixels"}
    assert GraphConfig.from_params(SP_CFG).nodes == "superpixels"
    with pytest.raises(ConfigError, match="edges"):  # Table 4(c): superpixels only with L1-distance edges
        GraphConfig.from_params({"nodes": "superpixels"})
    with pytest.raises(ConfigError, match="nodes"):
        GraphConfig.from_params({"nodes": "pixels"})
    with pytest.raises(ConfigError, match="sp_segments"):
        GraphConfig.from_params({**SP_CFG, "sp_segments": 0})
    with pytest.raises(ConfigError, match="sp_compactness"):
        GraphConfig.from_params({**SP_CFG, "sp_compactness": 0})


def test_four_superpixel_graph_against_hand_computed_values():
    fields, image = quadrant_graph(sigma=0.2, reg_radius=2, reg_sigma_xy=2.0, reg_sigma_rgb=1.0)
    expected_sp = np.zeros((16, 16), np.int64)
    expected_sp[:8, 8:], expected_sp[8:, :8], expected_sp[8:, 8:] = 1, 2, 3
    assert torch.equal(fields.superpixels, torch.from_numpy(expected_sp))
    # X: quadrant means of the features, then Eq. 15: TL [3, 0], TR [1, 1], BL [0, 2], BR [3, 1]
    x = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.75, 0.25]])
    assert torch.allclose(fields.x, x)
    # edges: every quadrant touches every other (8-connected, diagonals at the centre); L1 distances
    d = {(0, 1): 1.0, (0, 2): 2.0, (0, 3): 0.5, (1, 2): 1.0, (1, 3): 0.5, (2, 3): 1.5}
    mean = sum(d.values()) / 6
    expected = {(k, k): 1.0 for k in range(4)}
    for (a, b), dist in d.items():
        if math.exp(-dist / mean) > 0.2:  # σ = 0.2 drops TL-BL (exp(-2 / 1.083) = 0.158)
            expected[(a, b)] = expected[(b, a)] = math.exp(-dist / mean)
    got = dict(zip(map(tuple, fields.edge_index.t().tolist()), fields.edge_weight.tolist()))
    assert (0, 2) not in got and got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())
    assert fields.labels.tolist() == [1, 255, 2, 0]
    # L_reg: centroids at cells (0.5, 0.5), (0.5, 2.5), (2.5, 0.5), (2.5, 2.5): radius 2 keeps the 4-neighbours
    rgb = np.array(QUADRANT_RGB) / 255.0
    pairs = dict(zip(map(tuple, fields.pair_index.t().tolist()), fields.pair_weight.tolist()))
    side = [(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)]
    assert sorted(pairs) == sorted(side)
    for a, b in side:
        g = math.exp(-4.0 / (2 * 2.0**2) - ((rgb[a] - rgb[b]) ** 2).sum() / (2 * 1.0**2))
        assert pairs[(a, b)] == pytest.approx(g, rel=1e-5)
    wide, _ = quadrant_graph(reg_radius=3)  # 2 sqrt 2 <= 3: the diagonals too
    assert wide.pair_index.shape[1] == 12


def test_four_superpixel_layout_boxes_lines_taps_and_output():
    fields, image = quadrant_graph()
    boxes = ((0, 0, 2, 4, 1), (2, 0, 4, 2, 2), (0, 0, 1, 1, 3))  # left half, top-right quadrant, one corner cell
    graph = as_graph(fields, image, boxes)
    layout = graph.layout
    assert isinstance(layout, SuperpixelNodes) and graph.num_nodes == 4 and graph.nodes == "superpixels"
    # in box = the cell holding the centroid: TL (1, 1), TR (1, 3), BL (3, 1), BR (3, 3); the corner cell holds none
    box, node = layout.box_nodes(graph, graph.boxes)
    assert list(zip(box.tolist(), node.tolist())) == [(0, 0), (0, 2), (1, 1)]
    # L_mp lines: the box's rows / columns of cells -> the quadrant under each cell
    cell_quadrant = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]).reshape(-1)
    ln, _ = box_lines(graph.boxes, graph.grid)
    mapped = layout.cell_nodes(graph, ln)
    assert torch.equal(mapped, torch.where(ln >= 0, cell_quadrant[ln.clamp_min(0)], ln))
    assert mapped[0].tolist()[:2] == [0, 0] and mapped[3].tolist()[:2] == [2, 2]  # rows 0 and 3 of box 0
    # image-resolution L_ce: a pixel reads its own superpixel
    pixels = torch.tensor([0, 9 * 16 + 3, 15 * 16 + 15])
    tap_node, tap_weight, own = layout.pixel_taps(graph, pixels)
    assert own.tolist() == [0, 2, 3] and torch.equal(tap_node[:, 0], own)
    assert torch.equal(tap_weight, torch.tensor([[1.0, 0, 0, 0]] * 3))
    # output: node probabilities -> every pixel of the superpixel, classes in ``channels`` order
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    maps = graph_probs_to_image(graph, probs, np.array([2, 0]))
    assert maps.shape == (2, 16, 16)
    expected = probs[:, [2, 0]][fields.superpixels].permute(2, 0, 1).numpy()
    assert np.array_equal(maps, expected)
    # ground truth on the nodes (consistency diagnostic): majority of the labelled pixels
    gt = np.full((16, 16), 255, np.uint8)
    gt[:8, :8], gt[8:, 8:] = 4, 5
    assert layout.node_labels(graph, gt, "centre").tolist() == [4, 255, 255, 5]


def test_one_superpixel_per_cell_reproduces_the_grid_node_tables():
    """With the id map = the grid cells (H, W multiples of the stride), positions, L_reg pairs, box membership,
    box lines and taps of the superpixel layout equal the grid layout's."""
    rng = np.random.default_rng(0)
    H, W, s = 32, 48, 8
    h, w = H // s, W // s
    image = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    cells = torch.from_numpy((np.arange(H)[:, None] // s) * w + np.arange(W)[None, :] // s)
    positions = superpixel_positions(cells, (h, w))
    assert torch.equal(positions, torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w),
                                                             indexing="ij"), -1).reshape(-1, 2).double())
    img = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    colours = GridMap.from_sizes((H, W), (h, w)).downsample_image(img)
    for radius, squared in ((2, True), (3, False)):
        ref_index, ref_weight = regulariser_pairs(colours, radius, 3.0, 0.3, squared)
        index, weight = superpixel_regulariser_pairs(positions, superpixel_means(img, cells), radius, 3.0, 0.3,
                                                     squared)
        assert torch.equal(index, ref_index) and torch.allclose(weight, ref_weight, rtol=1e-5, atol=1e-7)
    boxes = torch.tensor([[1, 0, 4, 3, 2], [0, 2, 6, 4, 1], [5, 3, 6, 4, 3]])
    for got, ref in zip(superpixel_box_nodes(positions, boxes, (h, w)), box_nodes(boxes, (h, w))):
        assert torch.equal(got, ref)
    feats = torch.rand(5, h, w, generator=torch.Generator().manual_seed(0))
    x = pool_features(feats, cells)
    assert torch.allclose(x, feats.reshape(5, -1).t() / feats.reshape(5, -1).t().sum(1, keepdim=True))
    sp_graph = ImageGraph("c", x, torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0), torch.full((h * w,), 255),
                          boxes, (h, w), (H, W), torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0),
                          superpixels=cells)
    ln, _ = box_lines(boxes, (h, w))
    assert torch.equal(sp_graph.layout.cell_nodes(sp_graph, ln), ln)
    pixels = torch.arange(0, H * W, 7)
    assert torch.equal(sp_graph.layout.pixel_taps(sp_graph, pixels)[2], GridMap((H, W), s).pixel_nodes(pixels))


def test_build_image_graph_with_superpixel_nodes_and_training_end_to_end():
    model = dummy_model()
    image = blocks_image(5)  # 48 x 64: stride-8 grid 6 x 8
    m_g = np.full(image.shape[:2], 255, np.uint8)
    m_g[:20, :28], m_g[30:, :36], m_g[2:20, 36:60] = 0, 1, 2
    ann = Annotation("img", 64, 48, (Box(30, 0, 64, 24, 2), Box(0, 24, 40, 48, 1)))
    cfg = GraphConfig.from_params({**SP_CFG, "sp_segments": 12, "radius": 2, "reg_radius": 3})
    graph = build_image_graph(model, image, m_g, ann, cfg)
    sp = slic(image, 12, cfg.sp_compactness)  # the reference id map: SLIC at the image's size
    K = int(sp.max()) + 1
    assert torch.equal(graph.superpixels, torch.from_numpy(sp)) and graph.num_nodes == K
    assert graph.x.shape[0] == K and graph.labels.shape == (K,) and graph.grid == (6, 8)
    assert int(graph.edge_index.max()) < K and int(graph.pair_index.max()) < K and graph.pair_index.shape[1] > 0
    gnn = GNNConfig.from_params({"hidden": 8, "epochs": 6, "first_phase_epochs": 3})
    batch = collate([graph], 3, gnn)
    assert batch.cand_node.numel() > 0 and batch.outside_node.numel() > 0  # Eq. 27-28 and MP have work to do
    assert int(batch.line_nodes.max()) < K
    for resolution in ("grid", "image"):
        cfg_r = GNNConfig.from_params({"hidden": 8, "epochs": 6, "first_phase_epochs": 3,
                                       "ce_resolution": resolution})
        (probs,), (labels,) = train_a2gnn([graph], cfg_r, 3, return_labels=True)
        assert probs.shape == (K, 3) and torch.isfinite(probs).all() and labels.shape == (K,)
        maps = graph_probs_to_image(graph, probs, np.array([0, 1, 2]))
        assert maps.shape == (3, 48, 64)
        for k in range(K):  # constant on every superpixel
            inside = maps[:, sp == k]
            assert np.array_equal(inside, np.repeat(inside[:, :1], inside.shape[1], axis=1))


def test_a2gnn_scorer_with_superpixel_nodes_gives_maps_constant_on_superpixels(tmp_path):
    root = tmp_path / "data"
    generate(tiny_embedded_config(n_train=2, n_val=1, min_size=48, max_size=64), root)
    ds = VOCDataset(root, "train")
    seed_dir = tmp_path / "M_g"
    write_seeds(ds, seed_dir)
    graph_cfg = GraphConfig.from_params({**SP_CFG, "sp_segments": 16, "radius": 2, "reg_radius": 2})
    gnn = GNNConfig.from_params({"hidden": 8, "epochs": 4, "first_phase_epochs": 2})
    scorer = A2GNNScorer(ds, dummy_model(), seed_dir, graph_cfg, gnn, "cpu", 0, 0, 4)
    ids = ds.ids[:2]
    annotations = [ds.annotation(i) for i in ids]
    scores = scorer(ids, annotations)
    assert scorer.checks.images == 2
    for i, a, s in zip(ids, annotations, scores):
        sp = slic(ds.image(i), 16, graph_cfg.sp_compactness)
        assert s.shape == (1 + len(a.image_labels), a.height, a.width) and np.isfinite(s).all()
        label_map = s.argmax(0)
        for k in range(int(sp.max()) + 1):
            assert len(np.unique(label_map[sp == k])) == 1


def test_grid_nodes_unchanged():
    """Grid graphs carry no id map, use the grid layout, and its tables are the grid functions' own."""
    model = dummy_model()
    image, m_g = synthetic_image()
    ann = Annotation("img", 56, 40, (Box(20, 5, 56, 30, 2), Box(0, 0, 16, 16, 1)))
    graph = build_image_graph(model, image, m_g, ann, GraphConfig.from_params({"radius": 2, "reg_radius": 3}))
    assert graph.superpixels is None and graph.nodes == "grid" and isinstance(graph.layout, GridNodes)
    h, w = graph.grid
    assert graph.num_nodes == h * w
    batch = collate([graph], 3, GNNConfig())
    ln, lb = box_lines(graph.boxes, graph.grid)
    cb, cn = box_seed_candidates(graph.labels, graph.boxes, graph.grid)
    assert torch.equal(batch.line_nodes, ln) and torch.equal(batch.line_box, lb)
    assert torch.equal(batch.cand_box, cb) and torch.equal(batch.cand_node, cn)
    assert torch.equal(batch.outside_node, outside_boxes(graph.boxes, graph.grid))
    probs = torch.softmax(torch.randn(h * w, 3, generator=torch.Generator().manual_seed(0)), 1)
    channels = np.array([0, 2])
    assert np.array_equal(graph_probs_to_image(graph, probs, channels),
                          grid_probs_to_image(probs, graph.grid, graph.image_size, channels))
