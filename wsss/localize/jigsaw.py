"""Accumulated jigsaw saliency (ours) and the shuffle-CAM ablation (its CAM-fused variant, ``jigsaw-cam``, is a
fusion: :mod:`wsss.localize.fusion`).

Jigsaw: shuffle the image's patches (random grid, offset and permutation), take the gradient of each
present class score with respect to the ORIGINAL image through the one-gather shuffle of
:mod:`wsss.shuffle` (so it comes back un-shuffled, exactly), accumulate over many shuffles.
"""

from __future__ import annotations

import torch

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, dense_from_slots, upsample
from wsss.localize.gradients import GradientLocalizer
from wsss.shuffle import apply_plan, coverage, random_plans


def _grids(grids) -> tuple[int, ...]:
    if isinstance(grids, int):
        grids = (grids,)
    if isinstance(grids, str):
        grids = tuple(int(g) for g in grids.replace(",", " ").split())
    grids = tuple(int(g) for g in grids)
    if not grids or min(grids) < 1:
        raise ConfigError(f"grids must be positive integers, got {grids}")
    return grids


class Jigsaw(GradientLocalizer):
    """Accumulated jigsaw saliency.

    Args:
        grids: grid schedule; each view draws its ``g`` (``g x g`` patches) uniformly from it.
        offsets: move the grid boundaries by a uniform random offset in ``[0, patch)`` every view.
        include_intact: the first view is the intact image.
        fill: value of padding pixels (image sides not divisible by ``g`` are padded, then cropped).
        (+ the gradient-core options: samples, chunk_size, reduction, weighting, smooth_sigma.)
    """

    default_samples = 16

    def __init__(self, model, grids=(2, 3, 4), offsets: bool = True, include_intact: bool = False,
                 fill: float = 0.5, **options):
        super().__init__(model, **options)
        self.grids = _grids(grids)
        self.offsets, self.include_intact, self.fill = bool(offsets), bool(include_intact), float(fill)

    def plans(self, n: int, start: int, h: int, w: int, generator: torch.Generator,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """``(n, H*W)`` shuffle indices of views ``start .. start+n-1``."""
        intact = self.include_intact and start == 0
        idx = random_plans(h, w, n - intact, self.grids, generator, self.offsets, device=device)
        if intact:
            idx = torch.cat([torch.arange(h * w, device=device)[None], idx])
        return idx

    def views(self, x, start, generator):
        n, _, h, w = x.shape
        idx = self.plans(n, start, h, w, generator, x.device)
        return apply_plan(x, idx, self.fill), coverage(idx, h, w)


class ShuffleCAM(Localizer):
    """Ablation: CAM on shuffled images (grid aligned to the feature stride), un-shuffled and
    accumulated over ``samples`` shuffles. A forward read-out: no gradient is involved."""

    needs_grad = False

    def __init__(self, model, samples: int = 16, grids=(2, 3, 4), offsets: bool = True, chunk_size: int = 16,
                 fill: float = 0.5, seed: int = 0, **options):
        super().__init__(model, seed=seed, **options)
        self.samples, self.chunk_size = int(samples), int(chunk_size)
        self.grids, self.offsets, self.fill = _grids(grids), bool(offsets), float(fill)
        self.align = int(model.stride)

    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _attribute_slots(self, images, labels, ids, slots):
        b, k = slots.shape
        h, w = images.shape[-2:]
        out = images.new_zeros(b, k, h, w)
        for i in range(b):
            gen = self.generator(ids[i])
            cls = slots[i].clamp_min(0)
            acc = images.new_zeros(k, h * w + 1)
            cov = images.new_zeros(1, h * w + 1)
            for start in range(0, self.samples, self.chunk_size):
                n = min(self.chunk_size, self.samples - start)
                idx = random_plans(h, w, n, self.grids, gen, self.offsets, align=self.align, device=images.device)
                shuffled = apply_plan(images[i : i + 1].expand(n, -1, -1, -1), idx, self.fill)
                cams = self.model.forward_cam(self.model.forward_features(shuffled))[:, cls].relu()
                cams = upsample(cams, (h, w)).flatten(2)  # (n, K, H*W), in shuffled positions
                for s in range(n):  # un-shuffle: each output position returns to its source pixel
                    acc.scatter_add_(1, idx[s].expand(k, -1), cams[s])
                    cov.scatter_add_(1, idx[s : s + 1], torch.ones_like(idx[s : s + 1], dtype=cov.dtype))
            maps = acc[:, : h * w] / cov[:, : h * w].clamp_min(1)
            out[i] = maps.view(k, h, w)
        return out


SPECS = [
    MethodSpec("jigsaw", Jigsaw, "accumulated jigsaw saliency (ours): gradient saliency over patch shuffles",
               stochastic=True, normalization="p99", quick={"samples": 4}, headline=True),
    MethodSpec("shufflecam", ShuffleCAM, "ablation: CAM accumulated over patch shuffles", stochastic=True,
               normalization="max", quick={"samples": 4}),
]
