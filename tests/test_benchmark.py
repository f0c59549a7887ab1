"""The speed benchmark runs every row (a smoke test on a tiny graph: speed itself is printed, not tested), and its
authors'-design reference is a working model of the method: its loss terms are those of Eq. 20-26 and it learns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pseudo_labels_speed as bench  # noqa: E402

from a2gnn.gnn.model import GNNConfig  # noqa: E402


def test_every_row_runs_and_prints_its_speed_up(capsys):
    bench.main(["--size", "tiny", "--repeats", "1", "--epochs", "1", "--workers", "0", "--feature-dim", "4",
                "--device", "cpu"])
    out = capsys.readouterr().out
    for row in ("authors", "sparse", "batched", "batched k=4"):
        assert f"   {row} " in out, out
    assert "speed-up vs authors" in out


def test_image_mp_loss_picks_one_pixel_per_box_row_and_column():
    """Eq. 23-26 on the up-sampled output: with one class map peaked on a diagonal, the picked pixels of the box
    are the diagonal's, so the CE term is -mean log p there and the feature term is that of identical features."""
    log_p = torch.full((2, 16, 16), -5.0)
    diag = torch.arange(8, 16)
    log_p[1, diag, diag] = -0.1  # inside the box [x1, y1, x2, y2] = [1, 1, 2, 2] grid cells -> pixels 8..15
    feat = torch.ones(3, 16, 16)
    loss = bench.image_mp_loss(log_p, feat, torch.tensor([[1, 1, 2, 2, 1]]))
    assert loss.item() == pytest.approx(0.1, abs=1e-6)  # -mean(-0.1) + mean(1 - cos(1, 1)) = 0.1


def test_authors_reference_learns_its_seeds():
    graph = bench.random_graph(0, grid=6, dim=16, classes=4, radius=2)
    cfg = GNNConfig(epochs=30, first_phase_epochs=15, hidden=16)
    history = bench.train_authors(graph, cfg, 4)  # both phases (L_reg from epoch 15)
    assert len(history) == 30 and all(map(torch.isfinite, torch.tensor(history)))
    assert history[-1] < 0.75 * history[0], history  # it learns (random seeds: no perfect fit)


def test_grabcut_zoom_benchmark_runs_both_readings(capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import grabcut_zoom

    photos = grabcut_zoom.synthetic_photos(2, size=64)
    assert all(0 <= b.x1 < b.x2 <= 64 and 0 <= b.y1 < b.y2 <= 64 for _, a in photos for b in a.boxes)
    grabcut_zoom.main(["--synthetic", "2", "--zoom-side", "96"])
    out = capsys.readouterr().out
    assert "plain:" in out and "zoom 96:" in out and "changes:" in out
