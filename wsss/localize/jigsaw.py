"""Accumulated jigsaw saliency (ours), its CAM-seeded variant, and the shuffle-CAM ablation.

Jigsaw: shuffle the image's patches (random grid, offset and permutation), take the gradient of each
present class score with respect to the ORIGINAL image through the one-gather shuffle of
:mod:`wsss.shuffle` (so it comes back un-shuffled, exactly), accumulate over many shuffles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, upsample
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
        self.align = int(getattr(model, "stride", 1))

    def _attribute(self, images, labels, ids):
        b, k = labels.shape
        h, w = images.shape[-2:]
        out = images.new_zeros(b, k, h, w)
        weight = self.model.classifier.weight.flatten(1)
        for i in range(b):
            gen = self.generator(ids[i])
            acc = images.new_zeros(k, h * w + 1)
            cov = images.new_zeros(1, h * w + 1)
            for start in range(0, self.samples, self.chunk_size):
                n = min(self.chunk_size, self.samples - start)
                idx = random_plans(h, w, n, self.grids, gen, self.offsets, align=self.align, device=images.device)
                shuffled = apply_plan(images[i : i + 1].expand(n, -1, -1, -1), idx, self.fill)
                cams = torch.einsum("kd,ndhw->nkhw", weight, self.model.features(shuffled)).relu()
                cams = upsample(cams, (h, w)).flatten(2)  # (n, K, H*W), in shuffled positions
                for s in range(n):  # un-shuffle: each output position returns to its source pixel
                    acc.scatter_add_(1, idx[s].expand(k, -1), cams[s])
                    cov.scatter_add_(1, idx[s : s + 1], torch.ones_like(idx[s : s + 1], dtype=cov.dtype))
            maps = acc[:, : h * w] / cov[:, : h * w].clamp_min(1)
            out[i] = maps.view(k, h, w)
        return out


class CamSeeded(Localizer):
    """CAM as the class seed, a gradient map as the extent.

    ``fusion="geo"`` (default, chosen on the tune split of the built-in benchmark): the geometric mean
    ``sqrt(CAM / max CAM * min(G / p99(G), 1))`` of the normalized CAM and the normalized filler map ``G``:
    a pixel needs both the class evidence of CAM and the fine extent of the gradient map.
    ``fusion="region"``: inside ``dilate(CAM / max CAM >= seed_threshold, dilation px)`` the normalized
    filler map decides, outside it the map is zero (the first probe's variant).

    Args:
        filler: name of a registered localizer (default ``jigsaw``; ``saliency``, ``smoothgrad``,
            ``cropsal`` isolate the shuffle's own contribution).
        fusion: ``geo`` or ``region``.
        seed_threshold, dilation: the region (``fusion="region"``).
        filler_options: options for the filler (e.g. ``grids``, ``samples``); flat unknown options go
            to the filler too: ``create("jigsaw-cam", m, samples=32)``.
    """

    def __init__(self, model, filler: str = "jigsaw", fusion: str = "geo", seed_threshold: float = 0.3,
                 dilation: int = 24, seed: int = 0, filler_options: dict | None = None, **options):
        from wsss.localize import create  # late: the registry imports this module

        super().__init__(model, seed=seed)
        if fusion not in ("geo", "region"):
            raise ConfigError(f"fusion must be geo or region, got {fusion!r}")
        self.fusion = fusion
        self.seed_threshold, self.dilation = float(seed_threshold), int(dilation)
        opts = dict(filler_options or {})
        opts.update(options)
        self.filler = create(filler, model, seed=seed, **opts)
        self.cam = create("cam", model)

    def _attribute(self, images, labels, ids):
        with torch.no_grad():
            cam = self.cam.attribute(images, labels, ids)
        fill = self.filler.attribute(images, labels, ids)
        if self.fusion == "geo":
            return geo_fusion(cam, fill)
        return _p99_unit(fill) * region_from_cam(cam, self.seed_threshold, self.dilation)


def _p99_unit(fill: torch.Tensor) -> torch.Tensor:
    scale = torch.quantile(fill.flatten(-2), 0.99, dim=-1).clamp_min(1e-12)[..., None, None]
    return (fill / scale).clamp(max=1)


def geo_fusion(cam: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``sqrt(CAM / max CAM * min(G / p99(G), 1))`` per map of raw ``cam`` and filler ``fill`` maps
    (``(..., H, W)``, same shape): what ``jigsaw-cam`` returns, also applied to stored maps by the pipeline."""
    peak = cam.flatten(-2).amax(-1).clamp_min(1e-12)[..., None, None]
    return torch.sqrt(cam / peak * _p99_unit(fill))


def region_from_cam(cam: torch.Tensor, threshold: float, dilation: int) -> torch.Tensor:
    """``(B, K, H, W)`` float 0/1: ``dilate(cam / max >= threshold)`` with a square of ``2*dilation+1``."""
    peak = cam.flatten(2).amax(2).clamp_min(1e-12)[:, :, None, None]
    seed = ((cam / peak) >= threshold) & (cam > 0)
    seed = seed.float()
    if dilation > 0:
        seed = F.max_pool2d(seed, 2 * dilation + 1, stride=1, padding=dilation)
    return seed


