r"""Random-walk propagation of CAM scores over the affinity graph (PSA / SEAM; A²GNN Table 4(a) "RW").

The baseline that A²GNN compares against (paper §5.3, Table 4(a), "RW: we follow SEAM [38] to use random walk
for pseudo label generation") propagates class scores along the predicted affinities (Ahn & Kwak, CVPR 2018):

.. math::
    T = \operatorname{col\_normalise}(D^{\circ\beta}), \qquad
    \hat{s} = s \, T^{t}, \qquad t = 2^{\log t},

where :math:`D` is the affinity of Eq. (8) (or the thresholded edge :math:`E_{ij}` of Eq. (14); below
:math:`\sigma = 10^{-3}` the two differ only by values that vanish after the power), :math:`\beta` sharpens it,
and :math:`s` holds one row per class: a background score :math:`(1 - \max_k \mathrm{CAM}_k)^{\alpha}` followed by
the foreground CAMs, average-pooled to the feature grid.

**Normalisation direction.** ``T[a, b]`` is indexed ``[source, target]``: column ``b`` holds the weights with
which node ``b`` collects scores from its neighbours ``a``, ``T[a, b] = D(b, a)^β / Σ_{a'} D(b, a')^β``, so every
column sums to 1 and one step ``s ← s T`` replaces each node's score by a convex combination of its neighbours'
scores. With the :class:`a2gnn.graph.build.ImageGraph` convention (``edge_index[0]`` = target i, ``edge_index[1]`` =
source j, j ∈ S(i)), edge e contributes ``T[j_e, i_e]``. For a symmetric affinity this equals PSA's
``D^β / D^β.sum(0)``.

**Computing** :math:`sT^t`. PSA squares the dense N×N matrix ``log t`` times (cost ``log t · N³``, memory N²).
We instead apply ``t`` sparse-dense products ``s ← s T`` (cost ``t · E · C``, memory E), which for a 500×375 image
(N ≈ 3,000 nodes, E ≈ 80 N, C ≤ 21, t = 64) is ~3·10⁸ multiply-adds instead of ~1.6·10¹¹ and never forms
an N×N matrix. Squaring only pays off when t > log t · N³ / (E · C) (t > ~500·log t even for the 20×20
grid of a 160-px image), far beyond the walks used here.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from a2gnn.core.config import Config
from a2gnn.ops.grid import GridMap, infer_stride  # noqa: F401  (infer_stride re-exported)


@dataclasses.dataclass(frozen=True)
class RandomWalkConfig(Config):
    """``random_walk`` section: the PSA/SEAM random-walk baseline."""

    SECTION: typing.ClassVar[str] = "random_walk"
    beta: float = 8.0  # beta, power applied to the affinities D before normalisation (PSA/SEAM: 8)
    logt: int = 3  # log2 of the number of walk steps t = 2^logt (SEAM: 6, PSA: 8; tuned here: 3)
    bg_alpha: float = 6.0  # alpha, background score (1 - max_k CAM_k)^alpha (SEAM RW inference: 6; PSA: 4..32)

    def validate(self) -> None:
        self.check(self.beta > 0, "beta", "> 0")
        self.check(0 <= self.logt <= 12, "logt", "in [0, 12]")
        self.check(self.bg_alpha > 0, "bg_alpha", "> 0")

    @property
    def steps(self) -> int:
        """t = 2^logt."""
        return 2**self.logt


def transition_matrix(edge_index: Tensor, affinity: Tensor, num_nodes: int, beta: float) -> Tensor:
    r"""Column-normalised transition matrix :math:`T = D^{\circ\beta} / \mathbf{1}^\top D^{\circ\beta}` (PSA).

    ``T[j, i] = D(i, j)^β / Σ_{j' ∈ S(i)} D(i, j')^β`` for every edge e = (i, j) (see the module docstring for
    the direction). Duplicate edges add up. Every node needs at least one edge of positive affinity (the
    ImageGraph's self loops guarantee it).

    Shapes: edge_index (2, E) int64 (row 0 target i, row 1 source j), affinity (E,) float in [0, 1]
    -> sparse COO (N, N), coalesced, indexed [source, target], columns summing to 1.
    """
    if edge_index.ndim != 2 or edge_index.shape[0] != 2 or affinity.shape != (edge_index.shape[1],):
        shapes = f"{tuple(edge_index.shape)}, {tuple(affinity.shape)}"
        raise ValueError(f"edge_index must be (2, E) and affinity (E,), got {shapes}")
    target, source = edge_index[0], edge_index[1]
    weight = affinity.to(torch.float32).clamp_min(0) ** beta
    col_sum = torch.zeros(num_nodes, dtype=weight.dtype, device=weight.device).index_add_(0, target, weight)
    if not bool((col_sum > 0).all()):
        bad = int((col_sum <= 0).nonzero()[0])
        raise ValueError(f"node {bad} has no edge with positive affinity (include self loops)")
    value = weight / col_sum[target]
    index = torch.stack([source, target])
    return torch.sparse_coo_tensor(index, value, (num_nodes, num_nodes), check_invariants=True).coalesce()


def random_walk(scores: Tensor, transition: Tensor, steps: int) -> Tensor:
    r""":math:`\hat{s} = s\,T^{t}` with ``t = steps`` sparse-dense products (never a dense N×N matrix).

    Shapes: scores (C, N), transition sparse (N, N) [source, target] from :func:`transition_matrix` -> (C, N).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    n = transition.shape[0]
    if scores.ndim != 2 or scores.shape[1] != n:
        raise ValueError(f"scores must be (C, {n}), got {tuple(scores.shape)}")
    # s T = (T^T s^T)^T: iterate on the (N, C) layout with T^T in CSR (rows = targets) for fast sparse mm.
    with warnings.catch_warnings():  # torch flags sparse CSR as "beta"; CPU and CUDA sparse @ dense are supported
        warnings.simplefilter("ignore", UserWarning)
        gather = transition.t().coalesce().to_sparse_csr()
    x = scores.to(gather.dtype).t().contiguous()
    for _ in range(steps):
        x = gather @ x
    return x.t().contiguous()


def cam_to_grid(cams: Tensor, grid: tuple[int, int], stride: int | None = None) -> Tensor:
    """Average-pool score maps to the feature grid: cell (r, c) = mean over pixels [r·s, (r+1)·s) × [c·s, (c+1)·s).

    Border cells that stick out of the image average only their pixels inside it (PSA zero-pads instead,
    which dims them). ``stride`` defaults to :func:`infer_stride`.

    Shapes: cams (K, H, W) -> (K, h, w), grid = (h, w).
    """
    height, width = cams.shape[-2:]
    h, w = grid
    stride = infer_stride((height, width), grid) if stride is None else stride
    if h * stride < height or w * stride < width or (h - 1) * stride >= height or (w - 1) * stride >= width:
        raise ValueError(f"grid {grid} with stride {stride} does not tile an image of {height}x{width}")
    pad = (0, w * stride - width, 0, h * stride - height)
    x = cams.to(torch.float32)
    inside = torch.ones((1, height, width), dtype=x.dtype, device=x.device)
    summed = F.avg_pool2d(F.pad(x, pad), stride)
    count = F.avg_pool2d(F.pad(inside, pad), stride)
    return summed / count


def upsample_scores(scores: Tensor, image_size: tuple[int, int], stride: int) -> Tensor:
    """Bilinear up-sampling of grid scores back to the image (:meth:`a2gnn.ops.grid.GridMap.upsample`).

    Shapes: scores (C, h, w) -> (C, H, W).
    """
    return GridMap(tuple(image_size), stride).upsample(scores)


def background_score(cams: Tensor, alpha: float) -> Tensor:
    r"""PSA/SEAM background score :math:`(1 - \max_k \mathrm{CAM}_k)^{\alpha}` (all ones when K = 0).

    Shapes: cams (K, H, W) in [0, 1] -> (H, W).
    """
    if cams.shape[0] == 0:
        return torch.ones(cams.shape[-2:], dtype=torch.float32, device=cams.device)
    return (1 - cams.to(torch.float32).amax(dim=0)).clamp_min(0) ** alpha


def propagate_cams(
    cams: Tensor | np.ndarray,
    edge_index: Tensor,
    affinity: Tensor,
    grid: tuple[int, int],
    cfg: RandomWalkConfig,
    stride: int | None = None,
) -> Tensor:
    """Full RW inference of SEAM: [background; CAMs] -> grid -> s T^t -> bilinear back to the image.

    Use ``graph.edge_index`` and ``graph.edge_weight`` of an :class:`a2gnn.graph.build.ImageGraph` for the edges.

    Shapes: cams (K, H, W) in [0, 1] (foreground classes of the image) -> (1 + K, H, W) float32, channel 0 =
    background, channel k = cams[k - 1].
    """
    cams = torch.as_tensor(np.asarray(cams) if isinstance(cams, np.ndarray) else cams, dtype=torch.float32)
    cams = cams.to(affinity.device)
    image_size = tuple(cams.shape[-2:])
    stride = infer_stride(image_size, grid) if stride is None else stride
    scores = torch.cat([background_score(cams, cfg.bg_alpha)[None], cams], dim=0)
    pooled = cam_to_grid(scores, grid, stride)
    transition = transition_matrix(edge_index, affinity, grid[0] * grid[1], cfg.beta)
    walked = random_walk(pooled.reshape(scores.shape[0], -1), transition, cfg.steps)
    return upsample_scores(walked.reshape(scores.shape[0], *grid), image_size, stride)


def random_walk_labels(
    cams: Tensor | np.ndarray,
    labels: typing.Sequence[int] | np.ndarray | Tensor,
    edge_index: Tensor,
    affinity: Tensor,
    grid: tuple[int, int],
    cfg: RandomWalkConfig,
    stride: int | None = None,
) -> np.ndarray:
    """RW pseudo label: arg-max of :func:`propagate_cams` mapped to class ids (0 = background, labels[k]).

    Shapes: cams (K, H, W), labels (K,) foreground class indices -> (H, W) uint8.
    """
    class_ids = np.concatenate([[0], np.asarray(labels, dtype=np.int64).reshape(-1)])
    scores = propagate_cams(cams, edge_index, affinity, grid, cfg, stride)
    if scores.shape[0] != class_ids.shape[0]:
        raise ValueError(f"{scores.shape[0] - 1} CAMs but {class_ids.shape[0] - 1} labels")
    return class_ids[scores.argmax(dim=0).cpu().numpy()].astype(np.uint8)


@dataclasses.dataclass
class RandomWalkScorer:
    """Table 4(a) "RW" as a :class:`a2gnn.pseudo_labels.postprocess.Scorer`: each image's CAMs walked over its affinity
    graph (the same graphs as A²GNN, built without seeds), [background; CAMs] scores at image resolution.

    The walk runs on the feature grid the CAMs live on, so it always builds grid nodes: ``graph.nodes:
    superpixels`` (Table 4(c), an A²GNN ablation) leaves RW on grid nodes (with ``graph.edges``' edges)."""

    dataset: typing.Any
    model: typing.Any  # AffinityNet
    cam_dir: os.PathLike | str  # cam stage output: scores/<id>.npz
    graph_cfg: typing.Any  # GraphConfig
    cfg: RandomWalkConfig
    device: str

    def __call__(self, ids, annotations):
        from a2gnn.graph.build import build_graphs
        from a2gnn.pseudo_labels.postprocess import aligned_cams

        graph_cfg = dataclasses.replace(self.graph_cfg, nodes="grid")
        graphs = build_graphs(self.model, self.dataset, None, graph_cfg, self.device, ids=list(ids))
        scores = []
        for i, g, a in zip(ids, graphs, annotations):
            cams = aligned_cams(Path(self.cam_dir) / "scores" / f"{i}.npz", a)
            scores.append(propagate_cams(cams, g.edge_index, g.edge_weight, g.grid, self.cfg).numpy())
        return scores
