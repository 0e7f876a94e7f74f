"""Scores: confusion-matrix mIoU, foreground precision/recall, AP, NDR recall, folder evaluation.

Everything here is pure torch/numpy except :func:`evaluate_folders` (which reads PNGs for
``wsss eval``). All scores are fractions in [0, 1]. Conventions (every score: docs/metrics.md):

- one confusion matrix over the whole split, ``bincount(K * gt + pred)``; rows = gt, cols = pred;
- void (gt == 255) is ignored; a prediction outside ``0..K-1`` on a labelled pixel is an error;
- IoU = TP / (TP + FP + FN); mIoU is the mean over classes with a non-zero union.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from wsss.errors import DataError
from wsss.labelio import load_label_png

__all__ = [
    "VOID",
    "APAccumulator",
    "ConfusionMatrix",
    "NDRAccumulator",
    "average_precision",
    "check_labels",
    "evaluate_folders",
    "iou_of",
    "mean_iou",
    "multilabel_map",
    "ndr_region",
    "robust_width",
    "threshold_values",
]

VOID = 255
"""Ground-truth label of pixels that are not scored (object boundaries, 'difficult' regions)."""


def _as_long(x: object) -> torch.Tensor:
    """An integer label array/tensor as an int64 tensor (same device for tensors)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.is_floating_point() or t.is_complex():
        raise DataError(f"label maps must hold integers, got dtype {t.dtype}")
    return t.long()


def _to_numpy(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _out_of_range(x: torch.Tensor, k: int) -> int | None:
    """A value of ``x`` outside ``0..k-1`` (the smallest if negative, else the largest), or None."""
    lo, hi = int(x.min()), int(x.max())
    return lo if lo < 0 else hi if hi >= k else None


def check_labels(gt: torch.Tensor, pred: torch.Tensor, k: int) -> None:
    """Raise :class:`DataError` for a ground-truth label outside ``0..k-1`` or a predicted class outside it, both
    taken on labelled (non-void) pixels only (integer tensors, any shapes)."""
    if gt.numel():
        bad = _out_of_range(gt, k)
        if bad is not None:
            raise DataError(f"ground truth contains label {bad}; expected 0..{k - 1} or {VOID} (void) "
                            f"for num_classes={k}")
    if pred.numel():
        bad = _out_of_range(pred, k)
        if bad is not None:
            raise DataError(f"prediction contains class {bad} on a labelled pixel, but num_classes={k} "
                            f"(valid 0..{k - 1})")


def iou_of(mat: torch.Tensor) -> torch.Tensor:
    """Per-class IoU of confusion matrices ``(..., K, K)`` (rows = gt): TP / (TP + FP + FN), float64, NaN where the
    union is 0."""
    m = mat.double()
    tp = m.diagonal(dim1=-2, dim2=-1)
    union = m.sum(-2) + m.sum(-1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(mat: torch.Tensor) -> torch.Tensor:
    """mIoU of confusion matrices ``(..., K, K)``: the mean IoU over classes with a non-zero union (NaN where
    nothing was scored)."""
    return torch.nanmean(iou_of(mat), dim=-1)


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


class ConfusionMatrix:
    """A ``(K, K)`` int64 confusion matrix (rows = ground truth, columns = prediction).

    >>> cm = ConfusionMatrix(3); cm.update(pred, gt); cm.miou()
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.mat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.total})"

    @property
    def total(self) -> int:
        """Number of scored (non-void) pixels so far."""
        return int(self.mat.sum())

    def update(self, pred: object, gt: object) -> ConfusionMatrix:
        """Add one prediction/ground-truth pair (integer arrays or tensors of the same shape).

        ``gt == 255`` is void and ignored. Raises :class:`DataError` for a ground-truth label
        outside ``0..K-1`` (other than 255) or a prediction outside ``0..K-1`` on a labelled pixel.
        """
        p, g = _as_long(pred), _as_long(gt)
        if p.shape != g.shape:
            raise DataError(f"prediction shape {tuple(p.shape)} != ground-truth shape {tuple(g.shape)}")
        p = p.to(g.device)
        keep = g != VOID
        g, p = g[keep], p[keep]
        k = self.num_classes
        check_labels(g, p, k)
        counts = torch.bincount(k * g + p, minlength=k * k)
        self.mat += counts.reshape(k, k).cpu()
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (e.g. from another worker); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge K={other.num_classes} into K={self.num_classes}")
        self.mat += other.mat
        return self

    def iou(self) -> torch.Tensor:
        """Per-class IoU, ``(K,)`` float64: TP / (TP + FP + FN); NaN where the union is 0."""
        return iou_of(self.mat)

    def miou(self) -> float:
        """Mean IoU over classes with a non-zero union (NaN if nothing has been scored)."""
        iou = self.iou()
        present = ~iou.isnan()
        return float(iou[present].mean()) if bool(present.any()) else float("nan")

    def per_class_iou(self) -> dict[str, float | None]:
        """``{"0": iou, "1": ...}``; ``None`` for classes absent from both gt and prediction."""
        return {str(c): (None if math.isnan(v) else v) for c, v in enumerate(self.iou().tolist())}

    def pixel_accuracy(self) -> float:
        """Fraction of scored pixels whose prediction equals the ground truth (0.0 if none)."""
        return _div(self.mat.diag().sum(), self.mat.sum())

    def fg_precision_recall(self) -> tuple[float, float]:
        """Class-aware foreground (class > 0) precision and recall, void excluded.

        precision = pixels of gt class c > 0 predicted c / pixels predicted foreground;
        recall    = the same numerator / ground-truth foreground pixels. 0.0 when a denominator is 0.
        """
        m = self.mat
        correct_fg = m.diag()[1:].sum()
        return _div(correct_fg, m[:, 1:].sum()), _div(correct_fg, m[1:, :].sum())


def threshold_values(start: float = 0.0, stop: float = 0.95, step: float = 0.01) -> list[float]:
    """Thresholds ``start, start + step, ..., stop`` (inclusive), rounded to 2 decimals."""
    if step <= 0 or stop < start:
        raise ValueError(f"need step > 0 and stop >= start, got {start}, {stop}, {step}")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 2) for i in range(n)]


def robust_width(mious: dict[float, float], step: float) -> float:
    """Width of the threshold range that stays near the best: (#t with mIoU >= 0.95 * best) * step.

    NaN entries are ignored; 0.0 if there is no finite entry.
    """
    vals = [v for v in mious.values() if not math.isnan(v)]
    if not vals:
        return 0.0
    best = max(vals)
    return round(sum(v >= 0.95 * best for v in vals) * step, 2)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Binary average precision, the step integral ``sum_n (R_n - R_{n-1}) P_n`` over distinct
    score thresholds (as scikit-learn's ``average_precision_score``).

    ``scores``: any shape, finite floats; ``positives``: same shape, bool. NaN if there is no positive.
    """
    s = _to_numpy(scores).astype(np.float64).ravel()
    y = _to_numpy(positives).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.size} entries, positives {y.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    # The last index of each run of equal scores: tied scores form one threshold.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = tp[last].astype(np.float64)
    predicted = (last + 1).astype(np.float64)
    recall = tp / n_pos
    precision = tp / predicted
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _binned_ap(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """AP from per-bin positive/negative counts, bins as thresholds from the highest down."""
    tp = np.cumsum(pos_hist[::-1]).astype(np.float64)
    fp = np.cumsum(neg_hist[::-1]).astype(np.float64)
    n_pos = tp[-1] if tp.size else 0.0
    if n_pos == 0:
        return float("nan")
    keep = (pos_hist[::-1] + neg_hist[::-1]) > 0  # empty bins add no threshold
    tp, fp = tp[keep], fp[keep]
    recall = tp / n_pos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


class APAccumulator:
    """Streaming per-class AP of maps in [0, 1] against class masks, in constant memory.

    Each class keeps two histograms of ``num_bins`` equal bins over [0, 1] (positives, negatives).
    AP is then the step integral with the bin edges as thresholds: this is the exact AP of the
    scores *quantized* to their bins (scores sharing a bin count as ties), so it differs from
    :func:`average_precision` only through within-bin ordering; with 1000 bins the difference is
    well below 0.01 for smooth maps. Scores are clipped to [0, 1].
    """

    def __init__(self, num_bins: int = 1000) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        self.num_bins = int(num_bins)
        self._hist: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _bins(self, scores: np.ndarray) -> np.ndarray:
        if not np.isfinite(scores).all():
            raise ValueError("scores contain NaN or inf")
        idx = np.floor(np.clip(scores, 0.0, 1.0) * self.num_bins).astype(np.int64)
        return np.minimum(idx, self.num_bins - 1)

    def update(self, class_id: int, scores: object, positives: object) -> None:
        """Add ``scores`` (any shape, in [0, 1]) of class ``class_id`` with their ``positives`` mask."""
        s = _to_numpy(scores).astype(np.float64).ravel()
        y = _to_numpy(positives).astype(bool).ravel()
        if s.shape != y.shape:
            raise ValueError(f"scores has {s.size} entries, positives {y.size}")
        b = self._bins(s)
        pos, neg = self._hist.setdefault(
            int(class_id), (np.zeros(self.num_bins, np.int64), np.zeros(self.num_bins, np.int64))
        )
        pos += np.bincount(b[y], minlength=self.num_bins)
        neg += np.bincount(b[~y], minlength=self.num_bins)

    def update_maps(self, norm_maps: object, classes: object, gt_mask: object) -> None:
        """One image: ``norm_maps`` (K', H, W) in [0, 1] for the present ``classes`` (K',) against
        ``gt_mask`` (H, W); each map is scored on the image's non-void pixels, positives = gt == c."""
        maps = _to_numpy(norm_maps)
        cls = _to_numpy(classes).reshape(-1)
        gt = _to_numpy(gt_mask)
        if maps.shape[0] != cls.size or maps.shape[1:] != gt.shape:
            raise ValueError(f"maps {maps.shape}, classes {cls.shape} and gt {gt.shape} do not match")
        keep = gt != VOID
        for m, c in zip(maps, cls, strict=True):
            self.update(int(c), m[keep], gt[keep] == c)

    def ap(self) -> dict[int, float]:
        """Per-class AP for every class seen with at least one positive."""
        out = {}
        for c in sorted(self._hist):
            v = _binned_ap(*self._hist[c])
            if not math.isnan(v):
                out[c] = v
        return out

    def mean_ap(self) -> float:
        """Mean of :meth:`ap` over classes (NaN if no class has a positive)."""
        vals = list(self.ap().values())
        return float(np.mean(vals)) if vals else float("nan")


def ndr_region(
    reference_cam_norm: np.ndarray, object_mask: np.ndarray, thr: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Split an object into its discriminative and non-discriminative regions.

    ``reference_cam_norm``: (H, W) normalized map of the plain classifier, in [0, 1];
    ``object_mask``: (H, W) bool ground-truth pixels of the object's class.
    Returns ``(dr, ndr)`` bool (H, W): DR = object pixels with map >= ``thr``, NDR = rest of the object.
    """
    ref = _to_numpy(reference_cam_norm)
    obj = _to_numpy(object_mask).astype(bool)
    if ref.shape != obj.shape:
        raise ValueError(f"reference map {ref.shape} and object mask {obj.shape} differ in shape")
    dr = obj & (ref >= thr)
    return dr, obj & ~dr


class NDRAccumulator:
    """NDR recall over a split: the fraction of non-discriminative object pixels (see
    :func:`ndr_region`) that a method's mask labels with the right class.

    Report it next to the method's foreground precision, so that labelling everything foreground
    does not win.
    """

    def __init__(self, thr: float = 0.5) -> None:
        self.thr = float(thr)
        self.ndr_pixels: dict[int, int] = {}
        self.ndr_hits: dict[int, int] = {}

    def update(self, reference_maps: object, classes: object, gt_mask: object, pred_mask: object) -> None:
        """One image: ``reference_maps`` (K', H, W) normalized plain-classifier maps for the present
        ``classes`` (K',); ``gt_mask`` and ``pred_mask`` (H, W) class-index masks (gt 255 = void)."""
        ref = _to_numpy(reference_maps)
        cls = _to_numpy(classes).reshape(-1)
        gt = _to_numpy(gt_mask)
        pred = _to_numpy(pred_mask)
        if ref.shape[0] != cls.size or ref.shape[1:] != gt.shape or pred.shape != gt.shape:
            raise ValueError(
                f"reference maps {ref.shape}, classes {cls.shape}, gt {gt.shape} and pred {pred.shape} "
                "do not match"
            )
        for m, c in zip(ref, cls, strict=True):
            c = int(c)
            _, ndr = ndr_region(m, gt == c, self.thr)
            self.ndr_pixels[c] = self.ndr_pixels.get(c, 0) + int(ndr.sum())
            self.ndr_hits[c] = self.ndr_hits.get(c, 0) + int((ndr & (pred == c)).sum())

    def recall(self) -> float:
        """Pixel-weighted NDR recall over all classes (0.0 if no NDR pixel was seen)."""
        return _div(sum(self.ndr_hits.values()), sum(self.ndr_pixels.values()))

    def per_class_recall(self) -> dict[str, float | None]:
        """``{"c": recall}`` per class seen; ``None`` where the class had no NDR pixel."""
        return {str(c): (self.ndr_hits[c] / n if n else None) for c, n in sorted(self.ndr_pixels.items())}


def multilabel_map(scores: object, labels: object) -> float:
    """Classifier mAP: mean over classes of :func:`average_precision` of ``scores[:, k]`` against
    ``labels[:, k]``; ``scores``, ``labels``: (N, K). Classes with no positive are skipped
    (NaN if none has one)."""
    s = _to_numpy(scores).astype(np.float64)
    y = _to_numpy(labels).astype(bool)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must both be (N, K)")
    aps = [average_precision(s[:, k], y[:, k]) for k in range(s.shape[1]) if y[:, k].any()]
    return float(np.mean(aps)) if aps else float("nan")


def evaluate_folders(
    pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str], num_classes: int | None = None
) -> dict:
    """Score every ``*.png`` label mask of ``gt_dir`` against the same-name PNG in ``pred_dir``.

    ``K = num_classes`` or, if None, (largest non-255 label in gt and predictions) + 1.
    Returns ``{"miou", "per_class_iou", "pixel_accuracy", "num_images", "num_classes"}``.
    Raises :class:`DataError` naming the file for a missing or unreadable PNG, a size mismatch,
    or a prediction >= K (or void) on a labelled pixel.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise DataError(f"{d}: not a folder")
    gt_files = sorted(gt_dir.glob("*.png"))
    if not gt_files:
        raise DataError(f"{gt_dir}: no *.png label masks found")
    if num_classes is not None and not 1 <= num_classes <= VOID:
        raise ValueError(f"num_classes must lie in 1..{VOID}, got {num_classes}")
    # With K unknown, accumulate with room for every uint8 label and crop at the end.
    k = num_classes if num_classes is not None else VOID
    cm = ConfusionMatrix(k)
    max_label = -1
    for gt_path in gt_files:
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            raise DataError(f"{pred_path}: missing prediction for {gt_path}")
        gt = load_label_png(gt_path)
        pred = load_label_png(pred_path)
        if gt.shape != pred.shape:
            (h, w), (gh, gw) = pred.shape, gt.shape
            raise DataError(f"{pred_path}: size {w}x{h} differs from ground truth {gt_path} ({gw}x{gh})")
        labelled = gt != VOID
        if labelled.any():
            gmax = int(gt[labelled].max())
            if gmax >= k:
                raise DataError(f"{gt_path}: ground-truth label {gmax} >= num_classes={k}")
            pmax = int(pred[labelled].max())
            if pmax >= k:
                what = "void (255)" if pmax == VOID else f"class {pmax}"
                raise DataError(
                    f"{pred_path}: prediction {what} on a labelled pixel, but num_classes={k}"
                    + ("" if num_classes is not None else " (at most 255 classes)")
                )
            max_label = max(max_label, gmax)
        pred_labels = pred[pred != VOID]
        if pred_labels.size:
            max_label = max(max_label, int(pred_labels.max()))
        cm.update(pred, gt)
    if num_classes is None:
        k = max(max_label + 1, 1)
        cropped = ConfusionMatrix(k)
        cropped.mat = cm.mat[:k, :k].clone()
        cm = cropped
    return {
        "miou": cm.miou(),
        "per_class_iou": cm.per_class_iou(),
        "pixel_accuracy": cm.pixel_accuracy(),
        "num_images": len(gt_files),
        "num_classes": k,
    }
