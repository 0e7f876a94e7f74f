"""Stage: pseudo-masks and their scores (``wsss pseudo``).

The threshold t is chosen on the tune split (:func:`tune_threshold`); the score split is then swept and
scored at that t (:func:`score_maps`: sweep, threshold-free AP, per-image oracle t, NDR recall, activation
histograms) and its masks written; :func:`pseudo` records the result under its key in results.json.
Dense-CRF masks (``+crf``) are made by :func:`crf_masks` and timed apart; IRN's (``+irn``) are the stored
walk scores of :mod:`wsss.run.stages.irn`, scored as maps (t is the walk's background score).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from wsss.errors import ConfigError, RunDirError
from wsss.labelio import save_label_png
from wsss.mapsio import load_maps
from wsss.metrics import APAccumulator, ConfusionMatrix, NDRAccumulator, mean_iou, threshold_values
from wsss.progress import progress_bar
from wsss.pseudo import (
    make_sweep_matrices,
    maps_to_mask,
    normalize_maps,
    summarize_sweep,
    sweep_counts,
    sweep_image,
)
from wsss.results import MethodResult, ResultKey
from wsss.run.rundir import Run, log, timed
from wsss.run.stages import amn

HIST_BINS = 20
CRF_SWEEP_STEP = 0.05  # the step of `wsss pseudo --crf --crf-sweep` (each t costs a CRF pass per image)


def crf_masks(norm_maps, classes, image, thresholds: list[float]) -> dict[float, np.ndarray]:
    """One dense-CRF-refined mask per threshold (the CRF decides every pixel, so there is no shared
    top-class shortcut as in :func:`wsss.pseudo.sweep_image`)."""
    from wsss.crf import refine_mask

    return {t: refine_mask(image, norm_maps, classes, t) for t in thresholds}


def sweep_split(ds, maps_dir: Path, norm: str, thresholds: list[float], crf: bool = False, progress: bool = True,
                desc: str = "sweep") -> dict[float, ConfusionMatrix]:
    """One confusion matrix per threshold over a split."""
    cms = make_sweep_matrices(ds.num_classes + 1, thresholds)
    for image_id in progress_bar(ds.ids, desc=desc, disable=not progress, leave=False):
        maps, classes = load_maps(maps_dir / f"{image_id}.npz")
        gt = ds.mask(image_id)
        nm = normalize_maps(maps, norm)
        if crf:
            for t, mask in crf_masks(nm, classes, ds.image(image_id), thresholds).items():
                cms[t].update(mask, gt)
        else:
            sweep_image(nm, classes, gt, thresholds, cms)
    return cms


def tune_threshold(ds, maps_dir: Path, norm: str, thresholds: list[float], step: float, crf: bool = False,
                   progress: bool = True) -> dict:
    """The sweep on the tune split ``ds``: ``{"split", "best": {"t", "miou"}, "robust_width"}``; its best t is
    the fixed t of the score split."""
    summary = summarize_sweep(sweep_split(ds, maps_dir, norm, thresholds, crf, progress, desc="tune sweep"), None,
                              step=step, chosen_on="self")
    return {"split": ds.split, "best": summary["best"], "robust_width": summary["robust_width"]}


class MaskScores:
    """Accumulators of the score split: the sweep, the per-image oracle t, AP, NDR recall and the
    activation histograms. ``update`` takes one image; ``result`` the json-ready summary."""

    def __init__(self, num_classes: int, thresholds: list[float], ndr_threshold: float):
        self.k, self.thresholds = num_classes + 1, thresholds
        self.cms = make_sweep_matrices(self.k, thresholds)
        self.oracle = ConfusionMatrix(self.k)
        self.ap = APAccumulator()
        self.ndr = NDRAccumulator(ndr_threshold)
        self.hist_fg, self.hist_bg = np.zeros(HIST_BINS, np.int64), np.zeros(HIST_BINS, np.int64)

    def update(self, nm, classes, gt, fixed_mask, masks: dict | None = None, reference=None) -> None:
        """``masks``: one mask per threshold (CRF), else the sweep is made from ``nm``; ``reference``:
        ``(normalized maps, classes)`` whose high part is the discriminative region of the NDR measure."""
        if masks is None:
            counts = sweep_counts(nm, classes, gt, self.thresholds, self.k)
        else:
            counts = torch.stack([ConfusionMatrix(self.k).update(masks[t], gt).mat for t in self.thresholds])
        for t, c in zip(self.thresholds, counts, strict=True):
            self.cms[round(float(t), 2)].mat += c
        best = torch.nan_to_num(mean_iou(counts), nan=-1.0)  # nothing scored: never the best
        self.oracle.mat += counts[int(torch.argmax(best))]  # the image's best t (first on ties)
        self.ap.update_maps(nm, classes, gt)
        for m, c in zip(np.asarray(nm), np.asarray(classes).reshape(-1), strict=True):
            self.hist_fg += np.histogram(m[gt == c], bins=HIST_BINS, range=(0, 1))[0]
            self.hist_bg += np.histogram(m[gt == 0], bins=HIST_BINS, range=(0, 1))[0]
        if reference is not None:
            self.ndr.update(reference[0], reference[1], gt, fixed_mask)

    def result(self, fixed_t: float | None, step: float, chosen_on: str, with_reference: bool) -> dict:
        summary = summarize_sweep(self.cms, fixed_t, step=step, chosen_on=chosen_on)
        summary["ap"] = _nan_none(self.ap.mean_ap())
        summary["oracle_miou"] = _nan_none(self.oracle.miou())
        summary["ndr_recall"] = self.ndr.recall() if with_reference and self.ndr.ndr_pixels else None
        summary["activation_hist"] = {"bins": HIST_BINS, "fg": self.hist_fg.tolist(), "bg": self.hist_bg.tolist()}
        return summary


def score_maps(run: Run, maps_dir: Path, norm: str, masks_dir: Path, reference_dir: Path | None = None,
               crf: bool = False, crf_t: float | None = None, progress: bool = True,
               fixed: float | None = None) -> dict:
    """Score the maps in ``maps_dir`` on the run's score split, t chosen on its tune split (or ``crf_t``: with
    ``crf``, refine only at that threshold, the base method's tune-chosen t, instead of sweeping every
    threshold through the CRF; or ``fixed``: a t set by the config, the sweep kept), and write the masks at
    the fixed t to ``masks_dir``."""
    cfg = run.cfg.pseudo
    step = max(cfg.t_step, CRF_SWEEP_STEP) if crf and crf_t is None else cfg.t_step  # the CRF swept on tune:
    thresholds = threshold_values(cfg.t_start, cfg.t_stop, step)  # every 0.05 (a CRF pass per t and image)
    fixed_t, tune = None, None
    if crf and crf_t is not None:
        thresholds, fixed_t = [round(float(crf_t), 2)], round(float(crf_t), 2)
    elif fixed is not None:
        fixed_t = round(float(fixed), 2)
        thresholds = sorted({*thresholds, fixed_t})
    elif run.cfg.tune_split:
        tune = tune_threshold(run.dataset(run.cfg.tune_split), maps_dir, norm, thresholds, step, crf, progress)
        fixed_t = tune["best"]["t"]
        edge = sweep_edge(fixed_t, thresholds)
        if edge:
            log(f"  note: {maps_dir.name}: the t chosen on {run.cfg.tune_split} ({fixed_t:.2f}) is the {edge} swept "
                f"threshold, so a better one may lie beyond it; widen the sweep (pseudo.t_start / pseudo.t_stop)")
    ds = run.dataset(run.cfg.score_split)
    scores = MaskScores(ds.num_classes, thresholds, cfg.ndr_threshold)
    t_fixed = round(fixed_t if fixed_t is not None else 0.5, 2)
    crf_seconds = 0.0
    masks_dir.mkdir(parents=True, exist_ok=True)
    for image_id in progress_bar(ds.ids, desc="score", disable=not progress, leave=False):
        maps, classes = load_maps(maps_dir / f"{image_id}.npz")
        gt = ds.mask(image_id)
        nm = normalize_maps(maps, norm)
        masks = None
        if crf:
            t0 = time.time()
            masks = crf_masks(nm, classes, ds.image(image_id), thresholds)
            crf_seconds += (time.time() - t0) / len(thresholds)  # the cost of one refinement
            fixed_mask = masks.get(t_fixed, masks[thresholds[0]])
        else:
            fixed_mask = maps_to_mask(nm, classes, t_fixed)
        reference = None
        if reference_dir is not None and (reference_dir / f"{image_id}.npz").exists():
            ref, ref_classes = load_maps(reference_dir / f"{image_id}.npz")
            reference = (normalize_maps(ref, "max"), ref_classes)
        scores.update(nm, classes, gt, fixed_mask, masks, reference)
        save_label_png(masks_dir / f"{image_id}.png", fixed_mask)
    chosen_on = (f"{run.cfg.tune_split} (without CRF)" if crf and crf_t is not None else run.cfg.tune_split) or "self"
    if fixed is not None and not crf:
        chosen_on = "config"
    summary = scores.result(fixed_t, step, chosen_on, with_reference=reference_dir is not None)
    summary["per_class_iou"] = named(summary["per_class_iou"], ds.classes)
    summary["split"] = run.cfg.score_split
    summary["tune"] = tune
    if crf:
        summary["crf_seconds_per_image"] = crf_seconds / max(len(ds.ids), 1)
    return summary


def sweep_edge(t: float, thresholds: list[float]) -> str | None:
    """``"lowest"`` / ``"highest"`` when ``t`` is the first / last of ``thresholds`` and the sweep could go
    further (above 0, below 1), else None."""
    if len(thresholds) > 1 and t == min(thresholds) and t > 0:
        return "lowest"
    if len(thresholds) > 1 and t == max(thresholds) and t < 1:
        return "highest"
    return None


def named(per_class: dict[str, float | None], classes) -> dict[str, float | None]:
    """Per-class scores keyed by class name (``background``, ``aeroplane``, ...) instead of id."""
    return {(classes[int(c)] if int(c) < len(classes) else c): v for c, v in per_class.items()}


def reference_dir(run: Run) -> Path | None:
    """The stored maps of the NDR reference method (``pseudo.ndr_reference``, CAM), if the run has them."""
    path = run.maps_dir(run.cfg.pseudo.ndr_reference)
    return path if path.is_dir() else None


def pseudo(run: Run, key: str, crf: bool = False, progress: bool = True, crf_sweep: bool = False,
           irn: bool = False) -> dict:
    """Score the maps of result key ``key`` (``cam``, ``jigsaw@jigsaw-aug``; ``crf`` / ``irn``, or a key
    ``M+crf`` / ``M+irn``, post-process them) and record them in ``results["methods"]``.

    ``+crf``: dense CRF at the base method's tune-chosen t (scored first when missing). ``+irn``: the walk
    scores of ``M``'s IRN (:func:`wsss.run.stages.irn.walk`, computed where missing), t = the walk's background
    score chosen on tune (or ``irn.sem_seg_bg``). ``seconds_per_image`` is the maps' + the post step's per
    image; ``+irn`` also records ``walk_seconds_per_image`` and ``training_seconds_per_image`` (IRN's labels
    + training amortized over its training images)."""
    from wsss.run.stages import maps

    if crf and irn:
        raise ConfigError("--crf and --irn: one post-processing step at a time (two result keys)")
    rk = ResultKey.parse(key)
    rk = rk.with_post("crf" if crf else "irn" if irn else rk.post)
    crf = rk.post == "crf"
    extra = {}
    if rk.post == "irn":
        from wsss.run.stages import irn as irn_stage

        irn_stage.walk(run, str(rk), progress=progress)
        maps_dir = run.maps_dir(str(rk))
    else:
        maps_dir = run.maps_dir(rk.maps_key)
        if not maps_dir.is_dir():
            first = (f"`wsss train-amn --run {run.path} --from-maps {amn.source(run, rk.method)}`, then "
                     if amn.is_amn(rk.method) and not run.amn_path(rk.method).exists() else "")
            raise RunDirError(f"{maps_dir}: no maps for {rk.maps_key} (run {first}`wsss maps --run {run.path} "
                              f"--method {rk.maps_key.replace('@', ' --classifier ')}`)")
    norm = run.cfg.pseudo.norm_for(str(rk))
    base_t = None
    if crf and not crf_sweep:
        base = run.method_result(rk.with_post(None))
        if base is None:
            log(f"  {rk.with_post(None)} not scored yet: scoring it first (its tune-chosen t is the CRF's)")
            pseudo(run, str(rk.with_post(None)), progress=progress)
            base = run.method_result(rk.with_post(None))
        base_t = None if base is None else base.fixed.t
    fixed = run.cfg.irn.sem_seg_bg if rk.post == "irn" else None
    with timed(run, f"pseudo/{rk}"):
        summary = score_maps(run, maps_dir, norm, run.masks_dir(str(rk)), reference_dir(run), crf=crf, crf_t=base_t,
                             progress=progress, fixed=fixed)
    spi = maps.timing(run, rk.maps_key)["seconds_per_image"]
    post_spi = summary.pop("crf_seconds_per_image", 0.0)
    if rk.post == "irn":
        cost = irn_stage.costs(run, str(rk))
        post_spi = cost["walk"] or 0.0
        extra = {"walk_seconds_per_image": cost["walk"], "training_seconds_per_image": cost["training"],
                 "irn_from": cost["from_maps"]}
    summary["seconds_per_image"] = None if spi is None else spi + post_spi
    summary["normalization"] = norm
    summary.update(extra)
    record = MethodResult.model_validate(summary).dump()
    run.update_results("methods", str(rk), value=record)
    fixed, best = record["fixed"], record["best"]
    log(f"  {str(rk):<22} fixed t={fixed['t']:.2f} mIoU {100 * fixed['miou']:.1f}  best {100 * best['miou']:.1f} "
        f"(t={best['t']:.2f})  P {100 * fixed['precision']:.1f} R {100 * fixed['recall']:.1f}")
    return record


def _nan_none(x: float):
    return None if x is None or x != x else float(x)
