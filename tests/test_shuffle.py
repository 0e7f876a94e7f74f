"""The one-gather patch shuffle (wsss.shuffle): properties over sizes, grids, offsets and permutations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsss.shuffle import apply_plan, coverage, make_plan, random_plans

PROPS = settings(max_examples=40, deadline=None)


@st.composite
def plans(draw):
    """A (height, width, grid, offset, permutation) case, sides not necessarily divisible by the grid."""
    h = draw(st.integers(1, 20))
    w = draw(st.integers(1, 20))
    g = draw(st.integers(1, 5))
    dy = draw(st.integers(0, 40))
    dx = draw(st.integers(0, 40))
    perm = draw(st.permutations(range(g * g)))
    return h, w, g, (dy, dx), list(perm)


def _counts(index: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """How often each original pixel is read by the shuffle (gather, then scatter-add ones)."""
    return torch.zeros(h * w + 1).scatter_add_(0, index, torch.ones(index.numel()))[: h * w]


@PROPS
@given(plans())
def test_sources_in_range_and_each_pixel_read_at_most_once(case):
    h, w, g, off, perm = case
    index = make_plan(h, w, g, off, perm).index
    assert index.shape == (h * w,) and index.dtype == torch.long
    assert int(index.min()) >= 0 and int(index.max()) <= h * w  # a pixel, or the fill index H*W
    assert int(_counts(index, h, w).max()) <= 1


@PROPS
@given(plans())
def test_divisible_sides_give_a_true_permutation_and_unshuffle_inverts(case):
    h, w, g, off, perm = case
    h, w = max(1, h // g) * g, max(1, w // g) * g  # divisible by g: no padding, any offset
    index = make_plan(h, w, g, off, perm).index
    assert torch.equal(index.sort().values, torch.arange(h * w))
    assert torch.equal(_counts(index, h, w), torch.ones(h * w))
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    shuffled = apply_plan(x, index, fill=-1.0)
    assert torch.equal(apply_plan(shuffled, index.argsort()), x)
    if g > 1 and off == (0, 0) and perm != sorted(perm):
        assert not torch.equal(shuffled, x)


@PROPS
@given(plans())
def test_gradient_is_the_unshuffled_map_exactly(case):
    h, w, g, off, perm = case
    index = make_plan(h, w, g, off, perm).index
    gen = torch.Generator().manual_seed(h * 31 + w)
    x = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64).requires_grad_(True)
    weight = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((weight * apply_plan(x, index)).sum(), x)
    # each output position sends its weight back to its source pixel; padding sends nothing
    expected = torch.zeros(2, 3, h * w + 1, dtype=torch.float64)
    expected.scatter_add_(2, index.expand(2, 3, -1), weight.flatten(2))
    assert torch.equal(grad, expected[..., : h * w].view(2, 3, h, w))


def reference_index(h, w, g, off, perm, patch=None):
    """pad -> roll -> permute patches -> crop, with plain tensor ops on an image of pixel numbers."""
    ph, pw = patch or (-(-h // g), -(-w // g))
    canvas = torch.full((ph * g, pw * g), h * w)
    canvas[:h, :w] = torch.arange(h * w).view(h, w)
    rolled = canvas.roll(off, dims=(0, 1))
    patches = rolled.view(g, ph, g, pw).permute(0, 2, 1, 3).reshape(g * g, ph, pw)
    out = patches[torch.as_tensor(perm)]  # output patch d takes source patch perm[d]
    return out.view(g, g, ph, pw).permute(0, 2, 1, 3).reshape(ph * g, pw * g)[:h, :w].reshape(-1)


@PROPS
@given(plans(), st.integers(0, 3))
def test_plan_equals_pad_roll_permute_crop(case, extra):
    h, w, g, off, perm = case
    assert torch.equal(make_plan(h, w, g, off, perm).index, reference_index(h, w, g, off, perm))
    patch = (-(-h // g) + extra, -(-w // g) + extra)  # a forced, larger patch (as random_plans' align)
    assert torch.equal(make_plan(h, w, g, off, perm, patch=patch).index, reference_index(h, w, g, off, perm, patch))


@PROPS
@given(plans())
def test_fill_value_and_coverage(case):
    h, w, g, off, perm = case
    index = make_plan(h, w, g, off, perm).index
    x = torch.rand(1, 2, h, w)
    out = apply_plan(x, index, fill=7.0).flatten(2)
    pad = index == h * w
    assert torch.all(out[..., pad] == 7.0)
    assert torch.equal(out[..., ~pad], x.flatten(2)[..., index[~pad]])
    cov = coverage(index, h, w)
    assert cov.shape == (1, h, w)
    assert torch.equal(cov.flatten(), _counts(index, h, w))


@PROPS
@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 5))
def test_identity_permutation_without_offset_is_identity(h, w, g):
    ident = torch.arange(h * w)
    assert torch.equal(make_plan(h, w, 1).index, ident)
    assert torch.equal(make_plan(h, w, g, (0, 0), list(range(g * g))).index, ident)
    assert torch.equal(make_plan(h, w, g).index, ident)  # the default permutation is the identity
    # a full-canvas offset is no offset
    assert torch.equal(make_plan(h, w, 1, (h, w)).index, ident)


def test_one_plan_per_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 7, 9, generator=gen)
    idx = random_plans(7, 9, 3, (2, 3), gen)
    both = apply_plan(x, idx, fill=0.25)
    for i in range(3):
        assert torch.equal(both[i : i + 1], apply_plan(x[i : i + 1], idx[i], fill=0.25))
    assert torch.equal(coverage(idx, 7, 9)[1], coverage(idx[1], 7, 9)[0])


def test_golden_2x2_swap():
    # 4x4 image, 2x2 grid, swap the two top patches and the two bottom ones
    index = make_plan(4, 4, 2, (0, 0), [1, 0, 3, 2]).index.view(4, 4)
    src = torch.arange(16).view(4, 4)
    expected = torch.cat([src[:, 2:], src[:, :2]], dim=1)
    assert torch.equal(index, expected)
    # an offset of one row rolls the canvas: output row 0 reads source row 3 (on a divisible side)
    assert torch.equal(make_plan(4, 4, 1, (1, 0)).index.view(4, 4), src.roll(1, dims=0))


@PROPS
@given(st.integers(1, 20), st.integers(1, 20), st.lists(st.integers(1, 5), min_size=1, max_size=3),
       st.integers(1, 4), st.booleans(), st.integers(0, 2**31))
def test_random_plans_seeded_and_aligned(h, w, grids, align, offsets, seed):
    grids = tuple(grids)
    a = random_plans(h, w, 3, grids, torch.Generator().manual_seed(seed), offsets, align=align)
    b = random_plans(h, w, 3, grids, torch.Generator().manual_seed(seed), offsets, align=align)
    assert a.shape == (3, h * w) and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) <= h * w
    i = torch.arange(h).view(-1, 1).expand(h, w).reshape(-1)
    j = torch.arange(w).view(1, -1).expand(h, w).reshape(-1)
    for index in a:
        assert int(_counts(index, h, w).max()) <= 1
        real = index < h * w
        si, sj = index[real] // w, index[real] % w
        # patch sizes and offsets are multiples of align: every pixel moves by a multiple of align ...
        di, dj = si - i[real], sj - j[real]
        assert torch.all(di % align == 0) and torch.all(dj % align == 0)
        # ... and aligned align x align blocks move as units (same displacement within a block)
        block = (i[real] // align) * w + j[real] // align
        for d in (di, dj):
            lo = torch.full((h * w,), 10**6).scatter_reduce(0, block, d, "amin")
            hi = torch.full((h * w,), -(10**6)).scatter_reduce(0, block, d, "amax")
            assert torch.equal(lo[block], hi[block])


def test_random_plans_differ_across_draws_and_seeds():
    gen = torch.Generator().manual_seed(0)
    a = random_plans(16, 16, 8, (2, 3, 4), gen)
    assert len({tuple(r.tolist()) for r in a}) == 8
    assert not torch.equal(a, random_plans(16, 16, 8, (2, 3, 4), torch.Generator().manual_seed(1)))
    # grid 1 without offsets is the identity
    ident = random_plans(9, 7, 2, (1,), torch.Generator().manual_seed(0), offsets=False)
    assert torch.equal(ident, torch.arange(63).expand(2, -1))


def test_bad_plans_raise():
    with pytest.raises(ValueError):
        make_plan(4, 4, 0)
    with pytest.raises(ValueError):
        make_plan(4, 4, 2, permutation=[0, 0, 1, 2])
    with pytest.raises(ValueError):
        make_plan(4, 4, 2, permutation=[0, 1, 2])
    with pytest.raises(ValueError):
        make_plan(9, 9, 2, patch=(4, 4))
