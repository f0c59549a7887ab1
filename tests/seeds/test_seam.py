"""SEAM's PCM (Eq. 6) and L_ECR (Eq. 9) against loops and hand-computed values (a2gnn/seeds/seam.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from a2gnn.seeds.seam import cams_with_background, ecr_loss, pcm_affinity, pcm_refine


def test_pcm_refine_against_a_loop_over_cells():
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(2, 3, 3, 4, generator=g)
    theta = torch.randn(2, 5, 3, 4, generator=g)
    got = pcm_refine(cams, theta)
    want = torch.zeros_like(cams)
    for b in range(2):
        cells = [(y, x) for y in range(3) for x in range(4)]
        for yi, xi in cells:
            ti = theta[b, :, yi, xi]
            weights = []
            for yj, xj in cells:
                tj = theta[b, :, yj, xj]
                weights.append(max(0.0, float(ti @ tj / (ti.norm() * tj.norm()))))
            total = sum(weights)
            for (yj, xj), wgt in zip(cells, weights):
                want[b, :, yi, xi] += wgt / total * cams[b, :, yj, xj]
    assert torch.allclose(got, want, atol=1e-5)


def test_pcm_affinity_by_hand():
    """Three cells embedded at 0°, 60° and 180°: cosines 1, 0.5, -1 -> ReLU -> rows normalised by hand."""
    theta = torch.tensor([[1.0, 0.5, -1.0], [0.0, math.sqrt(3) / 2, 0.0]]).view(1, 2, 1, 3)
    got = pcm_affinity(theta)[0]
    want = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    want = want / want.sum(dim=1, keepdim=True)
    assert torch.allclose(got, want, atol=1e-6)
    # a constant map is a fixed point of the refinement; an all-zero cell keeps its own value
    assert torch.allclose(pcm_refine(torch.full((1, 2, 1, 3), 0.7), theta), torch.full((1, 2, 1, 3), 0.7))
    zero = theta.clone()
    zero[:, :, :, 2] = 0
    cams = torch.tensor([0.1, 0.2, 0.9]).view(1, 1, 1, 3)
    assert pcm_refine(cams, zero)[0, 0, 0, 2] == pytest.approx(0.9)


def test_pcm_refine_checks_shapes():
    with pytest.raises(ValueError, match="does not match"):
        pcm_refine(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 2, 3))


def test_cams_with_background_by_hand():
    maps = torch.tensor([[[[2.0, -1.0]], [[1.0, 4.0]]]])  # (1, 2, 1, 2)
    got = cams_with_background(maps)
    fg0 = torch.tensor([1.0, 0.0]) * 2 / (2 + 1e-5)
    fg1 = torch.tensor([0.25, 1.0]) * 4 / (4 + 1e-5)
    bg = 1 - torch.maximum(fg0, fg1)
    assert torch.allclose(got[0, :, 0], torch.stack([bg, fg0, fg1]), atol=1e-6)


def test_ecr_loss_by_hand():
    """Same size (A = identity): mean over the masked cells of |r_o - c_t| + |c_o - r_t|."""
    c_o = torch.tensor([0.0, 1.0, 0.5, 0.2]).view(1, 1, 2, 2)
    r_o = torch.tensor([0.2, 0.8, 0.5, 0.0]).view(1, 1, 2, 2)
    c_t = torch.tensor([0.1, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    r_t = torch.tensor([0.0, 0.5, 0.5, 0.9]).view(1, 1, 2, 2)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 2, 2)
    # cells 0..2: |0.2-0.1|+|0-0| = 0.1; |0.8-1|+|1-0.5| = 0.7; |0.5-0|+|0.5-0.5| = 0.5 -> 1.3 / 3
    assert ecr_loss(c_o, r_o, c_t, r_t, mask).item() == pytest.approx(1.3 / 3, abs=1e-6)


def test_ecr_loss_resizes_the_original_branch():
    g = torch.Generator().manual_seed(1)
    c_o, r_o = torch.rand(1, 2, 8, 8, generator=g), torch.rand(1, 2, 8, 8, generator=g)
    c_t, r_t = torch.rand(1, 2, 4, 4, generator=g), torch.rand(1, 2, 4, 4, generator=g)
    mask = torch.ones(1, 1, 4, 4)
    a = lambda x: F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)  # noqa: E731
    want = ((a(r_o) - c_t).abs() + (a(c_o) - r_t).abs()).mean()
    assert ecr_loss(c_o, r_o, c_t, r_t, mask).item() == pytest.approx(want.item(), rel=1e-6)
    # equivariant and PCM-consistent maps cost nothing
    assert ecr_loss(c_o, c_o, a(c_o), a(c_o), mask).item() == pytest.approx(0.0, abs=1e-6)
