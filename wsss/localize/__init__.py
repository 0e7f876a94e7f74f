"""Localization maps: ``create(name, model, **options)`` over one registry.

==============  ======================================================  =========================
name            method                                                  module
==============  ======================================================  =========================
cam             CAM (Zhou et al. 2016)                                  ``localize/cam.py``
gradcam         Grad-CAM, ``layer`` option (Selvaraju et al. 2017)      ``localize/cam.py``
gradcampp       Grad-CAM++ (Chattopadhay et al. 2018)                   ``localize/cam.py``
saliency        gradient saliency (Simonyan et al. 2014)                ``localize/gradients.py``
smoothgrad      SmoothGrad (Smilkov et al. 2017)                        ``localize/aggregate.py``
cropsal         random-crop aggregation (Maruf et al. 2023)             ``localize/aggregate.py``
jigsaw          accumulated jigsaw saliency (ours)                      ``localize/jigsaw.py``
jigsaw-cam      CAM x jigsaw, geometric mean (ours)                     ``localize/jigsaw.py``
cropsal-cam     CAM x random-crop aggregation (same fusion)             ``localize/jigsaw.py``
shufflecam      ablation: CAM accumulated over shuffles                 ``localize/jigsaw.py``
amn             AMN (Lee et al. CVPR 2022), needs a trained AMN         ``localize/amn.py``
==============  ======================================================  =========================
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from wsss.errors import ConfigError
from wsss.localize.aggregate import CropSaliency, SmoothGrad
from wsss.localize.amn import AMNLocalizer
from wsss.localize.base import Localizer
from wsss.localize.cam import CAM, GradCAM, GradCAMPlusPlus
from wsss.localize.gradients import GradientLocalizer, Saliency
from wsss.localize.jigsaw import CamSeeded, Jigsaw, ShuffleCAM

_LOCALIZERS: dict[str, Callable[..., Localizer]] = {}


def register(name: str, factory: Callable[..., Localizer]) -> None:
    """Add a localizer; the CLI, the pipeline, the report and the registry-wide tests pick it up."""
    _LOCALIZERS[name] = factory


def available() -> list[str]:
    """Registered method names."""
    return sorted(_LOCALIZERS)


def create(name: str, model: nn.Module, **options) -> Localizer:
    """Build a registered localizer around ``model`` (a CAM-architecture classifier)."""
    if name not in _LOCALIZERS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _LOCALIZERS[name](model, **options)


register("cam", CAM)
register("gradcam", GradCAM)
register("gradcampp", GradCAMPlusPlus)
register("saliency", Saliency)
register("smoothgrad", SmoothGrad)
register("cropsal", CropSaliency)
register("jigsaw", Jigsaw)
register("jigsaw-cam", CamSeeded)
register("cropsal-cam", functools.partial(CamSeeded, filler="cropsal"))
register("shufflecam", ShuffleCAM)
register("amn", AMNLocalizer)

__all__ = ["CAM", "CamSeeded", "CropSaliency", "GradCAM", "GradCAMPlusPlus", "GradientLocalizer", "Jigsaw",
           "Localizer", "Saliency", "ShuffleCAM", "SmoothGrad", "available", "create", "register"]
