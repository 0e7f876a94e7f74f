"""AMN class maps (Lee et al. CVPR 2022), as the official inference (gaviotas/AMN ``step/make_amn_cam.py``).

What the official code does, per image, with the image's true labels fed to the label encoder:

1. logits of the image and of its horizontal flip are averaged (the flip's logits flipped back), at each
   scale; each scale's logits are upsampled (bilinear) to the image size and averaged over scales;
2. softmax over all K+1 channels, then only background + the present classes are kept (no renormalization);
3. each kept map is min-max normalized over the image, ``(p - min) / (max - min + 1e-5)``, **except on the
   pixels that the AMN training label (IRN's IR label from the CAM maps) calls confident background**,
   where the raw softmax probability is kept;
4. evaluation drops the background map and puts a constant threshold (0.25) in its place.

Here 1-3 are :class:`AMNLocalizer` (the class maps, without the background channel, as every localizer);
4 is the pseudo-mask step. Deviations: the confident-background exception needs the IR labels
(``ir_labels`` option, e.g. :class:`wsss.train.amn.IRLabels`); without them every map is min-max
normalized everywhere. The network runs in eval mode; the official code's ``train()`` override never lets
the model leave training mode, so its dropout (0.1) stays active at inference, which we take for an
accident. Multi-scale images are resized bilinearly (official: PIL bicubic).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, upsample

MINMAX_EPS = 1e-5


class AMNLocalizer(Localizer):
    """Per-class probability maps of a trained AMN (:func:`wsss.train.amn.load_amn`).

    Args:
        model: a trained :class:`wsss.models.amn.AMN`.
        flip: average the logits of the image and of its horizontal flip (official: yes).
        scales: image scales whose upsampled logits are averaged (official on VOC: 1.0, 0.5, 1.5, 2.0).
            Use this rather than the generic multi-scale wrapper, which would average normalized maps.
        ir_labels: ``image id -> uint8 (H, W)`` IR label of the image (0 = confident background), at the
            image's size (resized by nearest neighbour otherwise); keeps the raw probabilities on confident
            background as the official code. ``None``: min-max normalize everywhere.
    Returns (``attribute``): ``(B, K, H, W)`` maps in [0, 1], zero for absent classes; threshold with a
    constant background (t = 0.25 in the paper).
    """

    needs_grad = False

    def __init__(self, model: nn.Module, flip: bool = True, scales: tuple[float, ...] = (1.0,),
                 ir_labels: Callable[[str], np.ndarray] | None = None, seed: int = 0, **options):
        super().__init__(model, seed=seed, **options)
        if not hasattr(model, "label_enc"):
            raise ConfigError("method 'amn' needs a trained AMN (wsss.train.amn.load_amn), "
                              f"got {type(model).__name__}")
        self.flip, self.scales, self.ir_labels = bool(flip), tuple(float(s) for s in scales), ir_labels

    def logits(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Flip- and scale-averaged logits ``(B, K+1, H, W)`` at the input size."""
        b, _, h, w = images.shape
        total = None
        for s in self.scales:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = images
            if size != (h, w):
                x = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            if self.flip:
                out = self.model(torch.cat([x, x.flip(-1)]), torch.cat([labels, labels]))
                out = (out[:b] + out[b:].flip(-1)) / 2
            else:
                out = self.model(x, labels)
            out = upsample(out.float(), (h, w))
            total = out if total is None else total + out
        return total / len(self.scales)

    def _attribute(self, images, labels, ids):
        probs = torch.softmax(self.logits(images, labels), dim=1)[:, 1:]  # (B, K, H, W), background dropped
        lo = probs.amin(dim=(2, 3), keepdim=True)
        hi = probs.amax(dim=(2, 3), keepdim=True)
        maps = (probs - lo) / (hi - lo + MINMAX_EPS)
        if self.ir_labels is not None:
            bg = torch.stack([self._background(i, images.shape[-2:]) for i in ids]).to(images.device)
            maps = torch.where(bg[:, None], probs, maps)
        return maps

    def _background(self, image_id, size) -> torch.Tensor:
        raw = self.ir_labels(image_id)
        if raw is None:  # no training label for this image: every pixel is min-max normalized
            return torch.zeros(tuple(size), dtype=torch.bool)
        label = torch.as_tensor(np.asarray(raw))
        if tuple(label.shape) != tuple(size):
            label = F.interpolate(label[None, None].float(), size=tuple(size), mode="nearest")[0, 0]
        return label == 0


SPECS = [
    MethodSpec("amn", AMNLocalizer, "AMN (Lee et al. CVPR 2022): needs a trained AMN; amn-<method> trains it on "
               "<method>'s maps", normalization="max", requires="amn", headline=True),
]
