"""CAM and the Grad-CAM family.

Each variant only says how its channel weights are computed (pytorch-grad-cam's idea, on our base).
"""

from __future__ import annotations

import torch
from torch import nn

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, capture, present_classes, upsample


class CAM(Localizer):
    """``ReLU(sum_d w[c,d] F[d])`` on the final feature map, bilinearly upsampled (Zhou et al. 2016)."""

    needs_grad = False

    def _attribute(self, images, labels, ids):
        cams = self.model.forward_cam(self.model.forward_features(images)).relu()
        return upsample(cams, images.shape[-2:])


class GradCAM(Localizer):
    """``ReLU(sum_d alpha[c,d] F_l[d])`` with ``alpha = mean_spatial(ds_c/dF_l)`` (Selvaraju et al. 2017).

    Args:
        layer: dotted name of the module whose output is ``F_l`` (default ``"features"``, the last
            feature map, where Grad-CAM equals CAM / (h*w) for a GAP + linear head).
    """

    def __init__(self, model: nn.Module, layer: str = "features", seed: int = 0, **options):
        super().__init__(model, seed=seed, **options)
        self.layer = layer
        try:
            self.module = model.get_submodule(layer)
        except AttributeError:
            names = ", ".join(n for n, _ in model.named_modules() if n.count(".") <= 1 and n)
            raise ConfigError(f"Grad-CAM layer {layer!r} not in the model; try one of: {names}") from None

    def weights(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` channel weights from the gradient and the activation ``(B, D, h, w)``."""
        return grads.mean(dim=(2, 3))

    def _attribute(self, images, labels, ids):
        b, k = labels.shape
        out = images.new_zeros(b, k, *images.shape[-2:])
        # parameters are frozen during attribution: let the graph start at the input instead
        with capture(self.module) as store:
            logits = self.model(images.detach().requires_grad_(True))
        acts = store[-1]
        classes = present_classes(labels)
        for i, c in enumerate(classes):
            (grads,) = torch.autograd.grad(logits[:, c].sum(), acts, retain_graph=i < len(classes) - 1)
            w = self.weights(grads, acts)
            cam = (w[:, :, None, None] * acts).sum(1, keepdim=True).relu()
            out[:, c : c + 1] = upsample(cam.detach(), images.shape[-2:])
        return out


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ closed form under the exp-score assumption (Chattopadhay et al. 2018), as
    pytorch-grad-cam: ``a = g^2 / (2 g^2 + sum_ij F g^3)``, ``w = sum_ij a ReLU(g)``."""

    def weights(self, grads, acts):
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + (acts.sum(dim=(2, 3), keepdim=True) * g3)
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        return (alpha * grads.relu()).sum(dim=(2, 3))


SPECS = [
    MethodSpec("cam", CAM, "CAM (Zhou et al. 2016)", normalization="max", headline=True),
    MethodSpec("gradcam", GradCAM, "Grad-CAM, `layer` option (Selvaraju et al. 2017)", normalization="max"),
    MethodSpec("gradcampp", GradCAMPlusPlus, "Grad-CAM++ (Chattopadhay et al. 2018)", normalization="max"),
]
