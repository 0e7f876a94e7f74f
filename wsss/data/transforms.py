"""Training transforms on uint8 arrays -> float tensors in [0, 1] (the model normalizes itself)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255)


def random_scale_crop(image: torch.Tensor, mask: torch.Tensor | None, crop: int, scale: tuple[float, float],
                      flip: bool, generator: torch.Generator, fill_mask: int = 255):
    """Random rescale (bilinear image, nearest mask), horizontal flip, then a ``crop x crop`` window,
    padded (image with 0.5 grey, mask with ``fill_mask``) when the image is smaller."""
    _, h, w = image.shape
    s = float(scale[0] + torch.rand(1, generator=generator) * (scale[1] - scale[0]))
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) != (h, w):
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        if mask is not None:
            mask = F.interpolate(mask[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].to(mask.dtype)
    if flip and bool(torch.rand(1, generator=generator) < 0.5):
        image = image.flip(-1)
        mask = mask.flip(-1) if mask is not None else None
    ph, pw = max(crop - nh, 0), max(crop - nw, 0)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.5)
        if mask is not None:
            mask = F.pad(mask, (0, pw, 0, ph), value=fill_mask)
    _, hh, ww = image.shape
    y0 = int(torch.randint(hh - crop + 1, (1,), generator=generator))
    x0 = int(torch.randint(ww - crop + 1, (1,), generator=generator))
    image = image[:, y0 : y0 + crop, x0 : x0 + crop]
    mask = mask[y0 : y0 + crop, x0 : x0 + crop] if mask is not None else None
    return image, mask
