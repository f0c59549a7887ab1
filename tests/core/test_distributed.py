"""Data-parallel training: a 2-process gloo step equals one process on the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from a2gnn.core import distributed


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 2, (4, 8, 8), generator=g)


def sgd_steps(out: str, ddp: bool = True, steps: int = 3) -> None:
    """Run on every rank: each takes its share of the global batch; rank 0 saves the parameters. ``ddp``: sync the
    gradients with DistributedDataParallel, else with the explicit :func:`distributed.average_gradients`."""
    model = make_model()
    net = distributed.wrap_ddp(model) if ddp else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    images, labels = global_batch()
    mine = distributed.rank_share(list(range(len(images))))
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(images[mine]), labels[mine])
        optimizer.zero_grad()
        loss.backward()
        if not ddp:
            distributed.average_gradients(model)
        optimizer.step()
    if not ddp:
        distributed.broadcast_buffers(model)
    logs = distributed.all_mean({"rank": float(distributed.rank())})
    if distributed.is_main():
        torch.save({"state": model.state_dict(), "logs": logs, "world": distributed.world_size()}, out)


def test_rank_share_without_a_group_is_everything():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.rank_share([1, 2, 3]) == [1, 2, 3]
    assert distributed.all_mean({"a": 2.0}) == {"a": 2.0}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    distributed.launch(sgd_steps, 1, "cpu", str(one))
    distributed.launch(sgd_steps, 2, "cpu", str(two))
    a, b = torch.load(one), torch.load(two)
    assert a["world"] == 1 and b["world"] == 2 and b["logs"] == {"rank": 0.5}  # both ranks took part
    for key in a["state"]:
        torch.testing.assert_close(a["state"][key], b["state"][key], rtol=1e-5, atol=1e-6)
    start = make_model().state_dict()
    assert not torch.allclose(start["0.weight"], a["state"]["0.weight"])  # the steps did change the weights


@pytest.mark.slow
def test_explicit_gradient_averaging_matches_one_process(tmp_path: Path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    distributed.launch(sgd_steps, 1, "cpu", str(one))
    distributed.launch(sgd_steps, 2, "cpu", str(two), False)
    a, b = torch.load(one), torch.load(two)
    for key in a["state"]:
        torch.testing.assert_close(a["state"][key], b["state"][key], rtol=1e-5, atol=1e-6)
