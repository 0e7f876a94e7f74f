"""A third-party localization method, as a user's own package would ship it: one module, plus one entry-point
line in its ``pyproject.toml``::

    [project.entry-points."wsss.methods"]
    toy-erase = "toy_wsss_method:SPEC"

The tests put this folder on ``sys.path`` (with the ``toy_wsss_method-0.1.dist-info`` an install would write),
so the method reaches wsss the way an installed plugin does, with no edit to wsss itself.
"""

import torch

from wsss.localize import MethodSpec
from wsss.localize.gradients import GradientLocalizer


class RandomErase(GradientLocalizer):
    """Gradient saliency accumulated over views with a random share of the pixels greyed out (a toy
    stochastic method); each pixel's map is averaged over the views that kept it."""

    default_samples = 4

    def __init__(self, model, keep: float = 0.7, **options):
        super().__init__(model, **options)
        self.keep = float(keep)

    def views(self, x, start, generator):
        n, _, h, w = x.shape
        kept = (torch.rand(n, 1, h, w, generator=generator) < self.keep).to(x.device, x.dtype)
        return x * kept + 0.5 * (1 - kept), kept[:, 0]


SPEC = MethodSpec("toy-erase", RandomErase, "toy plugin: saliency over randomly erased pixels", stochastic=True,
                  normalization="p99", quick={"samples": 2})
