r"""The A²GNN network (paper §4.4, Eq. 16-19) and its hyper-parameters (§5).

.. math::
    H^1 = \mathrm{ReLU}(X W^0) \;\text{(Eq. 16)}, \quad
    H^{l+1} = P^l H^l,\; l = 1..L \;\text{(Eq. 17-18)}, \quad
    O = \mathrm{softmax}(H^{L+1} W^{L+1}) \;\text{(Eq. 19)}

with dropout after the embedding layer and no biases (as the authors). Two modules compute the same
function:

* :class:`A2GNN` - one graph, plain ``(D, F)`` parameters (the paper's "one fresh model per image");
* :class:`BatchedA2GNN` - B graphs at once with every parameter stacked along a leading image dimension
  (``W^0`` is ``(B, D, F)``), nodes padded to ``(B, N_max, D)`` for the dense products and the B graphs
  joined block-diagonally for the sparse ones. Image b only ever touches slice b of every parameter, so
  the sum of per-image losses gives each slice exactly its own image's gradient.

Both draw their initial parameters with :func:`init_parameters` from a per-image generator, so
``BatchedA2GNN`` slice b equals ``A2GNN`` built from the same generator.

The L propagation layers are chosen by ``GNNConfig.layer_type`` (Fig. 7) through the :data:`LAYER_KINDS`
registry: one :class:`LayerKind` per kind holds the function both modules call, the extra parameters it draws and
its attention terms: "a2gnn" (Eq. 18), "agnn" (Eq. 18 without the edge term), "gcn" (Kipf & Welling on the
affinity edges) and "gat" (Veličković et al., :mod:`a2gnn.gnn.gat`). Adding a kind is one stack function, one
``LAYER_KINDS.add`` and one test (docs/ARCHITECTURE.md, "How to add a GNN layer").
"""

from __future__ import annotations

import dataclasses
import math
import typing

import torch
from torch import Tensor, nn

from a2gnn.core.config import Config
from a2gnn.core.registry import Registry
from a2gnn.gnn.consistency import CONSISTENCY_SCALES
from a2gnn.gnn.gat import gat_layer, per_image_matmul
from a2gnn.gnn.layers import EdgeCSR, affinity_attention, propagate

CE_RESOLUTIONS = ("grid", "image")
SEED_MAPS = ("M_g", "M_F", "weak/gnn", "weak/affinity")  # outputs/seeds/<name>; weak/*: §7.1, stages/weak_seeds.py


@dataclasses.dataclass(frozen=True)
class GNNConfig(Config):
    """``gnn`` section: the A²GNN network and its training (paper §4.4-4.5, §5)."""

    SECTION: typing.ClassVar[str] = "gnn"
    # --- network (Eq. 16-19) ---
    hidden: int = 256  # output channels of W^0 and of the attention layers (§5)
    layers: int = 3  # L, number of affinity attention layers (§4.4)
    dropout: float = 0.5  # dropout rate after the embedding layer H^1 (§5)
    beta: float = 10.0  # β of Eq. 18 (paper leaves it; the authors' code fixes 10)
    # layer kind (Fig. 7): "a2gnn" = Eq. 18; "agnn" = softmax(w·cos) over S(i) (AGNN, no edge term);
    # "gcn" = ReLU(D^-1/2 E D^-1/2 H W^l) with a weight per layer (Kipf & Welling, on the affinity edges);
    # "gat" = ELU(sum_j softmax_j(LeakyReLU(a_dst.W h_i + a_src.W h_j)) W h_j), one head, E_ij unused (GAT)
    layer_type: str = "a2gnn"
    use_cos_term: bool = True  # Table 4(d): keep the attention term w·cos of Eq. 18 (false = affinity only)
    use_edge_term: bool = True  # Table 4(d): keep the affinity term β[cos>0]E_ij of Eq. 18 (false = cos only)
    # softmax of Eq. 19 only over background + the image's box classes (other classes get probability 0);
    # the paper does not say, but the image's classes are known from its boxes
    restrict_to_image_labels: bool = True
    # node labels V^l: the seed map the A²GNN learns from, "M_g" (Eq. 5, paper) | "M_F" (Eq. 4; Table 4(e));
    # dvc.yaml passes outputs/seeds/${gnn.seeds} to the pseudo-label stage
    seeds: str = "M_g"
    # --- optimisation (§5) ---
    lr: float = 0.03  # Adam learning rate
    weight_decay: float = 5e-4  # Adam weight decay (L2 added to the gradient)
    epochs: int = 100  # total epochs (= optimisation steps on the full graph)
    first_phase_epochs: int = 50  # epochs without L_reg and consistency checking (§5, first stage)
    # --- loss (Eq. 20-26) ---
    lambda_reg: float = 0.01  # λ_1 of Eq. 20, weight of L_reg
    use_mp: bool = True  # add L_mp (Eq. 26) in both phases
    use_reg: bool = True  # add λ_1 L_reg (Eq. 22) in the second phase
    # false: Eq. 21 (mean over V^l); true: bg and fg seeds averaged separately, then summed (authors' code)
    class_balanced_ce: bool = False
    # where Eq. 21 is evaluated: "grid" = on the nodes against M_g down-sampled to the grid; "image" = node
    # log-probabilities bilinearly up-sampled to the image (a2gnn.ops.grid, as at inference) against the full-
    # resolution M_g (paper §5: losses at the original resolution)
    ce_resolution: str = "grid"
    mp_unique_nodes: bool = True  # K_j of Eq. 24 as a set (a node picked by a row and a column counts once)
    # --- consistency checking (Eq. 27-28) ---
    use_consistency: bool = True  # apply Eq. 28 in the second phase
    # keep a seed of a box's class inside the box only if its cosine distance d = 1 - cos to the box prototype
    # (Eq. 27) is <= tau (Eq. 28 as printed, keep if d > 0, removes nothing useful; see consistency.py):
    # "absolute": tau = consistency_threshold; "background": tau = consistency_threshold * d(prototype, mean
    # feature of the image's nodes outside every box); "nearest" (default): tau_i = consistency_threshold *
    # d(H(i), that background mean), i.e. with 1.0 a seed is kept iff nearer to its box prototype than to the
    # background (measured: removes mostly wrong seeds, where "background" 0.5 removed mostly correct ones)
    consistency_scale: str = "nearest"
    consistency_threshold: float = 1.0
    consistency_cumulative: bool = False  # false: each iteration filters the ORIGINAL M_g; true: removals accumulate
    # --- pseudo labels (our choice for photos; 0 = the paper) ---
    # share of GrabCut's pixel-level soft label (M_B, grabcut_crf.confidence) in the scores before the CRF: the
    # node grid (stride 8) is coarser than small objects, GrabCut works on pixels (a2gnn.pseudo_labels.grabcut_crf)
    grabcut_fusion: float = 0.0

    def validate(self) -> None:
        self.check(self.hidden >= 1, "hidden", ">= 1")
        self.check(self.layers >= 0, "layers", ">= 0")
        self.check(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)")
        self.check(self.beta >= 0.0, "beta", ">= 0")
        self.check(self.layer_type in LAYER_KINDS, "layer_type", f"one of {LAYER_KINDS.names()}")
        self.check(self.seeds in SEED_MAPS, "seeds", f"one of {SEED_MAPS}")
        self.check(self.use_cos_term or self.use_edge_term, "use_cos_term", "true when use_edge_term is false")
        self.check(self.lr > 0.0, "lr", "> 0")
        self.check(self.weight_decay >= 0.0, "weight_decay", ">= 0")
        self.check(self.epochs >= 1, "epochs", ">= 1")
        self.check(0 <= self.first_phase_epochs <= self.epochs, "first_phase_epochs", "in [0, epochs]")
        self.check(self.lambda_reg >= 0.0, "lambda_reg", ">= 0")
        self.check(self.ce_resolution in CE_RESOLUTIONS, "ce_resolution", f"one of {CE_RESOLUTIONS}")
        self.check(self.consistency_scale in CONSISTENCY_SCALES, "consistency_scale",
                   f"one of {CONSISTENCY_SCALES.names()}")
        self.check(self.consistency_threshold >= 0.0, "consistency_threshold", ">= 0")
        self.check(0.0 <= self.grabcut_fusion <= 1.0, "grabcut_fusion", "in [0, 1]")

    @property
    def attention_terms(self) -> tuple[bool, bool]:
        """(use_cos_term, use_edge_term) of the attention layers, as the layer kind reads them ("agnn": no edge)."""
        return LAYER_KINDS[self.layer_type].attention_terms(self)


def glorot(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Glorot/Xavier-uniform matrix U(-a, a), a = sqrt(6 / (fan_in + fan_out)) over the last two dims."""
    a = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * a


def init_parameters(in_dim: int, num_classes: int, cfg: GNNConfig,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Initial parameters of one image's network, drawn in a fixed order from ``generator``.

    W^0 (D, F) and W^{L+1} (F, C) Glorot-uniform (the paper does not say; this is GCN's choice), the
    attention scalars w^l (L,) uniform in [0, 1] (authors' code), and the layer kind's own parameters
    (:class:`LayerKind`): drawn in the order W^0, w, ``kind.draw_before_output``, W^{L+1},
    ``kind.draw_after_output`` (GAT draws last, so the other kinds draw exactly what they drew before GAT was
    added). ``w`` is drawn (and unused) for "gcn" and "gat" too.
    """
    kind = LAYER_KINDS[cfg.layer_type]
    params = {
        "W0": glorot((in_dim, cfg.hidden), generator),
        "w": torch.rand((cfg.layers,), generator=generator),
    }
    params.update(kind.draw_before_output(cfg, generator))
    params["W_out"] = glorot((cfg.hidden, num_classes), generator)
    params.update(kind.draw_after_output(cfg, generator))
    return params


def _register_parameters(module: nn.Module, params: dict[str, Tensor]) -> None:
    """Each parameter as an ``nn.Parameter`` attribute of ``module``, in the order drawn."""
    for name, value in params.items():
        setattr(module, name, nn.Parameter(value))


def draw_dropout_mask(shape: tuple[int, ...], rate: float, generator: torch.Generator | None) -> Tensor:
    """Inverted-dropout mask: 1/(1-rate) with probability 1-rate, else 0 (so E[mask] = 1)."""
    keep = 1.0 - rate
    return (torch.rand(shape, generator=generator) < keep).to(torch.float32) / keep


def embedding(x: Tensor, W0: Tensor) -> Tensor:
    r"""Eq. (16): :math:`H^1 = \mathrm{ReLU}(X W^0)` (no bias).

    Shapes: x (N, D), W0 (D, F) -> (N, F); batched x (B, N, D), W0 (B, D, F) -> (B, N, F).
    """
    return torch.relu(torch.matmul(x, W0))


def output_log_probs(h: Tensor, W_out: Tensor, class_mask: Tensor | None = None) -> Tensor:
    r"""Eq. (19) in log space: :math:`\log O = \log\mathrm{softmax}(H^{L+1} W^{L+1})` (no bias).

    ``class_mask`` (allowed classes) sets the other classes' logits to -inf, so the softmax runs over the
    allowed classes only and the others get probability exactly 0.

    Shapes: h (N, F), W_out (F, C), class_mask (C,) bool -> (N, C);
    batched h (B, N, F), W_out (B, F, C), class_mask (B, C) -> (B, N, C).
    """
    logits = torch.matmul(h, W_out)
    if class_mask is not None:
        logits = logits.masked_fill(~class_mask.unsqueeze(-2), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def _layer(param: Tensor, l: int, batched: bool) -> Tensor:
    """Layer l's slice of a per-layer parameter: (L, ...) -> [l], or batched (B, L, ...) -> [:, l]."""
    return param[:, l] if batched else param[l]


def gcn_edge_values(csr: EdgeCSR, edge_weight: Tensor) -> Tensor:
    r"""Symmetric GCN normalisation of the weighted graph: :math:`E_{ij} / \sqrt{d_i d_j}`, :math:`d_i = \sum_j E_{ij}`.

    Shapes: edge_weight (E,) CSR order -> (E,).
    """
    deg = edge_weight.new_zeros(csr.num_nodes).index_add(0, csr.row, edge_weight)
    inv = deg.clamp_min(torch.finfo(edge_weight.dtype).tiny).rsqrt()
    return edge_weight * inv[csr.row] * inv[csr.col]


class A2GNN(nn.Module):
    r"""A²GNN for one graph: embedding (Eq. 16), dropout, L attention layers (Eq. 17-18), output (Eq. 19).

    ``forward(x, csr, edge_weight, dropout_mask=None, class_mask=None) -> (log O, H^{L+1})``.
    Dropout is applied only when a ``dropout_mask`` is given (the trainer draws it from the image's own
    generator; see :func:`draw_dropout_mask`), so ``model(...)`` without one is the evaluation pass.

    Shapes: x (N, D), edge_weight (E,) CSR order, dropout_mask (N, F), class_mask (C,) ->
    log O (N, C), H^{L+1} (N, F).
    """

    def __init__(self, in_dim: int, num_classes: int, cfg: GNNConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        # W0, w (w^l of Eq. 18, one scalar per layer), W_out and the layer kind's own (gcn_weight, gat_*)
        _register_parameters(self, init_parameters(in_dim, num_classes, cfg, generator))
        self.use_cos, self.use_edge = cfg.attention_terms

    def forward(self, x: Tensor, csr: EdgeCSR, edge_weight: Tensor, dropout_mask: Tensor | None = None,
                class_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = embedding(x, self.W0)
        if dropout_mask is not None:
            h = h * dropout_mask
        h = LAYER_KINDS[self.cfg.layer_type].stack(self, h, csr, edge_weight, None)
        return output_log_probs(h, self.W_out, class_mask), h


class BatchedA2GNN(nn.Module):
    r"""B independent A²GNNs evaluated together; slice b of every parameter belongs to image b.

    Parameters: W0 (B, D, F), w (B, L), W_out (B, F, C) and the layer kind's own (gcn_weight (B, L, F, F);
    gat_weight (B, L, F, F), gat_att (B, L, 2, F)); slice b is :func:`init_parameters` drawn from ``generators[b]``.

    ``forward(x, csr, edge_weight, edge_image, dropout_mask=None, class_mask=None) -> (log O, H^{L+1})``
    where the nodes are padded per image (node n of image b has flat id b * N_max + n) and ``csr`` joins
    the B graphs block-diagonally over the B * N_max flat nodes (padding nodes have no edges).

    Shapes: x (B, N_max, D), edge_weight (E,) CSR order, edge_image (E,) image of each edge,
    dropout_mask (B, N_max, F), class_mask (B, C) -> log O (B * N_max, C), H^{L+1} (B * N_max, F).
    """

    def __init__(self, in_dim: int, num_classes: int, cfg: GNNConfig, generators: list[torch.Generator]):
        super().__init__()
        self.cfg = cfg
        self.use_cos, self.use_edge = cfg.attention_terms
        per_image = [init_parameters(in_dim, num_classes, cfg, g) for g in generators]
        _register_parameters(self, {k: torch.stack([p[k] for p in per_image]) for k in per_image[0]})

    def forward(self, x: Tensor, csr: EdgeCSR, edge_weight: Tensor, edge_image: Tensor,
                dropout_mask: Tensor | None = None, class_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, n_max, _ = x.shape
        h = embedding(x, self.W0)
        if dropout_mask is not None:
            h = h * dropout_mask
        h = h.reshape(b * n_max, -1)
        h = LAYER_KINDS[self.cfg.layer_type].stack(self, h, csr, edge_weight, edge_image)
        log_probs = output_log_probs(h.view(b, n_max, -1), self.W_out, class_mask)
        return log_probs.reshape(b * n_max, -1), h


# ------------------------------------------------------------------------------------- the L propagation layers
# One function per layer kind: (model, h (N, F), csr, edge_weight (E,), edge_image) -> H^{L+1} (N, F), where
# edge_image is None for A2GNN (parameters (L, ...)) and the (E,) image of each edge for BatchedA2GNN
# (parameters (B, L, ...), h = the B * N_max padded flat nodes).
Model = typing.Union[A2GNN, BatchedA2GNN]


def _affinity_layers(m: Model, h: Tensor, csr: EdgeCSR, edge_weight: Tensor, edge_image: Tensor | None) -> Tensor:
    """"a2gnn" / "agnn": Eq. (17)-(18), w^l per image gathered per edge when batched."""
    for l in range(m.cfg.layers):
        w = m.w[l] if edge_image is None else m.w[:, l][edge_image]
        h = affinity_attention(h, csr, edge_weight, w, m.cfg.beta, m.use_cos, m.use_edge)
    return h


def _gcn_layers(m: Model, h: Tensor, csr: EdgeCSR, edge_weight: Tensor, edge_image: Tensor | None) -> Tensor:
    """"gcn": ReLU(D^-1/2 E D^-1/2 H W^l), W^l per image (bmm) when batched."""
    norm = gcn_edge_values(csr, edge_weight)
    for l in range(m.cfg.layers):
        h = torch.relu(per_image_matmul(propagate(csr, norm, h), _layer(m.gcn_weight, l, edge_image is not None)))
    return h


def _gat_layers(m: Model, h: Tensor, csr: EdgeCSR, edge_weight: Tensor, edge_image: Tensor | None) -> Tensor:
    """"gat": :func:`~a2gnn.gnn.gat.gat_layer` (E_ij unused); when batched, W^l per image (bmm) and the
    attention vectors gathered per node from the node's image."""
    batched = edge_image is not None
    if batched:
        num_images = m.gat_weight.shape[0]
        node_image = torch.arange(h.shape[0], device=h.device) // (h.shape[0] // num_images)
    for l in range(m.cfg.layers):
        att = _layer(m.gat_att, l, batched)  # (2, F) or (B, 2, F)
        if batched:
            att = att.index_select(0, node_image)  # (N, 2, F)
        h = gat_layer(h, csr, _layer(m.gat_weight, l, batched), att[..., 0, :], att[..., 1, :])
    return h


def _no_parameters(cfg: GNNConfig, generator: torch.Generator | None) -> dict[str, Tensor]:
    return {}


def _configured_terms(cfg: GNNConfig) -> tuple[bool, bool]:
    return cfg.use_cos_term, cfg.use_edge_term


def _gcn_parameters(cfg: GNNConfig, generator: torch.Generator | None) -> dict[str, Tensor]:
    """``gcn_weight`` (L, F, F), Glorot-uniform."""
    return {"gcn_weight": glorot((cfg.layers, cfg.hidden, cfg.hidden), generator)}


def _gat_parameters(cfg: GNNConfig, generator: torch.Generator | None) -> dict[str, Tensor]:
    """``gat_weight`` (L, F, F) Glorot-uniform and ``gat_att`` (L, 2, F) (``[l, 0]`` = a_src, ``[l, 1]`` = a_dst)
    uniform in ±sqrt(6 / (F + 1)), Glorot's bound for GAT's (F, 1) attention kernel."""
    weight = glorot((cfg.layers, cfg.hidden, cfg.hidden), generator)
    bound = math.sqrt(6.0 / (cfg.hidden + 1))
    att = (torch.rand((cfg.layers, 2, cfg.hidden), generator=generator) * 2.0 - 1.0) * bound
    return {"gat_weight": weight, "gat_att": att}


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """One ``gnn.layer_type`` (Fig. 7): everything that differs between kinds of propagation layer.

    ``stack(model, h, csr, edge_weight, edge_image) -> H^{L+1}`` runs the L layers for both modules;
    ``draw_before_output`` / ``draw_after_output`` draw the kind's own parameters (name -> (L, ...) tensor) from
    the image's generator, before / after W^{L+1}; ``attention_terms(cfg)`` -> (use_cos_term, use_edge_term).
    """

    stack: typing.Callable[..., Tensor]
    draw_before_output: typing.Callable[[GNNConfig, torch.Generator | None], dict[str, Tensor]] = _no_parameters
    draw_after_output: typing.Callable[[GNNConfig, torch.Generator | None], dict[str, Tensor]] = _no_parameters
    attention_terms: typing.Callable[[GNNConfig], tuple[bool, bool]] = _configured_terms


LAYER_KINDS: Registry[LayerKind] = Registry("GNN layer kind")
"""``gnn.layer_type`` -> :class:`LayerKind`."""
LAYER_KINDS.add("a2gnn", LayerKind(_affinity_layers))
LAYER_KINDS.add("agnn", LayerKind(_affinity_layers, attention_terms=lambda cfg: (True, False)))
LAYER_KINDS.add("gcn", LayerKind(_gcn_layers, draw_before_output=_gcn_parameters))
LAYER_KINDS.add("gat", LayerKind(_gat_layers, draw_after_output=_gat_parameters))
