"""Localization maps: ``create(name, model, **options)`` over one registry of :class:`MethodSpec`.

==============  ======================================================  ============================
name            method                                                  module
==============  ======================================================  ============================
cam             CAM (Zhou et al. 2016)                                  ``localize/cam.py``
gradcam         Grad-CAM, ``layer`` option (Selvaraju et al. 2017)      ``localize/cam.py``
gradcampp       Grad-CAM++ (Chattopadhay et al. 2018)                   ``localize/cam.py``
saliency        gradient saliency (Simonyan et al. 2014)                ``localize/gradients.py``
smoothgrad      SmoothGrad (Smilkov et al. 2017)                        ``localize/aggregate.py``
cropsal         random-crop aggregation (Maruf et al. 2023)             ``localize/aggregate.py``
jigsaw          accumulated jigsaw saliency (ours)                      ``localize/jigsaw.py``
shufflecam      ablation: CAM accumulated over shuffles                 ``localize/jigsaw.py``
jigsaw-cam      geo(CAM, jigsaw): geometric-mean fusion (ours)          ``localize/fusion.py``
cropsal-cam     geo(CAM, cropsal): the same fusion with random crops    ``localize/fusion.py``
amn             AMN (Lee et al. CVPR 2022), needs a trained AMN         ``localize/amn.py``
oaa             OAA accumulated attention (Jiang et al. ICCV 2019),     ``localize/trained.py``
                needs a classifier trained with ``--recipe oaa``
traj-cam        CAM averaged over training snapshots (ours), needs      ``localize/trained.py``
                ``classifier.snapshot_epochs``; also traj-saliency,
                traj-jigsaw
==============  ======================================================  ============================

``amn-<method>`` names AMN trained on ``<method>``'s maps (e.g. ``amn-jigsaw-cam``). Any method reads any
trained classifier: result key ``<method>@<classifier>`` (``cam@puzzle``, ``oaa@oaa``; ``wsss train-cls --recipe``
trains classifier ``<recipe>``).

A new method is one module and one registration: a :class:`Localizer` subclass plus
``register(MethodSpec("name", Factory, ...))``. Other packages add methods through the ``wsss.methods``
entry-point group (each entry point loads a :class:`MethodSpec` or a list of them); they then appear in
``wsss methods``, ``wsss run --methods``, the report, ``wsss bench`` and the registry-wide tests.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from wsss.errors import ConfigError
from wsss.localize import aggregate, amn, cam, fusion, gradients, jigsaw, trained
from wsss.localize.aggregate import CropSaliency, SmoothGrad
from wsss.localize.amn import AMNLocalizer
from wsss.localize.base import ClassMaps, Localizer, MethodSpec, MultiScale, pick, scatter_slots, slot_classes
from wsss.localize.cam import CAM, GradCAM, GradCAMPlusPlus
from wsss.localize.fusion import Fused
from wsss.localize.gradients import GradientLocalizer, Saliency
from wsss.localize.jigsaw import Jigsaw, ShuffleCAM
from wsss.localize.trained import OAAMaps, Trajectory

ENTRY_POINT_GROUP = "wsss.methods"
AMN_PREFIX = "amn-"

_SPECS: dict[str, MethodSpec] = {}
_PLUGINS = {"loaded": False}


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add a method; the CLI, the pipeline, the report, the benchmark and the registry-wide tests pick it up.
    A name that is taken raises :class:`ConfigError` unless ``replace``."""
    if not isinstance(spec, MethodSpec):
        raise ConfigError(f"register() takes a MethodSpec, got {type(spec).__name__}")
    if spec.name.startswith(AMN_PREFIX) or not spec.name or "@" in spec.name or "+" in spec.name:
        raise ConfigError(f"invalid method name {spec.name!r} (no '@' or '+', no '{AMN_PREFIX}' prefix)")
    if spec.name in _SPECS and not replace:
        raise ConfigError(f"method {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests that register a toy method clean up with this)."""
    _SPECS.pop(name, None)


def _load_plugins() -> None:
    """Register the specs of the ``wsss.methods`` entry points, once."""
    if _PLUGINS["loaded"]:
        return
    _PLUGINS["loaded"] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not fatal to the others
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of {ENTRY_POINT_GROUP} failed to load: "
                              f"{exc.__class__.__name__}: {exc}") from None
        for spec in obj if isinstance(obj, (list, tuple)) else [obj]:
            register(spec, replace=True)


def specs() -> list[MethodSpec]:
    """Every registered spec, by name."""
    _load_plugins()
    return [_SPECS[n] for n in sorted(_SPECS)]


def available() -> list[str]:
    """Registered method names (``amn-<method>`` is derived, not listed)."""
    return [s.name for s in specs()]


def spec(name: str) -> MethodSpec:
    """The spec of ``name``; ``amn-<method>`` resolves to AMN trained on ``<method>``'s maps."""
    _load_plugins()
    if name in _SPECS:
        return _SPECS[name]
    if name.startswith(AMN_PREFIX) and name[len(AMN_PREFIX):] in _SPECS:
        return dataclasses.replace(_SPECS["amn"], name=name, source=name[len(AMN_PREFIX):])
    raise ConfigError(f"unknown method {name!r}; available: {', '.join(available())} (and amn-<method>)")


def create(name: str, model: nn.Module, **options) -> Localizer:
    """Build a registered localizer around ``model`` (a CAM-architecture classifier; a trained AMN for
    ``amn``)."""
    return spec(name).create(model, **options)


for _module in (cam, gradients, aggregate, jigsaw, fusion, amn, trained):
    for _spec in _module.SPECS:
        register(_spec)

__all__ = ["CAM", "AMNLocalizer", "ClassMaps", "CropSaliency", "Fused", "GradCAM", "GradCAMPlusPlus",
           "GradientLocalizer", "Jigsaw", "Localizer", "MethodSpec", "MultiScale", "OAAMaps", "Saliency", "ShuffleCAM",
           "SmoothGrad", "Trajectory", "available", "create", "pick", "register", "scatter_slots", "slot_classes",
           "spec", "specs", "unregister"]
