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


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_batches_sharded_over_gpus_give_the_one_gpu_result():
    import pseudo_labels_speed as bench

    graphs = [bench.random_graph(i, grid=8, dim=16, classes=4, radius=2) for i in range(4)]
    cfg = GNNConfig(epochs=6, first_phase_epochs=3, hidden=16)
    one = train_a2gnn(graphs, cfg, 4, "cuda:0", batch_images=2)
    many = train_a2gnn(graphs, cfg, 4, "cuda", batch_images=2, workers=2)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
