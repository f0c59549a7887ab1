"""Speed and memory of the A²GNN pseudo-label optimisation (the hot loop of the `pseudo_labels` stage).

Implementations of the same per-image training (100 epochs of Eq. 16-26, same initialisation and schedule) on
random graphs of the embedded size and of VOC size, each timed on the same machine with the same processes:

* ``authors``  a model of the authors' released design: one fresh network + Adam per image in a loop, a dense
               N x N attention matrix masked to the radius-r window, the node logits and features bilinearly
               up-sampled x8 to the image at every step with L_ce and L_mp computed there (box rows/columns in
               pixels), and L_reg with a dense N x N kernel. Same FLOP-dominant work as the released code;
               consistency checking is left out (cheap in both designs), so it is a lower bound of their time.
* ``sparse``   ours, one image at a time: radius-r edge list (fused sparse attention kernel), losses on the grid.
* ``batched``  ours: ``batch_images`` graphs optimised together with stacked per-image parameters (the stage's
               path), batches spread over ``workers`` processes on a CPU.
* ``batched k=...`` (``--feature-dim k``) the same with node features projected to their top-k principal
               coordinates (``graph.feature_dim``; changes the method slightly, measured in the README).

Every row uses ``--workers`` processes (images or batches spread over them), so the ratios compare designs, not
core counts. Prints images/s for the full ``--epochs-full`` schedule (fixed cost + per-epoch cost, from the
difference of a short and a long run), the speed-up of each row over ``authors``, peak resident memory (the largest process) or peak GPU
memory, and the achieved GFLOP/s of the embedding layer (Eq. 16), the dominant dense kernel at VOC size.

    python benchmarks/pseudo_labels_speed.py                       # both sizes, CPU, 3 repeats (median)
    python benchmarks/pseudo_labels_speed.py --size voc --device cuda --feature-dim 256
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import a2gnn  # noqa: F401  (first: pins the numerical libraries' kernels, a2gnn/core/numerics.py)
import torch
import torch.nn.functional as F

from a2gnn.gnn.model import GNNConfig, draw_dropout_mask, embedding, init_parameters
from a2gnn.gnn.train import image_seed, train_a2gnn, train_a2gnn_single
from a2gnn.graph.features import normalize_node_features, project_node_features
from a2gnn.graph.types import ImageGraph
from a2gnn.ops.neighbours import grid_pairs, radius_offsets
from a2gnn.core.parallel import parallel_map

SIZES = {
    # grid side, node feature size D_g, classes, radius, images timed: embedded default (stride 8, ~160 px)
    "embedded": dict(grid=20, dim=448, classes=6, radius=5, images=8),
    # VOC: 448 px input, stride 8 -> 56 x 56 nodes, ResNet-38 taps 512 + 1024 + 4096 = 5632-d, 21 classes
    "voc": dict(grid=56, dim=5632, classes=21, radius=5, images=2),
    # a few seconds: checks that every row runs (tests/test_benchmark.py), not a speed figure
    "tiny": dict(grid=6, dim=16, classes=4, radius=2, images=2),
}
STRIDE = 8  # image pixels per node (the up-sampling factor of the authors' losses)
WARM_EPOCHS = 2  # the short run: its time minus its epochs' share is the fixed cost (processes, graph set-up)


def random_graph(index: int, grid: int, dim: int, classes: int, radius: int, feature_dim: int = 0) -> ImageGraph:
    """A graph with the structure of a real one: radius-r edges, ~30 % labelled nodes, two boxes."""
    gen = torch.Generator().manual_seed(index)
    n = grid * grid
    edges = grid_pairs(grid, grid, radius_offsets(radius, include_self=True))
    pairs = grid_pairs(grid, grid, radius_offsets(radius))
    labels = torch.randint(0, 3, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) < 0.7] = 255
    boxes = torch.tensor([[grid // 16, grid // 10, 5 * grid // 8, 3 * grid // 4, 1], [grid // 3, grid // 4, grid - 1, grid - 1, 2]])
    x = normalize_node_features(torch.rand(n, dim, generator=gen))
    if feature_dim:
        x = project_node_features(x, feature_dim)
    return ImageGraph(
        f"bench{index}", x, edges, torch.rand(edges.shape[1], generator=gen), labels, boxes, (grid, grid),
        (STRIDE * grid, STRIDE * grid), pairs, torch.rand(pairs.shape[1], generator=gen),
    )


# ------------------------------------------------------------------------------------------------------------
# The authors' design (reference)
# ------------------------------------------------------------------------------------------------------------
def dense_attention(h: torch.Tensor, adjacency: torch.Tensor, edge: torch.Tensor, w: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 17-18 with a dense N x N matrix: cosine of every pair, softmax over the window of each row."""
    hn = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = hn @ hn.t()
    logits = w * cos + beta * (cos > 0).to(h.dtype) * edge
    logits = logits.masked_fill(~adjacency, float("-inf"))
    return torch.softmax(logits, dim=1) @ h


def image_mp_loss(log_p: torch.Tensor, feat: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Eq. 26 on the up-sampled output: per box, the most confident pixel of its class in every pixel row and
    column (Eq. 23-25), their CE and their pairwise cosine distances. log_p (C, H, W), feat (F, H, W)."""
    point, dist = log_p.new_zeros(()), log_p.new_zeros(())
    for x1, y1, x2, y2, c in boxes.tolist():
        x1, y1, x2, y2 = (STRIDE * v for v in (x1, y1, x2, y2))
        region = log_p[c, y1:y2, x1:x2]
        rows, cols = torch.arange(y2 - y1, device=log_p.device), torch.arange(x2 - x1, device=log_p.device)
        ys = torch.cat([rows, region.argmax(0)]) + y1  # the best pixel of every row, then of every column
        xs = torch.cat([region.argmax(1), cols]) + x1
        picked = torch.unique(ys * log_p.shape[2] + xs)
        py, px = picked // log_p.shape[2], picked % log_p.shape[2]
        point = point - log_p[c, py, px].mean()
        f = F.normalize(feat[:, py, px].t(), dim=1)
        dist = dist + (1.0 - f @ f.t()).mean()
    return point + dist


def train_authors(graph: ImageGraph, cfg: GNNConfig, classes: int, device: torch.device | str = "cpu") -> list[float]:
    """One image, as the released code: fresh model and Adam, dense attention and regulariser, losses on the
    logits and features up-sampled to the image. Returns L_ce + L_mp of every epoch."""
    gen = torch.Generator().manual_seed(image_seed(0, graph.image_id))
    n, (h, w) = graph.num_nodes, graph.grid
    p = {k: torch.nn.Parameter(v.to(device)) for k, v in init_parameters(graph.x.shape[1], classes, cfg, gen).items()}
    x, ei, pi = graph.x.to(device), graph.edge_index.to(device), graph.pair_index.to(device)
    adjacency = torch.zeros(n, n, dtype=torch.bool, device=device)
    adjacency[ei[0], ei[1]] = True
    edge = torch.zeros(n, n, device=device)
    edge[ei[0], ei[1]] = graph.edge_weight.to(device)
    kernel = torch.zeros(n, n, device=device)  # dense N x N regulariser kernel
    kernel[pi[0], pi[1]] = graph.pair_weight.to(device)
    size = (STRIDE * h, STRIDE * w)
    seeds = F.interpolate(graph.labels.view(1, 1, h, w).float(), size=size, mode="nearest").view(-1).long().to(device)
    optimizer = torch.optim.Adam(p.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    for epoch in range(cfg.epochs):
        hid = embedding(x, p["W0"]) * draw_dropout_mask((n, cfg.hidden), cfg.dropout, gen).to(device)
        for layer in range(cfg.layers):
            hid = dense_attention(hid, adjacency, edge, p["w"][layer], cfg.beta)
        logits = hid @ p["W_out"]
        up_logits = F.interpolate(logits.t().reshape(1, classes, h, w), size=size, mode="bilinear", align_corners=False)[0]
        up_feat = F.interpolate(hid.t().reshape(1, -1, h, w), size=size, mode="bilinear", align_corners=False)[0]
        log_p = torch.log_softmax(up_logits, dim=0)
        loss = F.nll_loss(log_p.reshape(classes, -1).t(), seeds, ignore_index=255)
        loss = loss + image_mp_loss(log_p, up_feat, graph.boxes)
        history.append(loss.item())
        if epoch >= cfg.first_phase_epochs:
            prob = torch.softmax(logits, dim=1)
            loss = loss + cfg.lambda_reg * (kernel * (1.0 - prob @ prob.t())).sum() / n
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return history


# ------------------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------------------
def _authors_job(job: tuple) -> None:
    train_authors(*job)


def _sparse_job(job: tuple) -> None:
    train_a2gnn_single(*job)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory, or the peak resident set of the largest process (this one or a worker)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def matmul_peak_gflops(device: torch.device, n: int = 1024, repeats: int = 5) -> float:
    """Achieved GFLOP/s of a large float32 matrix product on this device and thread count: the practical
    ceiling the embedding layer (a dense GEMM) can approach."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    seconds = min(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n**3 / seconds / 1e9


def bench(size: str, args: argparse.Namespace, device: torch.device) -> None:
    spec = dict(SIZES[size])
    images = args.images or spec.pop("images")
    spec.pop("images", None)
    graphs = [random_graph(i, **spec) for i in range(images)]
    classes, workers = spec["classes"], args.workers if device.type == "cpu" else 0
    n, d = spec["grid"] ** 2, spec["dim"]
    flop_embed = 2 * 2 * n * d * GNNConfig.hidden  # forward X W0 + its weight gradient, per image per epoch
    print(f"\n== {size}: grid {spec['grid']}x{spec['grid']} (N={n}), D_g={d}, classes={classes}, r={spec['radius']}, "
          f"E/image={graphs[0].edge_index.shape[1]}, {images} images, device {device} ({torch.get_num_threads()} "
          f"threads, {workers} worker processes); per row: runs of {WARM_EPOCHS} and {WARM_EPOCHS + args.epochs} "
          f"epochs, median of {args.repeats} each")
    print(f"   embedding layer (Eq. 16): {flop_embed / 1e9:.2f} GFLOP per image per epoch")
    train_a2gnn(graphs[:1], GNNConfig(epochs=1, first_phase_epochs=0), classes, device, batch_images=1)  # warm-up
    batch_images = max(1, min(args.batch_images, -(-images // max(workers, 1))))

    def runs(cfg: GNNConfig) -> dict:
        rows = {
            "authors": lambda: parallel_map(_authors_job, [(g, cfg, classes, "cpu") for g in graphs], workers),
            "sparse": lambda: parallel_map(_sparse_job, [(g, cfg, classes, device) for g in graphs], workers),
            "batched": lambda: train_a2gnn(graphs, cfg, classes, device, workers=workers, batch_images=batch_images),
        }
        if device.type != "cpu":  # one process drives the GPU
            rows["authors"] = lambda: [train_authors(g, cfg, classes, device) for g in graphs]
        if args.skip_authors:
            rows.pop("authors")
        if args.feature_dim:
            rows[f"batched k={args.feature_dim}"] = lambda: train_a2gnn(small, cfg, classes, device, workers=workers,
                                                                      batch_images=batch_images)
        return rows

    small = [random_graph(i, **spec, feature_dim=args.feature_dim) for i in range(images)] if args.feature_dim else []
    short, long = (GNNConfig(epochs=e, first_phase_epochs=e // 2) for e in (WARM_EPOCHS, WARM_EPOCHS + args.epochs))
    results = {}
    for name in runs(short):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_short = statistics.median(timed(runs(short)[name], device) for _ in range(args.repeats))
        t_long = statistics.median(timed(runs(long)[name], device) for _ in range(args.repeats))
        per_epoch = max(t_long - t_short, 1e-9) / args.epochs  # all images, one epoch
        overhead = max(t_short - WARM_EPOCHS * per_epoch, 0.0)  # processes, graph set-up: once per run
        results[name] = (overhead + args.epochs_full * per_epoch, per_epoch, peak_memory_mb(device))
    base = results.get("authors", (None,))[0]
    for name, (seconds, per_epoch, memory) in results.items():
        ratio = f"{base / seconds:6.1f}x" if base else "     -"
        gflops = flop_embed * images / per_epoch / 1e9
        print(f"   {name:14s} {images / seconds:8.4f} images/s ({args.epochs_full} epochs: {seconds:7.1f} s)  "
              f"speed-up vs authors {ratio}  embedding-equivalent {gflops:6.1f} GFLOP/s  peak memory {memory:6.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=0, help="images timed (0: 8 embedded, 2 VOC)")
    parser.add_argument("--epochs", type=int, default=6, help="extra epochs of the long run (per-epoch time = difference)")
    parser.add_argument("--epochs-full", type=int, default=100, help="epochs of the real schedule (paper: 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (the median is printed)")
    parser.add_argument("--batch-images", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="processes (CPU only), for every row")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--feature-dim", type=int, default=0, help="also time graph.feature_dim = k")
    parser.add_argument("--skip-authors", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{device}: a 1024 x 1024 float32 matrix product runs at {matmul_peak_gflops(device):.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads): the ceiling for the embedding-equivalent figures below")
    for size in [s for s in SIZES if s != "tiny"] if args.size == "all" else [args.size]:
        bench(size, args, device)


if __name__ == "__main__":
    main()
