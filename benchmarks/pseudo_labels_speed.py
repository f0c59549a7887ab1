"""Speed and memory of the A²GNN pseudo-label optimisation (the hot loop of the `pseudo_labels` stage).

Three implementations of the same per-image training (same init, losses, schedule; only the graph
operator and the batching differ) on random graphs of the embedded size and of VOC size:

* ``dense``   the straightforward per-image implementation (as released by the authors): a dense N x N
              attention matrix masked to the radius-r window, one fresh model + Adam per image, a loop;
* ``sparse``  our sparse radius-r edge list (fused attention kernel), still one image at a time;
* ``batched`` our sparse graphs of ``batch_images`` images optimised together with stacked per-image
              parameters, batches spread over ``workers`` processes on a CPU.

Prints images/s (for the full ``--epochs-full`` schedule, extrapolated from ``--epochs`` timed ones),
the speed-ups, peak memory, the device, and the achieved GFLOP/s of the embedding layer (Eq. 16) against
its FLOP count, so the distance to the hardware limit is visible.

    python benchmarks/pseudo_labels_speed.py                       # both sizes, CPU
    python benchmarks/pseudo_labels_speed.py --size voc --device cuda
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from a2gnn.gnn.model import GNNConfig, embedding, init_parameters, output_log_probs
from a2gnn.gnn.train import collate, fit, image_seed, train_a2gnn, train_a2gnn_single
from a2gnn.graph import ImageGraph, normalize_node_features
from a2gnn.neighbours import grid_pairs, radius_offsets

SIZES = {
    # grid side, node feature size D_g, classes, radius: embedded default (small backbone, stride 8, ~160 px)
    "embedded": dict(grid=20, dim=448, classes=6, radius=5),
    # VOC: 448 px input, stride 8 -> 56 x 56 nodes, ResNet-38 taps 512 + 1024 + 4096 = 5632-d, 21 classes
    "voc": dict(grid=56, dim=5632, classes=21, radius=5),
}


def random_graph(index: int, grid: int, dim: int, classes: int, radius: int) -> ImageGraph:
    """A graph with the structure of a real one: radius-r edges, ~30 % labelled nodes, two boxes."""
    gen = torch.Generator().manual_seed(index)
    n = grid * grid
    edges = grid_pairs(grid, grid, radius_offsets(radius, include_self=True))
    pairs = grid_pairs(grid, grid, radius_offsets(radius))
    labels = torch.randint(0, 3, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) < 0.7] = 255
    boxes = torch.tensor([[grid // 16, grid // 10, 5 * grid // 8, 3 * grid // 4, 1], [grid // 3, grid // 4, grid - 1, grid - 1, 2]])
    return ImageGraph(
        f"bench{index}", normalize_node_features(torch.rand(n, dim, generator=gen)), edges,
        torch.rand(edges.shape[1], generator=gen), labels, boxes, (grid, grid), (8 * grid, 8 * grid),
        pairs, torch.rand(pairs.shape[1], generator=gen),
    )


def dense_attention(h: torch.Tensor, adjacency: torch.Tensor, edge: torch.Tensor, w: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 17-18 with a dense N x N matrix (the straightforward way): softmax over the window of each row."""
    hn = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = hn @ hn.t()
    logits = w * cos + beta * (cos > 0).to(h.dtype) * edge
    logits = logits.masked_fill(~adjacency, float("-inf"))
    return torch.softmax(logits, dim=1) @ h


def train_dense(graph: ImageGraph, cfg: GNNConfig, classes: int, device: torch.device) -> None:
    """One image, one fresh model and Adam, dense attention; losses and schedule from a2gnn.gnn.train.fit."""
    batch = collate([graph], classes, cfg, device)
    gen = torch.Generator().manual_seed(image_seed(0, graph.image_id))
    p = {k: torch.nn.Parameter(v.to(device)) for k, v in init_parameters(batch.x.shape[2], classes, cfg, gen).items()}
    n = graph.num_nodes
    adjacency = torch.zeros(n, n, dtype=torch.bool, device=device)
    edge = torch.zeros(n, n, device=device)
    ei = graph.edge_index.to(device)
    adjacency[ei[0], ei[1]] = True
    edge[ei[0], ei[1]] = graph.edge_weight.to(device)

    def forward(mask):
        h = embedding(batch.x[0], p["W0"])
        if mask is not None:
            h = h * mask[0]
        for layer in range(cfg.layers):
            h = dense_attention(h, adjacency, edge, p["w"][layer], cfg.beta)
        return output_log_probs(h, p["W_out"], batch.class_mask[0]), h

    fit(forward, torch.optim.Adam(p.values(), lr=cfg.lr, weight_decay=cfg.weight_decay), batch, cfg, [gen])


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(size: str, args: argparse.Namespace, device: torch.device) -> None:
    spec = SIZES[size]
    graphs = [random_graph(i, spec["grid"], spec["dim"], spec["classes"], spec["radius"]) for i in range(args.images)]
    cfg = GNNConfig(epochs=args.epochs, first_phase_epochs=args.epochs // 2)
    scale = args.epochs_full / args.epochs  # images/s for the full schedule
    n, d = spec["grid"] ** 2, spec["dim"]
    flop_embed = 2 * 2 * n * d * cfg.hidden  # forward X W0 + its weight gradient, per image per epoch
    print(f"\n== {size}: grid {spec['grid']}x{spec['grid']} (N={n}), D_g={d}, classes={spec['classes']}, r={spec['radius']}, "
          f"E/image={graphs[0].edge_index.shape[1]}, {args.images} images x {args.epochs} epochs timed, "
          f"device {device} ({torch.get_num_threads()} threads, {args.workers} workers)")
    print(f"   embedding layer: {flop_embed / 1e9:.2f} GFLOP per image per epoch")
    train_a2gnn(graphs[:1], GNNConfig(epochs=1, first_phase_epochs=0), spec["classes"], device, batch_images=1)  # warm-up
    rows = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows["batched"] = timed(lambda: train_a2gnn(graphs, cfg, spec["classes"], device, workers=args.workers, batch_images=args.batch_images), device)
    mem_batched = peak_memory_mb(device)
    rows["sparse"] = timed(lambda: [train_a2gnn_single(g, cfg, spec["classes"], device) for g in graphs], device)
    if not args.skip_dense:
        rows["dense"] = timed(lambda: [train_dense(g, cfg, spec["classes"], device) for g in graphs], device)
    for name, seconds in rows.items():
        ips = args.images / seconds / scale
        gflops = flop_embed * args.images * args.epochs / seconds / 1e9
        print(f"   {name:8s} {seconds:7.2f} s  {ips:8.3f} images/s ({args.epochs_full} epochs)  "
              f"embedding-equivalent {gflops:7.1f} GFLOP/s")
    base = rows.get("dense", rows["sparse"])
    print(f"   speed-up batched vs {'dense per-image' if 'dense' in rows else 'sparse per-image'}: {base / rows['batched']:.1f}x; "
          f"vs sparse per-image: {rows['sparse'] / rows['batched']:.1f}x; peak memory {mem_batched:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4, help="epochs timed")
    parser.add_argument("--epochs-full", type=int, default=100, help="epochs of the real schedule (paper: 100)")
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="processes for batches (CPU only)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for size in SIZES if args.size == "all" else [args.size]:
        bench(size, args, device)


if __name__ == "__main__":
    main()
