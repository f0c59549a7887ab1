"""Radius-r neighbour offsets, in-grid pair lists and dense gathers vs brute force."""

import itertools

import pytest
import torch

from a2gnn.ops.neighbours import grid_pairs, neighbour_gather, neighbour_reduce, neighbour_valid, radius_offsets, shift_map


def brute_offsets(r, include_self, half):
    out = set()
    for dy, dx in itertools.product(range(-r - 1, r + 2), repeat=2):
        if dy * dy + dx * dx > r * r or (not include_self and dy == 0 and dx == 0):
            continue
        if half and (dy, dx) != (0, 0) and (-dy, -dx) in out:
            continue
        out.add((dy, dx))
    return out


@pytest.mark.parametrize("r", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("half", [False, True])
def test_radius_offsets_match_brute_force(r, include_self, half):
    offs = radius_offsets(r, include_self=include_self, half=half)
    got = {tuple(o) for o in offs.tolist()}
    assert len(got) == len(offs)  # no duplicates
    expected = brute_offsets(r, include_self, half)
    if half:  # same unordered pairs, each once
        assert {frozenset([o, (-o[0], -o[1])]) for o in got} == {frozenset([o, (-o[0], -o[1])]) for o in expected}
        assert len(got) == len(expected)
    else:
        assert got == expected


def test_radius_five_counts():
    # 81 lattice points within radius 5 (incl. the centre): 80 neighbours, 40 in the half disc
    assert len(radius_offsets(5, include_self=True)) == 81
    assert len(radius_offsets(5)) == 80
    assert len(radius_offsets(5, half=True)) == 40


def brute_pairs(h, w, offsets):
    pairs = []
    for dy, dx in offsets.tolist():
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    pairs.append((y * w + x, (y + dy) * w + (x + dx)))
    return pairs


@pytest.mark.parametrize("h,w,r", [(4, 5, 2), (3, 3, 3), (1, 6, 2), (6, 2, 5)])
def test_grid_pairs_match_brute_force(h, w, r):
    offsets = radius_offsets(r, include_self=True)
    pairs = grid_pairs(h, w, offsets)
    assert pairs.dtype == torch.int64 and pairs.shape[0] == 2
    assert [tuple(p) for p in pairs.t().tolist()] == brute_pairs(h, w, offsets)


def test_shift_map_matches_definition():
    x = torch.arange(20.0).view(1, 4, 5)
    for dy, dx in [(0, 0), (1, 2), (-2, 1), (3, -4), (4, 0), (0, -5)]:
        out = shift_map(x, dy, dx, fill=-1.0)
        for y in range(4):
            for c in range(5):
                inside = 0 <= y + dy < 4 and 0 <= c + dx < 5
                assert out[0, y, c] == (x[0, y + dy, c + dx] if inside else -1.0)


def test_dense_gather_aligned_with_grid_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 6, generator=g)
    offsets = radius_offsets(2, include_self=True)
    dense = neighbour_gather(x, offsets)  # (B, C, K, h, w)
    valid = neighbour_valid(4, 6, offsets)
    i, j = grid_pairs(4, 6, offsets)
    flat = x.flatten(2)
    assert torch.equal(dense[..., valid], flat[..., j])  # neighbour values in grid_pairs order
    centre = x.unsqueeze(2).expand_as(dense)
    assert torch.equal(centre[..., valid], flat[..., i])


def test_neighbour_reduce_equals_gather_reduction():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 5, generator=g)
    offsets = radius_offsets(2, half=True)
    got = neighbour_reduce(x, offsets, lambda a, b: (a - b).abs().sum(1))
    ref = (x.unsqueeze(2) - neighbour_gather(x, offsets)).abs().sum(1)
    assert torch.allclose(got, ref)
