"""CUDA smoke tests (marker ``gpu``; skipped without a CUDA device, e.g. on CI): the batched A²GNN path runs on
the GPU and gives the CPU's result up to float round-off, and the speed benchmark's rows run there."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from a2gnn.gnn.model import GNNConfig
from a2gnn.gnn.train import train_a2gnn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_batched_a2gnn_on_cuda_matches_cpu():
    import pseudo_labels_speed as bench

    graphs = [bench.random_graph(i, grid=10, dim=32, classes=5, radius=3) for i in range(3)]
    cfg = GNNConfig(epochs=20, first_phase_epochs=10, hidden=32)
    cpu = train_a2gnn(graphs, cfg, 5, "cpu", batch_images=3)
    gpu = train_a2gnn(graphs, cfg, 5, "cuda", batch_images=3)
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cpu" and b.shape == a.shape
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)


def test_benchmark_rows_run_on_cuda(capsys):
    import pseudo_labels_speed as bench

    bench.main(["--size", "tiny", "--repeats", "1", "--epochs", "1", "--device", "cuda"])
    assert "batched" in capsys.readouterr().out
