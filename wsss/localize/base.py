"""The localizer base class and the machinery every method shares.

A localizer turns a trained classifier into per-class maps::

    loc = wsss.localize.create("jigsaw", model, samples=32, seed=0)
    maps = loc.attribute(images, labels)   # (B,3,H,W) in [0,1], (B,K) multi-hot -> (B,K,H,W)
    res = loc.attribute(images, labels, compact=True)   # ClassMaps: the present classes only
    res.maps, res.classes                  # (B,S,H,W), (B,S) class index or -1; S = most classes of an image

Maps are raw, non-negative float32 at the input size on the input's device, zero for absent classes.
The compact result scales with the present classes, not with K (K = 1000 never allocates ``(B, K, H, W)``);
the built-in methods compute only the present classes' maps in both forms.
Normalization, thresholds and masks live in :mod:`wsss.pseudo`.

A :class:`MethodSpec` sits next to each localizer and is the one place that says what the rest of the
toolkit needs to know about a method (registered with :func:`wsss.localize.register`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from wsss.errors import ConfigError


class Localizer(ABC):
    """Base class: one abstract method, :meth:`_attribute`.

    Args:
        model: a CAM-architecture classifier (``features``, ``classifier``, ``forward``).
        seed: base seed; per-image randomness is drawn from ``(seed, image id)``.
    """

    #: whether the method needs gradients (False for forward read-outs such as CAM).
    needs_grad: bool = True
    #: whether the maps are computed from the pixels passed in (so multi-scale / flip views apply); False for
    #: maps stored per image id during training (OAA's attention bank).
    from_image: bool = True

    def __init__(self, model: nn.Module, seed: int = 0, **options):
        if options:
            raise ConfigError(f"{type(self).__name__} got unknown options: {', '.join(sorted(options))}")
        self.model = model
        self.seed = int(seed)

    def attribute(self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[str | int] | None = None, *,
                  compact: bool = False) -> torch.Tensor | ClassMaps:
        """Per-class localization maps.

        Args:
            images: ``(B, 3, H, W)`` float in [0, 1].
            labels: ``(B, K)`` multi-hot (present classes).
            ids: one id per image (seeds its randomness, so chunking, resume and sharding never
                change a result); defaults to the position in the batch.
            compact: return a :class:`ClassMaps` with the present classes' maps only (memory and time
                proportional to the present classes, not to K); the same values as the dense maps.
        Returns:
            ``(B, K, H, W)`` float32, non-negative, zero for absent classes; or, with ``compact``, a
            :class:`ClassMaps` (``maps (B, S, H, W)``, ``classes (B, S)``).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError("images and labels disagree on the batch size")
        ids = list(range(images.shape[0])) if ids is None else list(ids)
        labels = labels.to(images.device).float()
        if compact:
            slots = slot_classes(labels)
            with frozen(self.model), torch.set_grad_enabled(self.needs_grad):
                maps = self._attribute_slots(images.float(), labels, ids, slots)
            return ClassMaps(_clean(maps).mul_((slots >= 0)[:, :, None, None]), slots)
        with frozen(self.model), torch.set_grad_enabled(self.needs_grad):
            maps = self._attribute(images.float(), labels, ids)
        return _clean(maps).mul_(labels[:, :, None, None] > 0)

    @abstractmethod
    def _attribute(self, images: torch.Tensor, labels: torch.Tensor, ids: list) -> torch.Tensor:
        """Return ``(B, K, H, W)`` maps; the base class clamps, cleans and masks absent classes."""

    def _attribute_slots(self, images: torch.Tensor, labels: torch.Tensor, ids: list,
                         slots: torch.Tensor) -> torch.Tensor:
        """``(B, S, H, W)`` maps of the classes in ``slots`` (:func:`slot_classes`; -1 slots are masked by the
        caller). This default gathers them from the dense :meth:`_attribute`; a method that can compute only
        the present classes overrides it (and derives :meth:`_attribute` with :func:`dense_from_slots`)."""
        return pick(self._attribute(images, labels, ids), slots)

    def generator(self, image_id: str | int) -> torch.Generator:
        """A CPU generator seeded from ``(seed, image id)`` only, so every device draws the same numbers."""
        return torch.Generator().manual_seed(image_seed(self.seed, image_id))


@dataclasses.dataclass
class ClassMaps:
    """Maps of the present classes only (``Localizer.attribute(..., compact=True)``).

    Attributes:
        maps: ``(B, S, H, W)`` float32; slot ``j`` of image ``i`` is the map of ``classes[i, j]``.
        classes: ``(B, S)`` long class indices (0..K-1) in ascending order per image, ``-1`` for the padding
            slots of images with fewer than ``S`` present classes (their maps are zero).
    """

    maps: torch.Tensor
    classes: torch.Tensor

    def dense(self, num_classes: int) -> torch.Tensor:
        """The ``(B, K, H, W)`` maps (zero for absent classes)."""
        return scatter_slots(self.maps, self.classes, num_classes)

    def image(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``i``'s ``(maps (K_i, H, W), classes (K_i,))`` without the padding slots."""
        n = int((self.classes[i] >= 0).sum())
        return self.maps[i, :n], self.classes[i, :n]


def slot_classes(labels: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` long: slot ``j`` of image ``i`` is its ``j``-th present class (ascending), ``-1`` past its
    count; ``S`` is the most present classes of an image (one host sync)."""
    present = labels > 0
    counts = present.sum(1)
    s = int(counts.max()) if labels.shape[0] else 0
    order = torch.sort((~present).to(torch.int8), dim=1, stable=True).indices[:, :s]
    valid = torch.arange(s, device=labels.device)[None] < counts[:, None]
    return torch.where(valid, order, torch.full_like(order, -1))


def scatter_slots(maps: torch.Tensor, slots: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, S, H, W)`` slot maps -> ``(B, K, H, W)`` dense maps (zero for classes in no slot)."""
    b, _, h, w = maps.shape
    out = maps.new_zeros(b, num_classes, h, w)
    bi, sj = torch.nonzero(slots >= 0, as_tuple=True)
    out[bi, slots[bi, sj]] = maps[bi, sj]
    return out


def pick(scores: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``(B, S, ...)`` rows of ``scores`` ``(B, K, ...)`` at the slot classes (class 0 for -1 slots)."""
    idx = slots.clamp_min(0)
    return scores.gather(1, idx.view(*idx.shape, *([1] * (scores.dim() - 2))).expand(-1, -1, *scores.shape[2:]))


BACKWARDS = ("auto", "batched", "loop")


def check_backward(backward: str) -> str:
    """``backward`` (how the present classes' gradients are taken, see the localizers), checked."""
    if backward not in BACKWARDS:
        raise ConfigError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    return backward


def dense_from_slots(loc: Localizer, images: torch.Tensor, labels: torch.Tensor, ids: list) -> torch.Tensor:
    """A slot-native method's dense :meth:`Localizer._attribute`: its slot maps scattered to ``(B, K, H, W)``."""
    slots = slot_classes(labels)
    return scatter_slots(loc._attribute_slots(images, labels, ids, slots), slots, labels.shape[1])


def _clean(maps: torch.Tensor) -> torch.Tensor:
    """Clamp at 0 and zero NaN / inf, in place on the method's (fresh) output: no extra (B, K, H, W) copies."""
    maps = maps.detach().float()
    return torch.nan_to_num_(maps.clamp_(min=0), nan=0.0, posinf=0.0)


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
    if maps.numel() == 0:
        return maps.new_zeros(*maps.shape[:-2], *size)
    return nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class MultiScale(Localizer):
    """Multi-scale + horizontal-flip inference around any localizer (IRN / AMN protocol on real data):
    the image is resized by each scale (and flipped), maps are resized back and summed."""

    def __init__(self, inner: Localizer, scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0), flip: bool = True):
        super().__init__(inner.model, seed=inner.seed)
        self.inner, self.scales, self.flip = inner, tuple(scales), bool(flip)
        self.needs_grad = inner.needs_grad

    def _attribute(self, images, labels, ids):
        return dense_from_slots(self, images, labels, ids)

    def _attribute_slots(self, images, labels, ids, slots):
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
                maps = self.inner._attribute_slots(xi, labels, view_ids, slots).clamp_min(0)
                maps = maps.flip(-1) if flipped else maps
                maps = upsample(maps, (h, w))
                total = maps if total is None else total + maps
        return total


# ---- method specs ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """Everything the toolkit needs to know about one localization method.

    Args:
        name: the method's name (``wsss run --methods``, ``results.json`` keys, map folders).
        factory: ``factory(model, **options) -> Localizer``.
        summary: one line for ``wsss methods`` and the docs.
        stochastic: draws random views (so it takes ``seed``, and chunking must not change its maps).
        normalization: how its raw maps are normalized before thresholding: ``max`` (CAM-like maps) or
            ``p99`` (heavy-tailed gradient maps: the 99th percentile, clipped to 1).
        requires: ``classifier`` (a trained classifier), ``amn`` (a trained AMN network) or ``checkpoint`` (what
            the classifier's training left next to its checkpoint: the factory also gets ``checkpoint=<path>``,
            e.g. OAA's attention bank, the training snapshots; see :mod:`wsss.localize.trained`).
        source: for ``requires="amn"``: the method whose maps AMN is trained on (``None``: the run's
            ``amn.from_maps``).
        quick: options used by ``--quick`` (e.g. fewer samples), below any the user sets.
        inputs: for a fusion: the methods whose maps it fuses, base (the CAM) first. A run computes the
            inputs' maps (with their own options) and fuses the stored maps.
        fusion: for a fusion: its name in :data:`wsss.localize.fusion.FUSIONS`.
        headline: shown in the report's activation-distribution panel.
    """

    name: str
    factory: Callable[..., Localizer]
    summary: str = ""
    stochastic: bool = False
    normalization: Literal["max", "p99"] = "p99"
    requires: Literal["classifier", "amn", "checkpoint"] = "classifier"
    source: str | None = None
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    fusion: str | None = None
    headline: bool = False

    def __post_init__(self):
        if self.normalization not in ("max", "p99"):
            raise ConfigError(f"method {self.name!r}: normalization must be max or p99")
        if self.requires not in ("classifier", "amn", "checkpoint"):
            raise ConfigError(f"method {self.name!r}: requires must be classifier, amn or checkpoint")
        if bool(self.inputs) != bool(self.fusion):
            raise ConfigError(f"method {self.name!r}: a fusion needs both inputs and fusion")

    @property
    def is_fusion(self) -> bool:
        return bool(self.inputs)

    def create(self, model: nn.Module, **options) -> Localizer:
        return self.factory(model, **options)

    def defaults(self) -> dict[str, Any]:
        """The factory's keyword defaults (base classes first, then subclasses, then a partial's keywords)."""
        factory, fixed = self.factory, {}
        if isinstance(factory, functools.partial):
            factory, fixed = factory.func, dict(factory.keywords)
        out: dict[str, Any] = {}
        klasses = reversed(factory.__mro__) if inspect.isclass(factory) else ()
        callables = [vars(k)["__init__"] for k in klasses if k is not object and "__init__" in vars(k)]
        for fn in callables or [factory]:
            for k, p in inspect.signature(fn).parameters.items():
                if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    out[k] = p.default
        out.update(fixed)
        return out

    def effective_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options a localizer built with ``options`` runs with: defaults updated by ``options``, without
        the knobs that never change a map (``seed`` of a deterministic method, ``chunk_size``, ``backward``); tuples as
        lists. Two option sets that give the same dict give the same maps."""
        out = {**self.defaults(), **options}
        if out.get("samples", 0) is None:
            out["samples"] = getattr(self.factory, "default_samples", 1)
        out.pop("chunk_size", None)
        out.pop("backward", None)
        if not self.stochastic:
            out.pop("seed", None)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def validate(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` for an option the method does not take, or a value it rejects (the
        localizer is built around a tiny stand-in classifier, so nothing waits for a trained model)."""
        known = set(self.defaults())
        accepts_any = _accepts_var_keyword(self.factory)
        unknown = sorted(set(options) - known) if not accepts_any else []
        if unknown:
            raise ConfigError(f"method {self.name!r} has no option {unknown[0]!r}; options: {', '.join(sorted(known))}")
        if self.requires != "classifier":
            return
        from wsss.models import create as create_model  # late: models are not needed to list methods

        try:
            self.create(create_model("smallcnn", 2), **options)
        except ConfigError as exc:
            raise ConfigError(f"method {self.name!r}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"method {self.name!r}: invalid options ({exc})") from None


def _accepts_var_keyword(factory: Callable) -> bool:
    """Whether the factory's own signature takes ``**options`` that it does not check itself (a plain
    function); localizer classes pass theirs on to :class:`Localizer`, which rejects unknown ones."""
    if isinstance(factory, functools.partial):
        factory = factory.func
    if inspect.isclass(factory):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
