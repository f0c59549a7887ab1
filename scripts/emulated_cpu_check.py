#!/usr/bin/env python
"""Another CPU, emulated: do training steps give the same bytes there as here? (QEMU user mode.)

Usage (from the repository root; needs Debian's ``qemu-user``, x86-64 only)::

    python scripts/emulated_cpu_check.py                          # Haswell-v4 and EPYC-Milan, both modes
    python scripts/emulated_cpu_check.py --cpus Haswell-v4 --modes strict --batch 2

Runs one probe natively and under ``qemu-x86_64 -cpu MODEL`` for each emulated CPU model and each numerics mode
(a2gnn/core/numerics.py), and compares digests. The probe is the default ``cam`` stage's network (params.yaml)
doing one training step on a seeded batch at its crop size: the forward output of every layer, the gradients and
the weights after one Adam step; then a short A²GNN training on a seeded grid graph (its class probabilities).

What the emulator changes is what differs between real CPUs: the vendor, model and cache sizes that CPUID
reports, from which MKL, oneDNN and torch choose their kernels. QEMU computes each instruction's IEEE result
itself, so it stands in for another CPU's *dispatch*; the one thing it does not reproduce is what a real CPU
returns for approximate instructions (a difference native against an emulation of the same model shows that).
An emulated step runs about 20x slower than natively (a whole stage, several hundred times: not practical).

Prints one line per (mode, CPU): ``same`` or ``other`` for layers (with the first that differs), gradients,
weights and the A²GNN. Exit status 0 whatever it finds (it reports; tests/test_emulated_cpu.py asserts).
"""

from __future__ import annotations

import a2gnn  # noqa: F401  (the numerics pin, before numpy / torch)

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from numerics_check import MODES  # noqa: E402  (mode name -> value of A2GNN_NUMERICS: one table for both checks)
DEFAULT_CPUS = ("Haswell-v4", "EPYC-Milan")
"""QEMU models: an Intel AVX2 CPU (other vendor, other caches) and this project's reference CPU model."""
QEMU = "qemu-x86_64"


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def probe(batch: int) -> dict:
    """One CAM training step and a short A²GNN training, in this process; digests of what they computed."""
    import torch
    import yaml

    from a2gnn.core import numerics
    from a2gnn.gnn.model import GNNConfig
    from a2gnn.gnn.train import train_a2gnn_single
    from a2gnn.graph.types import ImageGraph
    from a2gnn.ops.neighbours import grid_pairs, radius_offsets
    from a2gnn.seeds.cam import CAMConfig, build_cam_model

    torch.set_num_threads(1)
    cfg = CAMConfig.from_params(yaml.safe_load((ROOT / "params.yaml").read_text())["cam"])
    torch.manual_seed(0)
    model = build_cam_model(cfg, 21)
    layers: dict[str, str] = {}

    def record(name):
        def hook(module, inputs, output):
            layers[name] = digest(output.detach().numpy())
        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):
            module.register_forward_hook(record(name))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, cfg.crop_size, cfg.crop_size, generator=gen)
    target = (torch.rand(batch, model.num_foreground, generator=gen) > 0.8).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **numerics.adam_options())
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
    grads = digest(*(p.grad.numpy() for p in model.parameters()))
    optimizer.step()
    weights = digest(*(p.detach().numpy() for p in model.parameters()))

    h, w, dim = 16, 20, 64  # a seeded grid graph: object = left half, noisy features (Eq. 15 normalised)
    truth = torch.where(torch.arange(h * w) % w < w // 2, 2, 0)
    feats = torch.rand(h * w, dim, generator=gen) * 0.6
    feats[:, : dim // 2] += (truth > 0).float()[:, None]
    feats = feats / feats.sum(1, keepdim=True)
    edges, pairs = grid_pairs(h, w, radius_offsets(2, include_self=True)), grid_pairs(h, w, radius_offsets(2))
    labels = torch.where(torch.rand(h * w, generator=gen) < 0.15, truth, 255)
    graph = ImageGraph("probe", feats, edges, torch.rand(edges.shape[1], generator=gen), labels,
                       torch.tensor([[0, 0, w // 2, h, 2]]), (h, w), (8 * h, 8 * w), pairs,
                       torch.rand(pairs.shape[1], generator=gen))
    probs = train_a2gnn_single(graph, GNNConfig(hidden=64, epochs=4, first_phase_epochs=2), 4, seed=5)
    return {"layers": layers, "grads": grads, "weights": weights, "gnn": digest(probs.numpy())}


def run_probe(mode: str, batch: int, cpu: str | None) -> dict:
    """:func:`probe` in a fresh process under ``A2GNN_NUMERICS=MODES[mode]``, natively or emulating ``cpu``."""
    command = [sys.executable, __file__, "--probe", "--batch", str(batch)]
    if cpu is not None:
        command = [QEMU, "-cpu", cpu] + command
    env = {k: v for k, v in os.environ.items() if k != "A2GNN_NUMERICS"}
    env.update(A2GNN_NUMERICS=MODES[mode], PYTHONHASHSEED="0")
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(native: dict, other: dict) -> dict[str, str]:
    """``same`` / ``other`` per part; for the layers, the first (in forward order) whose output differs."""
    differ = [name for name, d in native["layers"].items() if other["layers"].get(name) != d]
    result = {"layers": "same" if not differ else f"other from {differ[0]}"}
    result.update({k: "same" if native[k] == other[k] else "other" for k in ("grads", "weights", "gnn")})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", nargs="+", default=list(DEFAULT_CPUS), help="QEMU CPU models to emulate")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    parser.add_argument("--batch", type=int, default=4, help="CAM batch (the stage: 4 per process)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.batch)))
        return 0
    if shutil.which(QEMU) is None:
        print(f"error: {QEMU} not found (Debian: apt-get install qemu-user)", file=sys.stderr)
        return 1
    print(f"{'mode':7s} {'cpu':12s} {'layers':34s} {'grads':6s} {'weights':8s} gnn")
    for mode in args.modes:
        native = run_probe(mode, args.batch, None)
        for cpu in args.cpus:
            r = compare(native, run_probe(mode, args.batch, cpu))
            print(f"{mode:7s} {cpu:12s} {r['layers']:34s} {r['grads']:6s} {r['weights']:8s} {r['gnn']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
