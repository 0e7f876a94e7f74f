"""Stochastic aggregation baselines on the gradient core: SmoothGrad and random-crop aggregation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wsss.errors import ConfigError
from wsss.localize.base import MethodSpec
from wsss.localize.gradients import GradientLocalizer


class SmoothGrad(GradientLocalizer):
    """``max over RGB of mean_n |ds_c/d(x + eps_n)|``, ``eps ~ N(0, (sigma (max x - min x))^2)`` per image
    (Smilkov et al. 2017); equals captum ``NoiseTunnel(Saliency(abs=True))`` then ``amax`` over RGB."""

    default_samples = 16

    def __init__(self, model, sigma: float = 0.15, **options):
        super().__init__(model, **options)
        self.sigma = float(sigma)

    def views(self, x, start, generator):
        std = self.sigma * (x[0].max() - x[0].min()).detach()
        if x.device.type == "cpu":
            noise = torch.stack([torch.randn(x.shape[1:], generator=generator) for _ in range(x.shape[0])])
        else:  # draw on the device (no host->device copy): one device generator per view, seeded in order
            noise = torch.stack([
                torch.randn(x.shape[1:], device=x.device, generator=torch.Generator(device=x.device).manual_seed(
                    int(torch.randint(2**62, (1,), generator=generator))))
                for _ in range(x.shape[0])
            ])
        return x + noise * std, None


class CropSaliency(GradientLocalizer):
    """Random-crop aggregation (Maruf et al. 2023, arXiv 2308.11052).

    Each view is ``resize(crop(x))`` back to the input size; the gradient flows through the
    differentiable crop + bilinear resize to the pixels where it belongs. The sum over views is
    divided by per-pixel coverage (0 where never covered).

    Args:
        scale: range of the crop area as a fraction of the image.
        ratio: range of the crop aspect ratio (w/h).
        include_full: the first view is the whole image.
    """

    default_samples = 16

    def __init__(self, model, scale: tuple[float, float] = (0.25, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 include_full: bool = True, **options):
        super().__init__(model, **options)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.scale, self.ratio, self.include_full = tuple(scale), tuple(ratio), bool(include_full)

    def boxes(self, n: int, start: int, h: int, w: int, generator: torch.Generator) -> list[tuple[int, int, int, int]]:
        out = []
        for k in range(start, start + n):
            if k == 0 and self.include_full:
                out.append((0, 0, h, w))
                continue
            u = torch.rand(4, generator=generator).tolist()
            area = (self.scale[0] + u[0] * (self.scale[1] - self.scale[0])) * h * w
            log_r = math.log(self.ratio[0]) + u[1] * (math.log(self.ratio[1]) - math.log(self.ratio[0]))
            r = math.exp(log_r)
            cw = min(w, max(1, round(math.sqrt(area * r))))
            ch = min(h, max(1, round(math.sqrt(area / r))))
            y0 = min(h - ch, int(u[2] * (h - ch + 1)))
            x0 = min(w - cw, int(u[3] * (w - cw + 1)))
            out.append((y0, x0, ch, cw))
        return out

    def views(self, x, start, generator):
        n, _, h, w = x.shape
        views, cov = [], x.new_zeros(n, h, w)
        for i, (y0, x0, ch, cw) in enumerate(self.boxes(n, start, h, w, generator)):
            crop = x[i : i + 1, :, y0 : y0 + ch, x0 : x0 + cw]
            views.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
                         if (ch, cw) != (h, w) else crop)
            cov[i, y0 : y0 + ch, x0 : x0 + cw] = 1
        return torch.cat(views), cov


SPECS = [
    MethodSpec("smoothgrad", SmoothGrad, "SmoothGrad (Smilkov et al. 2017)", stochastic=True, normalization="p99",
               quick={"samples": 4}),
    MethodSpec("cropsal", CropSaliency, "random-crop aggregation (Maruf et al. 2023)", stochastic=True,
               normalization="p99", quick={"samples": 4}),
]
