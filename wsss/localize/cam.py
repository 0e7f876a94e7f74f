"""CAM and the Grad-CAM family.

Each variant only says how its channel weights are computed (pytorch-grad-cam's idea, on our base). Only
the present classes of each image are computed (class "slots", :func:`wsss.localize.base.slot_classes`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, check_backward, dense_from_slots, pick, upsample


class CAM(Localizer):
    """``ReLU(sum_d w[c,d] F[d])`` on the final feature map, bilinearly upsampled (Zhou et al. 2016)."""

    needs_grad = False

    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _attribute_slots(self, images, labels, ids, slots):
        # all K maps at the feature resolution are cheap; only the present ones are upsampled
        cams = pick(self.model.forward_cam(self.model.forward_features(images)), slots).relu()
        return upsample(cams, images.shape[-2:])


@contextlib.contextmanager
def leaf_at(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """During forward passes, ``module``'s output is replaced by a leaf that requires grad (recorded in the
    yielded list; the network goes on with a copy, so in-place ops downstream never touch it): the graph
    starts at the layer, nothing before it is recorded. The hook is always removed."""
    store: list[torch.Tensor] = []

    def hook(_m, _i, out):
        leaf = out.detach().requires_grad_(True)
        store.append(leaf)
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class GradCAM(Localizer):
    """``ReLU(sum_d alpha[c,d] F_l[d])`` with ``alpha = mean_spatial(ds_c/dF_l)`` (Selvaraju et al. 2017).

    Args:
        layer: dotted name of the module whose output is ``F_l`` (default ``"features"``, the last
            feature map, where Grad-CAM equals CAM / (h*w) for a GAP + linear head).
        backward: ``batched`` (the present classes' gradients in one vmapped backward,
            ``is_grads_batched``), ``loop`` (one backward per class slot) or ``auto`` (batched). Never
            changes a map beyond float rounding.
    """

    def __init__(self, model: nn.Module, layer: str = "features", backward: str = "auto", seed: int = 0,
                 **options):
        super().__init__(model, seed=seed, **options)
        self.layer, self.backward = layer, check_backward(backward)
        try:
            self.module = model.get_submodule(layer)
        except AttributeError:
            names = ", ".join(n for n, _ in model.named_modules() if n.count(".") <= 1 and n)
            raise ConfigError(f"Grad-CAM layer {layer!r} not in the model; try one of: {names}") from None

    def weights(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` channel weights from the gradient ``(..., D, h, w)`` and the activation ``(B, D, h, w)``."""
        return grads.mean(dim=(-2, -1))

    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _attribute_slots(self, images, labels, ids, slots):
        s = slots.shape[1]
        if s == 0:
            return images.new_zeros(images.shape[0], 0, *images.shape[-2:])
        with leaf_at(self.module) as store:
            logits = self.model(images.detach())
        acts = store[-1]
        picked = pick(logits, slots)  # (B, S)
        if self.backward == "loop" or s == 1:
            grads = torch.stack([torch.autograd.grad(picked[:, j].sum(), acts, retain_graph=j < s - 1)[0]
                                 for j in range(s)])
        else:  # one backward for every slot: grad_outputs (S, B, S) one-hot in the slot
            eye = torch.eye(s, device=picked.device, dtype=picked.dtype)
            (grads,) = torch.autograd.grad(picked, acts, eye[:, None, :].expand(s, picked.shape[0], s),
                                           is_grads_batched=True)
        w = self.weights(grads, acts.detach())  # (S, B, D)
        # a weighted sum per map (not einsum's batched matmul, whose rounding may differ between batch rows)
        cams = (w.transpose(0, 1)[..., None, None] * acts.detach()[:, None]).sum(2).relu()
        return upsample(cams, images.shape[-2:])


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ closed form under the exp-score assumption (Chattopadhay et al. 2018), as
    pytorch-grad-cam: ``a = g^2 / (2 g^2 + sum_ij F g^3)``, ``w = sum_ij a ReLU(g)``."""

    def weights(self, grads, acts):
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + (acts.sum(dim=(-2, -1), keepdim=True) * g3)
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        return (alpha * grads.relu()).sum(dim=(-2, -1))


SPECS = [
    MethodSpec("cam", CAM, "CAM (Zhou et al. 2016)", normalization="max", headline=True),
    MethodSpec("gradcam", GradCAM, "Grad-CAM, `layer` option (Selvaraju et al. 2017)", normalization="max"),
    MethodSpec("gradcampp", GradCAMPlusPlus, "Grad-CAM++ (Chattopadhay et al. 2018)", normalization="max"),
]
