"""Score one method's maps on a run: threshold sweep on tune (the fixed t) and on the score split, masks at
the fixed t, threshold-free AP, per-image oracle-t bound, NDR recall, activation histograms (definitions: docs/metrics.md)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wsss.labelio import save_label_png
from wsss.mapsio import load_maps
from wsss.metrics import APAccumulator, ConfusionMatrix, NDRAccumulator, threshold_values
from wsss.progress import progress_bar
from wsss.pseudo import make_sweep_matrices, maps_to_mask, normalize_maps, summarize_sweep, sweep_image

HIST_BINS = 20


def _masks_for(maps, classes, image, thresholds, crf: bool):
    """With CRF: one refined mask per threshold (the CRF decides, so no shared top-class shortcut)."""
    from wsss.crf import refine_mask

    return {t: refine_mask(image, maps, classes, t) for t in thresholds}


def sweep_split(
    ds,
    maps_dir: Path,
    norm: str,
    thresholds: list[float],
    crf: bool = False,
    progress: bool = True,
    desc: str = "sweep",
) -> dict:
    """One confusion matrix per threshold over a split."""
    k = ds.num_classes + 1
    cms = make_sweep_matrices(k, thresholds)
    for image_id in progress_bar(ds.ids, desc=desc, disable=not progress, leave=False):
        maps, classes = load_maps(maps_dir / f"{image_id}.npz")
        gt = ds.mask(image_id)
        nm = normalize_maps(maps, norm)
        if crf:
            for t, mask in _masks_for(nm, classes, ds.image(image_id), thresholds, True).items():
                cms[t].update(mask, gt)
        else:
            sweep_image(nm, classes, gt, thresholds, cms)
    return cms


def score_method(
    run,
    maps_dir: Path,
    norm: str,
    masks_dir: Path,
    reference_dir: Path | None = None,
    crf: bool = False,
    progress: bool = True,
    crf_t: float | None = None,
) -> dict:
    """``crf_t``: with ``crf``, refine only at this threshold (the base method's tune-chosen t) instead of
    sweeping every threshold through the CRF (one refinement per image instead of 19)."""
    cfg = run.cfg.pseudo
    thresholds = threshold_values(cfg.t_start, cfg.t_stop, cfg.t_step)
    fixed_t, tune_summary = None, None
    if crf and crf_t is not None:
        thresholds, fixed_t = [round(float(crf_t), 2)], round(float(crf_t), 2)
    elif run.cfg.tune_split:
        tune = run.dataset(run.cfg.tune_split)
        tune_cms = sweep_split(tune, maps_dir, norm, thresholds, crf, progress, desc="tune sweep")
        tune_summary = summarize_sweep(tune_cms, None, step=cfg.t_step, chosen_on="self")
        fixed_t = tune_summary["best"]["t"]
    ds = run.dataset(run.cfg.score_split)
    k = ds.num_classes + 1
    cms = make_sweep_matrices(k, thresholds)
    oracle = ConfusionMatrix(k)
    ap = APAccumulator()
    ndr = NDRAccumulator(cfg.ndr_threshold)
    hist_fg, hist_bg = np.zeros(HIST_BINS, np.int64), np.zeros(HIST_BINS, np.int64)
    t_fixed = fixed_t if fixed_t is not None else 0.5
    crf_seconds = 0.0
    masks_dir.mkdir(parents=True, exist_ok=True)
    for image_id in progress_bar(ds.ids, desc="score", disable=not progress, leave=False):
        maps, classes = load_maps(maps_dir / f"{image_id}.npz")
        gt = ds.mask(image_id)
        nm = normalize_maps(maps, norm)
        per_image = make_sweep_matrices(k, thresholds)
        if crf:
            t0 = time.time()
            masks = _masks_for(nm, classes, ds.image(image_id), thresholds, True)
            crf_seconds += (time.time() - t0) / len(thresholds)  # cost of one refinement
            for t, m in masks.items():
                per_image[t].update(m, gt)
            fixed_mask = masks[round(t_fixed, 2)] if round(t_fixed, 2) in masks else masks[thresholds[0]]
        else:
            sweep_image(nm, classes, gt, thresholds, per_image)
            fixed_mask = maps_to_mask(nm, classes, t_fixed)
        for t in thresholds:
            cms[t].merge(per_image[t])
        best_t = max(thresholds, key=lambda t: _nan_to(per_image[t].miou(), -1.0))
        oracle.merge(per_image[best_t])
        ap.update_maps(nm, classes, gt)
        _histograms(nm, classes, gt, hist_fg, hist_bg)
        if reference_dir is not None and (reference_dir / f"{image_id}.npz").exists():
            ref, ref_classes = load_maps(reference_dir / f"{image_id}.npz")
            ndr.update(normalize_maps(ref, "max"), ref_classes, gt, fixed_mask)
        save_label_png(masks_dir / f"{image_id}.png", fixed_mask)
    chosen_on = (f"{run.cfg.tune_split} (without CRF)" if crf and crf_t is not None else run.cfg.tune_split) or "self"
    summary = summarize_sweep(cms, fixed_t, step=cfg.t_step, chosen_on=chosen_on)
    summary["split"] = run.cfg.score_split
    summary["tune"] = (
        None
        if tune_summary is None
        else {
            "split": run.cfg.tune_split,
            "best": tune_summary["best"],
            "robust_width": tune_summary["robust_width"],
        }
    )
    summary["ap"] = _nan_none(ap.mean_ap())
    summary["oracle_miou"] = _nan_none(oracle.miou())
    summary["ndr_recall"] = ndr.recall() if reference_dir is not None and ndr.ndr_pixels else None
    summary["activation_hist"] = {"bins": HIST_BINS, "fg": hist_fg.tolist(), "bg": hist_bg.tolist()}
    if crf:
        summary["crf_seconds_per_image"] = crf_seconds / max(len(ds.ids), 1)
    return summary


def _histograms(nm, classes, gt, hist_fg, hist_bg) -> None:
    nm = np.asarray(nm)
    for m, c in zip(nm, np.asarray(classes).reshape(-1), strict=True):
        fg = m[gt == c]
        bg = m[gt == 0]
        hist_fg += np.histogram(fg, bins=HIST_BINS, range=(0, 1))[0]
        hist_bg += np.histogram(bg, bins=HIST_BINS, range=(0, 1))[0]


def _nan_to(x: float, v: float) -> float:
    return v if x != x else x


def _nan_none(x: float):
    return None if x is None or x != x else float(x)
