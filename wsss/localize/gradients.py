"""Input-gradient localizers: the shared gradient core and plain gradient saliency.

Every sampling method (SmoothGrad, random crops, jigsaw) is this core with a different
:meth:`GradientLocalizer.views`: ``n`` differentiable views of each image, the gradient of each
present class score with respect to the ORIGINAL image per view (``torch.autograd.grad`` on the
input, never parameter gradients), reduced per view, accumulated, divided by per-pixel coverage.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, check_backward, dense_from_slots

REDUCTIONS = ("absmax", "gradxinput", "l2")
WEIGHTINGS = ("uniform", "prob")


class GradientLocalizer(Localizer):
    """Gradient saliency accumulated over views of the image.

    Args:
        samples: views per image (N).
        chunk_size: views per image per forward pass (memory knob; never changes the result).
        reduction: ``absmax`` (max over RGB of the mean |gradient|, Simonyan et al. 2014),
            ``gradxinput`` (|sum_RGB gradient * x| per view), ``l2`` (L2 norm over RGB per view).
        weighting: ``uniform`` or ``prob`` (each view's gradient weighted by the class probability
            on that view).
        smooth_sigma: Gaussian smoothing of the final map, in pixels (0 = none).
        backward: how the present classes' input gradients are taken: ``batched`` (one vmapped backward
            for every class slot, ``is_grads_batched``), ``loop`` (one backward per slot, the graph
            retained) or ``auto``: ``batched``, except ``loop`` on a CPU with one intra-op thread (jigsaw per
            sample and class over the floor, ``benchmarks/vs_references.py``: with 2 threads batched 0.85x vs
            loop 0.98x, smallcnn 2 classes; with 1 thread loop 1.10 / 1.09 / 0.99x vs batched 1.27 / 1.14 /
            1.18x, smallcnn 2 and 4 classes, ResNet-50 2 classes). Never changes a map beyond float rounding.
    """

    default_samples = 1

    def __init__(self, model: nn.Module, samples: int | None = None, chunk_size: int = 16,
                 reduction: str = "absmax", weighting: str = "uniform", smooth_sigma: float = 0.0,
                 backward: str = "auto", seed: int = 0, **options):
        super().__init__(model, seed=seed, **options)
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.backward = check_backward(backward)
        self.samples = int(self.default_samples if samples is None else samples)
        if self.samples < 1 or chunk_size < 1:
            raise ConfigError("samples and chunk_size must be >= 1")
        self.chunk_size = int(chunk_size)
        self.reduction = reduction
        self.weighting = weighting
        self.smooth_sigma = float(smooth_sigma)

    # -- what a sampling method overrides -------------------------------------------------------
    def views(self, x: torch.Tensor, start: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Views ``start .. start+n-1`` of one image.

        Args:
            x: ``(n, 3, H, W)`` copies of the image (the leaf the gradient is taken against).
            start: index of the first view among the image's ``samples`` views.
            generator: the image's generator (CPU), consumed in view order.
        Returns:
            the model inputs ``(n, 3, H', W')`` (differentiable in ``x``) and the per-view coverage
            ``(n, H, W)`` of the original pixels, or ``None`` when every pixel is seen.
        """
        return x, None

    # -- the shared core ------------------------------------------------------------------------
    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _batched(self, device: torch.device) -> bool:
        if self.backward == "auto":  # the loop wins on a CPU with one intra-op thread (see the docstring)
            return device.type != "cpu" or torch.get_num_threads() > 1
        return self.backward == "batched"

    def _attribute_slots(self, images, labels, ids, slot_cls):
        # class "slots": slot j of image i is its j-th present class, so one backward pass per slot
        # serves every image (max present classes per image passes, not the batch's union of classes)
        b, slots = slot_cls.shape
        h, w = images.shape[-2:]
        if slots == 0:
            return images.new_zeros(b, 0, h, w)
        channels = 3 if self.reduction == "absmax" else 1
        acc = images.new_zeros(b, slots, channels, h, w)
        cov = images.new_zeros(b, h, w)
        gens = [self.generator(i) for i in ids]
        batched = self._batched(images.device) and slots > 1
        for start in range(0, self.samples, self.chunk_size):
            n = min(self.chunk_size, self.samples - start)
            leaf = images.repeat_interleave(n, dim=0).requires_grad_(True)  # (b*n, 3, H, W)
            views, covs = [], []
            for i in range(b):
                v, c = self.views(leaf[i * n : (i + 1) * n], start, gens[i])
                views.append(v)
                covs.append(c)
            logits = self.model(torch.cat(views))
            rows = slot_cls.repeat_interleave(n, dim=0)  # (b*n, slots)
            weight = (rows >= 0).to(logits.dtype)
            picked = logits.gather(1, rows.clamp_min(0))  # (b*n, slots)
            if self.weighting == "prob":
                weight = weight * torch.sigmoid(picked.detach())
            x = leaf.detach()
            if batched:  # every slot in one vmapped backward: grad_outputs (slots, b*n, slots)
                eye = torch.eye(slots, device=logits.device, dtype=logits.dtype)
                (grad,) = torch.autograd.grad(picked, leaf, weight.T[:, :, None] * eye[:, None, :],
                                              is_grads_batched=True)  # (slots, b*n, 3, H, W)
                red = self._reduce(grad, x).view(slots, b, n, channels, h, w).sum(2)
                acc += red.transpose(0, 1)
            else:
                for j in range(slots):
                    (grad,) = torch.autograd.grad(picked[:, j], leaf, grad_outputs=weight[:, j],
                                                  retain_graph=j < slots - 1)
                    acc[:, j] += self._reduce(grad, x).view(b, n, channels, h, w).sum(1)
            for i, c in enumerate(covs):
                cov[i] += n if c is None else c.sum(0)
        maps = acc.amax(2) if channels == 3 else acc[:, :, 0]
        maps = torch.where(cov[:, None] > 0, maps / cov[:, None].clamp_min(1e-12), torch.zeros_like(maps))
        if self.smooth_sigma > 0:
            maps = smooth(maps, self.smooth_sigma)
        return maps

    def _reduce(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-view reduction of ``(..., n, 3, H, W)`` gradients (channels at dim -3)."""
        if self.reduction == "absmax":
            return grad.abs()
        if self.reduction == "gradxinput":
            return (grad * x).sum(-3, keepdim=True).abs()
        return grad.pow(2).sum(-3, keepdim=True).sqrt()


class Saliency(GradientLocalizer):
    """Gradient saliency: ``max over RGB of |ds_c/dx|`` (Simonyan et al. 2014); one view."""


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``(..., H, W)`` maps with ``sigma`` pixels."""
    size = 2 * math.ceil(3 * sigma) + 1
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:])
    return gaussian_blur(flat, [size, size], [sigma, sigma]).reshape(shape)


SPECS = [MethodSpec("saliency", Saliency, "gradient saliency (Simonyan et al. 2014)", normalization="p99")]
