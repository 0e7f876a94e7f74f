"""The differentiable patch shuffle shared by jigsaw maps and jigsaw training.

A shuffle of an ``H x W`` image is ``shuffle(roll(pad(x), dy, dx), g, pi)`` cropped back to ``H x W``.
It is built as ONE flat index per sample (``JigsawPlan.index``) and applied with a gather, so the
gradient of any function of the shuffled image with respect to the original image *is* the
un-shuffled gradient, exactly, with no separate inverse step. Padding pixels read a constant fill
value (index ``H*W``) and receive no gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["JigsawPlan", "make_plan", "apply_plan", "random_plans", "coverage"]


@dataclass(frozen=True)
class JigsawPlan:
    """Where each output pixel of a shuffled image comes from.

    ``index``: long tensor ``(H*W,)``; entry ``o`` is the flat source pixel of output pixel ``o``,
    or ``H*W`` for padding (the fill value).
    """

    grid: int
    offset: tuple[int, int]
    permutation: tuple[int, ...]
    index: torch.Tensor


def make_plan(height: int, width: int, grid: int, offset: tuple[int, int] = (0, 0),
              permutation: torch.Tensor | list[int] | None = None,
              patch: tuple[int, int] | None = None) -> JigsawPlan:
    """Plan a ``grid x grid`` shuffle of an ``height x width`` image.

    The image is padded (bottom/right) so that ``grid`` divides both sides, rolled by ``offset``
    (so the grid boundaries move), its ``grid**2`` patches are permuted (output patch ``d`` takes
    source patch ``permutation[d]``), and the result is cropped back to ``height x width``.
    ``patch`` forces the patch size (e.g. a multiple of a network's stride); the canvas is then
    ``grid * patch``, which must cover the image.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    ph, pw = (math.ceil(height / grid), math.ceil(width / grid)) if patch is None else patch
    if ph * grid < height or pw * grid < width:
        raise ValueError(f"a {grid}x{grid} grid of {ph}x{pw} patches does not cover {height}x{width}")
    hp, wp = ph * grid, pw * grid
    dy, dx = int(offset[0]) % hp, int(offset[1]) % wp
    if permutation is None:
        perm = torch.arange(grid * grid)
    else:
        perm = torch.as_tensor(permutation, dtype=torch.long)
    if perm.numel() != grid * grid or not torch.equal(perm.sort().values, torch.arange(grid * grid)):
        raise ValueError(f"permutation must be a permutation of range({grid * grid})")
    i = torch.arange(height).view(-1, 1)
    j = torch.arange(width).view(1, -1)
    dest = (i // ph) * grid + (j // pw)  # output patch of each output pixel
    src = perm[dest]
    # position inside the rolled canvas, then un-roll into the padded canvas
    rr = (src // grid) * ph + i % ph
    rc = (src % grid) * pw + j % pw
    pr = (rr - dy) % hp
    pc = (rc - dx) % wp
    inside = (pr < height) & (pc < width)
    flat = torch.where(inside, pr * width + pc, torch.full_like(pr, height * width))
    return JigsawPlan(grid, (dy, dx), tuple(perm.tolist()), flat.reshape(-1))


def apply_plan(x: torch.Tensor, index: torch.Tensor, fill: float = 0.5) -> torch.Tensor:
    """Shuffle images with one gather.

    Args:
        x: ``(N, C, H, W)``.
        index: ``(H*W,)`` (same plan for all) or ``(N, H*W)`` (one plan per image), as built by
            :func:`make_plan`.
        fill: value of padding pixels.
    Returns:
        ``(N, C, H, W)`` shuffled images; differentiable with respect to ``x``.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    ext = torch.cat([flat, flat.new_full((n, c, 1), fill)], dim=2)
    idx = index.to(x.device)
    if idx.dim() == 1:
        idx = idx.unsqueeze(0).expand(n, -1)
    idx = idx.unsqueeze(1).expand(n, c, h * w)
    return torch.gather(ext, 2, idx).reshape(n, c, h, w)


def coverage(index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` float: 1 where the original pixel appears in the shuffled image."""
    idx = index if index.dim() == 2 else index.unsqueeze(0)
    cov = torch.zeros(idx.shape[0], height * width + 1, device=idx.device)
    cov.scatter_(1, idx, 1.0)
    return cov[:, : height * width].reshape(-1, height, width)


def random_plans(height: int, width: int, n: int, grids: tuple[int, ...], generator: torch.Generator,
                 offsets: bool = True, align: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n, H*W)`` indices of ``n`` random shuffles: grid drawn from ``grids``, a uniform offset in
    ``[0, patch)`` per axis when ``offsets``, a uniform random permutation. ``align > 1`` makes patch
    sizes and offsets multiples of ``align`` (a feature stride).

    The draws come from ``generator`` (CPU) in a fixed order per shuffle (grid, offsets, permutation), so
    drawing ``n`` at once equals drawing them one by one; the index arithmetic is vectorized and runs
    on ``device`` (what :func:`make_plan` does for one shuffle, for all ``n``).
    """
    params, perms = [], []
    for _ in range(n):
        g = grids[int(torch.randint(len(grids), (1,), generator=generator))]
        ph = math.ceil(height / g / align) * align
        pw = math.ceil(width / g / align) * align
        if offsets:
            dy = int(torch.randint(ph // align, (1,), generator=generator)) * align
            dx = int(torch.randint(pw // align, (1,), generator=generator)) * align
        else:
            dy = dx = 0
        perms.append(torch.randperm(g * g, generator=generator))
        params.append((g, ph, pw, dy, dx))
    if n == 0:
        return torch.zeros(0, height * width, dtype=torch.long, device=device)
    table = torch.zeros(n, max(p.numel() for p in perms), dtype=torch.long)
    for k, p in enumerate(perms):
        table[k, : p.numel()] = p
    g, ph, pw, dy, dx = (t.view(n, 1, 1) for t in torch.tensor(params, dtype=torch.long, device=device).unbind(1))
    table = table.to(device)
    i = torch.arange(height, device=device).view(1, -1, 1)
    j = torch.arange(width, device=device).view(1, 1, -1)
    dest = (i // ph) * g + (j // pw)  # (n, H, W) output patch of each output pixel
    src = table.gather(1, dest.reshape(n, -1)).view(n, height, width)
    pr = ((src // g) * ph + i % ph - dy) % (g * ph)  # rolled canvas -> padded canvas
    pc = ((src % g) * pw + j % pw - dx) % (g * pw)
    inside = (pr < height) & (pc < width)
    flat = torch.where(inside, pr * width + pc, torch.full_like(pr, height * width))
    return flat.reshape(n, -1)
