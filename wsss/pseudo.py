"""From raw class maps to pseudo-masks, and the threshold sweep that scores them (docs/metrics.md).

Localization methods return raw maps; normalization, thresholds and masks live here.
Label PNG helpers are re-exported from :mod:`wsss.labelio`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from wsss.errors import DataError
from wsss.labelio import VOC_PALETTE, load_label_png, save_label_png
from wsss.metrics import VOID, ConfusionMatrix, check_labels, robust_width

__all__ = [
    "VOC_PALETTE",
    "load_label_png",
    "make_sweep_matrices",
    "maps_to_mask",
    "normalize_maps",
    "save_label_png",
    "summarize_sweep",
    "sweep_counts",
    "sweep_image",
]

NormMode = Literal["max", "p99", "none"]

P99 = 0.99
"""Quantile used by the ``p99`` normalization (for heavy-tailed gradient maps)."""


def _quantile_last(x: torch.Tensor, q: float) -> torch.Tensor:
    """``q``-quantile over the last dim with linear interpolation (numpy's default); no size limit,
    unlike :func:`torch.quantile`."""
    s = x.sort(dim=-1).values
    pos = q * (s.shape[-1] - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[..., lo] + (s[..., hi] - s[..., lo]) * (pos - lo)


def normalize_maps(maps: torch.Tensor | np.ndarray, mode: NormMode = "max") -> torch.Tensor | np.ndarray:
    """Normalize each map of ``maps`` ((K', H, W) or (B, K', H, W)) to [0, 1], per map.

    ``max``: clip negatives to 0 (CAM convention), divide by the map's max.
    ``p99``: clip negatives to 0, divide by the map's 99th percentile and clip to 1; if that
    percentile is 0 (a map that is almost everywhere zero) divide by the max instead.
    ``none``: return ``maps`` unchanged. All-zero maps stay zero (never NaN).
    Returns the same type (a detached tensor on the same device, or a numpy array) and shape.
    """
    if mode == "none":
        return maps
    if mode not in ("max", "p99"):
        raise ValueError(f"unknown normalization {mode!r}; expected 'max', 'p99' or 'none'")
    is_numpy = not isinstance(maps, torch.Tensor)
    x = torch.as_tensor(np.asarray(maps)) if is_numpy else maps
    if x.ndim not in (3, 4):
        raise ValueError(f"maps must be (K', H, W) or (B, K', H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    shape = x.shape
    flat = x.detach().flatten(-2).clamp_min(0)  # flatten, not reshape(..., -1): K' = 0 (a background-only image)
    if flat.shape[-1] == 0:
        out = flat.reshape(shape)
    else:
        top = flat.amax(dim=-1)
        if mode == "p99":
            q = _quantile_last(flat, P99)
            denom = torch.where(q > 0, q, top)
        else:
            denom = top
        safe = torch.where(denom > 0, denom, torch.ones_like(denom)).unsqueeze(-1)
        out = (flat / safe).clamp_(max=1.0).reshape(shape)  # zero maps: 0 / 1 = 0
    return out.cpu().numpy() if is_numpy else out


def _as_maps_and_classes(norm_maps: object, classes: object) -> tuple[torch.Tensor, torch.Tensor]:
    maps = norm_maps if isinstance(norm_maps, torch.Tensor) else torch.as_tensor(np.asarray(norm_maps))
    if maps.ndim != 3:
        raise ValueError(f"maps must be (K', H, W), got shape {tuple(maps.shape)}")
    cls = classes if isinstance(classes, torch.Tensor) else torch.as_tensor(np.asarray(classes))
    cls = cls.reshape(-1).long().to(maps.device)
    if cls.numel() != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {cls.numel()} class ids")
    if cls.numel() and (int(cls.min()) < 1 or int(cls.max()) >= VOID):
        raise ValueError(f"class ids must lie in 1..{VOID - 1} (0 is background), got {cls.tolist()}")
    return maps, cls


def _top_class(maps: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel: the highest map value and its class id ((H, W) each). Ties: first map wins."""
    top, idx = maps.max(dim=0)
    return top, cls[idx]


def maps_to_mask(
    norm_maps: torch.Tensor | np.ndarray, classes: object, t: float
) -> torch.Tensor | np.ndarray:
    """Pseudo-mask ``argmax([t, m_1, ..., m_K'])``: 0 (background) or ``classes[argmax - 1]``.

    ``norm_maps``: (K', H, W) normalized maps of the present classes; ``classes``: (K',) ids in 1..254.
    Ties go to background (a pixel is foreground only where its top map value is > t); K' = 0 gives
    all background. Returns uint8 (H, W): a tensor on the maps' device, or a numpy array for numpy input.
    """
    is_numpy = not isinstance(norm_maps, torch.Tensor)
    maps, cls = _as_maps_and_classes(norm_maps, classes)
    if maps.shape[0] == 0:
        mask = torch.zeros(maps.shape[1:], dtype=torch.uint8, device=maps.device)
    else:
        top, top_cls = _top_class(maps, cls)
        mask = torch.where(top > t, top_cls, torch.zeros_like(top_cls)).to(torch.uint8)
    return mask.cpu().numpy() if is_numpy else mask


def make_sweep_matrices(num_classes: int, thresholds: list[float]) -> dict[float, ConfusionMatrix]:
    """One empty :class:`ConfusionMatrix` per threshold (keys rounded to 2 decimals)."""
    return {round(float(t), 2): ConfusionMatrix(num_classes) for t in thresholds}


def sweep_counts(
    norm_maps: torch.Tensor | np.ndarray,
    classes: object,
    gt_mask: object,
    thresholds: list[float],
    num_classes: int,
) -> torch.Tensor:
    """The confusion matrices of one image at every threshold at once: ``(T, K, K)`` int64 (rows = ground
    truth, columns = prediction; void pixels left out), entry ``i`` that of
    ``maps_to_mask(norm_maps, classes, thresholds[i])`` against ``gt_mask`` (H, W).

    One pass over the pixels whatever the number of thresholds: each pixel's top class and the number of
    thresholds below its top value are counted once per (ground truth, top class), and a cumulative sum over
    the thresholds turns those counts into the T matrices. Raises :class:`DataError` as
    :meth:`ConfusionMatrix.update` would (a ground-truth label outside ``0..K-1``, or a predicted class
    outside it on a labelled pixel).
    """
    maps, cls = _as_maps_and_classes(norm_maps, classes)
    gt = gt_mask if isinstance(gt_mask, torch.Tensor) else torch.as_tensor(np.asarray(gt_mask))
    gt = gt.to(maps.device)
    if tuple(gt.shape) != tuple(maps.shape[1:]):
        raise DataError(f"ground truth shape {tuple(gt.shape)} != map shape {tuple(maps.shape[1:])}")
    k, n_t = int(num_classes), len(thresholds)
    keep = gt != VOID
    g = gt[keep].long()
    if maps.shape[0] == 0:
        top = torch.zeros(g.shape, dtype=torch.float32, device=maps.device)
        top_cls = torch.zeros_like(g)
    else:
        top, top_cls = _top_class(maps, cls)
        top, top_cls = top[keep], top_cls[keep]
    # below[p] = number of thresholds t with top[p] > t, compared in the maps' dtype as `top > t` does
    ts = torch.tensor([float(t) for t in thresholds], dtype=top.dtype, device=top.device)
    order = torch.argsort(ts)
    below = torch.searchsorted(ts[order].contiguous(), top.contiguous(), right=False)
    check_labels(g, top_cls[below > 0], k)  # the classes some threshold predicts
    top_cls = top_cls.clamp(max=k - 1)
    hist = torch.bincount((g * k + top_cls) * (n_t + 1) + below, minlength=k * k * (n_t + 1))
    hist = hist.reshape(k, k, n_t + 1).cpu()
    # fg[:, :, j]: pixels (per gt, top class) whose top value is above the j-th smallest threshold
    fg = hist.flip(-1).cumsum(-1).flip(-1)[:, :, 1:]
    counts = fg.permute(2, 0, 1).clone()  # (T, K, K): predicted their top class
    counts[:, :, 0] += hist.sum(dim=(1, 2))[None] - fg.sum(dim=1).T  # the rest: background
    out = torch.empty_like(counts)
    out[order] = counts
    return out


def sweep_image(
    norm_maps: torch.Tensor | np.ndarray,
    classes: object,
    gt_mask: object,
    thresholds: list[float],
    cms: dict[float, ConfusionMatrix],
) -> None:
    """Add one image to the threshold sweep: for each ``t`` in ``thresholds``, update ``cms[t]`` with
    ``maps_to_mask(norm_maps, classes, t)`` against ``gt_mask`` (H, W) (via :func:`sweep_counts`)."""
    if not thresholds:
        return
    k = cms[round(float(thresholds[0]), 2)].num_classes
    for t, c in zip(thresholds, sweep_counts(norm_maps, classes, gt_mask, thresholds, k), strict=True):
        cms[round(float(t), 2)].mat += c


def summarize_sweep(
    cms: dict[float, ConfusionMatrix],
    fixed_t: float | None = None,
    *,
    step: float | None = None,
    chosen_on: str = "tune",
) -> dict:
    """Scores of a threshold sweep, json-ready (plain floats, fractions in [0, 1]).

    ``fixed_t``: the threshold chosen on another split (``chosen_on`` says which); None uses the
    best threshold of this sweep and marks ``"chosen_on": "self"``. ``step``: the sweep step for
    ``robust_width``; None infers it from the smallest gap between thresholds.

    Returns ``{"sweep": [{"t", "miou", "precision", "recall"}, ...], "best": {"t", "miou"},
    "fixed": {"t", "miou", "precision", "recall", "chosen_on"}, "robust_width", "per_class_iou"
    (at the fixed t), "spread_0.1_0.5" (max - min mIoU over 0.1 <= t <= 0.5, None if no such t)}``.
    """
    if not cms:
        raise ValueError("empty sweep: no thresholds")
    by_t = {round(float(t), 2): cm for t, cm in cms.items()}
    ts = sorted(by_t)
    if any(by_t[t].total == 0 for t in ts):
        raise DataError("threshold sweep scored no pixel (empty split or every pixel void)")
    rows = []
    for t in ts:
        precision, recall = by_t[t].fg_precision_recall()
        rows.append({"t": t, "miou": by_t[t].miou(), "precision": precision, "recall": recall})
    best = max(rows, key=lambda r: r["miou"])  # first (smallest t) on ties
    if fixed_t is None:
        fixed = {**best, "chosen_on": "self"}
    else:
        ft = round(float(fixed_t), 2)
        if ft not in by_t:
            raise ValueError(f"fixed threshold {ft} is not among the swept thresholds {ts}")
        fixed = {**rows[ts.index(ft)], "chosen_on": chosen_on}
    if step is None:
        step = round(min(b - a for a, b in zip(ts[:-1], ts[1:], strict=True)), 2) if len(ts) > 1 else None
    in_range = [r["miou"] for r in rows if 0.1 <= r["t"] <= 0.5]
    return {
        "sweep": rows,
        "best": {"t": best["t"], "miou": best["miou"]},
        "fixed": fixed,
        "robust_width": None if step is None else robust_width({r["t"]: r["miou"] for r in rows}, step),
        "per_class_iou": by_t[fixed["t"]].per_class_iou(),
        "spread_0.1_0.5": (max(in_range) - min(in_range)) if in_range else None,
    }
