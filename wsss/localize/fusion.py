"""Fusions of a CAM with a full-resolution map: CAM says which class, the other map how far it extends.

One definition serves every path: :class:`Fused` computes both maps and fuses them in memory
(``wsss.localize.create("jigsaw-cam", model)``), a run fuses the stored maps of its input methods, and the
study's fusion grid fuses stored maps with each mode. Inputs are normalized first with the one
normalization of :func:`wsss.pseudo.normalize_maps`: the CAM by its maximum, the filler map by its 99th
percentile clipped to 1 (by its maximum where that percentile is 0, i.e. a map that is almost everywhere
zero).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from wsss.errors import ConfigError
from wsss.localize.base import Localizer, MethodSpec, dense_from_slots
from wsss.pseudo import normalize_maps

BASE_NORM, FILLER_NORM = "max", "p99"


def geo(cam: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``sqrt(cam * fill)``: a pixel needs both CAM's class evidence and the filler's extent."""
    return torch.sqrt(cam * fill)


def region(cam: torch.Tensor, fill: torch.Tensor, seed_threshold: float = 0.3, dilation: int = 24) -> torch.Tensor:
    """The filler inside ``dilate(cam >= seed_threshold, dilation px)``, zero outside."""
    return fill * region_from_cam(cam, seed_threshold, dilation)


FUSIONS: dict[str, Callable[..., torch.Tensor]] = {
    "geo": geo,
    "region": region,
    "max": lambda cam, fill: torch.maximum(cam, fill),
    "mean": lambda cam, fill: (cam + fill) / 2,
    "cam-weighted": lambda cam, fill: cam * (0.5 + 0.5 * fill),
}
"""Fusion modes over normalized maps of equal shape ``(..., H, W)``; ``region`` takes its two parameters."""

REGION_PARAMS = ("seed_threshold", "dilation")


def fuse(mode: str, cam: torch.Tensor, fill: torch.Tensor, **params) -> torch.Tensor:
    """Normalize raw ``cam`` (max) and ``fill`` (p99) maps ``(K', H, W)`` or ``(B, K', H, W)`` and fuse them
    with ``mode``. ``params``: ``seed_threshold``, ``dilation`` for ``region`` (ignored otherwise)."""
    if mode not in FUSIONS:
        raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {mode!r}")
    cam_n, fill_n = normalize_maps(cam, BASE_NORM), normalize_maps(fill, FILLER_NORM)
    if mode == "region":
        squeeze = cam_n.dim() == 3
        out = region(cam_n[None] if squeeze else cam_n, fill_n[None] if squeeze else fill_n,
                     **{k: params[k] for k in REGION_PARAMS if k in params})
        return out[0] if squeeze else out
    return FUSIONS[mode](cam_n, fill_n)


def region_from_cam(cam: torch.Tensor, threshold: float, dilation: int) -> torch.Tensor:
    """``(B, K, H, W)`` float 0/1: ``dilate(cam / max >= threshold)`` (where ``cam > 0``) with a square of
    side ``2 * dilation + 1``."""
    peak = cam.flatten(2).amax(2).clamp_min(1e-12)[:, :, None, None]
    core = ((cam / peak) >= threshold) & (cam > 0)
    core = core.float()
    if dilation > 0:
        core = F.max_pool2d(core, 2 * dilation + 1, stride=1, padding=dilation)
    return core


class Fused(Localizer):
    """A CAM fused with a filler map, both computed on the same images.

    Args:
        inputs: ``(base, filler)`` registered method names, e.g. ``("cam", "jigsaw")``.
        fusion: a mode of :data:`FUSIONS` (``geo``, the default, was chosen on the built-in benchmark's
            tune split).
        seed_threshold, dilation: the CAM region (``fusion="region"``).
        filler: replaces the filler of ``inputs`` (e.g. ``saliency`` to isolate the shuffle's share).
        filler_options: options of the filler; unknown flat options go to the filler too:
            ``create("jigsaw-cam", model, samples=32)``.
    """

    def __init__(self, model, inputs: tuple[str, str] = ("cam", "jigsaw"), fusion: str = "geo",
                 seed_threshold: float = 0.3, dilation: int = 24, filler: str | None = None,
                 filler_options: dict | None = None, seed: int = 0, **options):
        from wsss.localize import create  # late: the registry imports this module

        super().__init__(model, seed=seed)
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        base, default_filler = inputs
        self.fusion, self.params = fusion, {"seed_threshold": float(seed_threshold), "dilation": int(dilation)}
        self.base = create(base, model)
        self.filler = create(filler or default_filler, model, seed=seed, **{**(filler_options or {}), **options})

    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _attribute_slots(self, images, labels, ids, slots):
        if slots.shape[1] == 0:
            return images.new_zeros(images.shape[0], 0, *images.shape[-2:])
        with torch.no_grad():
            cam = self.base.attribute(images, labels, ids, compact=True).maps
        return fuse(self.fusion, cam, self.filler.attribute(images, labels, ids, compact=True).maps, **self.params)


def fusion_spec(name: str, base: str, filler: str, mode: str = "geo", summary: str = "", **fields) -> MethodSpec:
    """The spec of ``mode(base, filler)``: a run fuses the stored maps of ``base`` and ``filler``."""
    return MethodSpec(name, functools.partial(Fused, inputs=(base, filler), fusion=mode),
                      summary or f"{mode}({base}, {filler})", normalization="max", inputs=(base, filler),
                      fusion=mode, stochastic=True, **fields)


SPECS = [
    fusion_spec("jigsaw-cam", "cam", "jigsaw", summary="CAM x jigsaw, geometric mean (ours)", headline=True),
    fusion_spec("cropsal-cam", "cam", "cropsal", summary="CAM x random-crop aggregation, geometric mean"),
]
