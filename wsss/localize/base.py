"""The localizer base class and the machinery every method shares.

A localizer turns a trained classifier into per-class maps::

    loc = wsss.localize.create("jigsaw", model, samples=32, seed=0)
    maps = loc.attribute(images, labels)   # (B,3,H,W) in [0,1], (B,K) multi-hot -> (B,K,H,W)

Maps are raw, non-negative float32 at the input size on the input's device, zero for absent classes.
Normalization, thresholds and masks live in :mod:`wsss.pseudo`.
"""

from __future__ import annotations

import contextlib
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class Localizer(ABC):
    """Base class: one abstract method, :meth:`_attribute`.

    Args:
        model: a CAM-architecture classifier (``features``, ``classifier``, ``forward``).
        seed: base seed; per-image randomness is drawn from ``(seed, image id)``.
    """

    #: whether the method needs gradients (False for forward read-outs such as CAM).
    needs_grad: bool = True

    def __init__(self, model: nn.Module, seed: int = 0, **options):
        if options:
            from wsss.errors import ConfigError

            raise ConfigError(f"{type(self).__name__} got unknown options: {', '.join(sorted(options))}")
        self.model = model
        self.seed = int(seed)

    def attribute(self, images: torch.Tensor, labels: torch.Tensor,
                  ids: Sequence[str | int] | None = None) -> torch.Tensor:
        """Per-class localization maps.

        Args:
            images: ``(B, 3, H, W)`` float in [0, 1].
            labels: ``(B, K)`` multi-hot (present classes).
            ids: one id per image (seeds its randomness, so chunking, resume and sharding never
                change a result); defaults to the position in the batch.
        Returns:
            ``(B, K, H, W)`` float32, non-negative, zero for absent classes.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError("images and labels disagree on the batch size")
        ids = list(range(images.shape[0])) if ids is None else list(ids)
        labels = labels.to(images.device).float()
        with frozen(self.model), torch.set_grad_enabled(self.needs_grad):
            maps = self._attribute(images.float(), labels, ids)
        maps = torch.nan_to_num(maps.float().clamp_min(0), nan=0.0, posinf=0.0)
        return maps * (labels[:, :, None, None] > 0)

    @abstractmethod
    def _attribute(self, images: torch.Tensor, labels: torch.Tensor, ids: list) -> torch.Tensor:
        """Return ``(B, K, H, W)`` maps; the base class clamps, cleans and masks absent classes."""

    def generator(self, image_id: str | int, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator seeded from ``(seed, image id)`` only (CPU: same draws on every device)."""
        return torch.Generator().manual_seed(image_seed(self.seed, image_id))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def image_seed(seed: int, image_id: str | int) -> int:
    """Stable 63-bit seed from ``(seed, image id)`` (crc32, not Python's salted ``hash``)."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(image_id).encode())) % (2**63 - 1)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; everything restored afterwards
    (each module's ``training`` flag and each parameter's ``requires_grad``)."""
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        model.eval()
        for p in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags.items():
            p.requires_grad_(flag)


@contextlib.contextmanager
def capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record ``module``'s outputs during forward passes; the hook is always removed."""
    store: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        yield store
    finally:
        handle.remove()


def present_classes(labels: torch.Tensor) -> list[int]:
    """Sorted class indices present in at least one image of the batch (one host sync per batch)."""
    return torch.nonzero(labels.sum(0) > 0).flatten().tolist()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(B, K, h, w)`` maps to ``size`` (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class MultiScale(Localizer):
    """Multi-scale + horizontal-flip inference around any localizer (IRN / AMN protocol on real data):
    the image is resized by each scale (and flipped), maps are resized back and summed."""

    def __init__(self, inner: Localizer, scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0), flip: bool = True):
        super().__init__(inner.model, seed=inner.seed)
        self.inner, self.scales, self.flip = inner, tuple(scales), bool(flip)
        self.needs_grad = inner.needs_grad

    def _attribute(self, images, labels, ids):
        h, w = images.shape[-2:]
        total = None
        for s in self.scales:
            size = (max(8, round(h * s)), max(8, round(w * s)))
            x = images if size == (h, w) else nn.functional.interpolate(images, size=size, mode="bilinear",
                                                                         align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                xi = x.flip(-1) if flipped else x
                # the inner localizer sees a distinct id per view, so its randomness differs per view
                view_ids = [f"{i}|{s}|{int(flipped)}" for i in ids]
                maps = self.inner._attribute(xi, labels, view_ids).clamp_min(0)
                maps = maps.flip(-1) if flipped else maps
                maps = upsample(maps, (h, w))
                total = maps if total is None else total + maps
        return total
