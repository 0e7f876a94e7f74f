"""Stage: a segmenter trained on a method's pseudo-masks of the train split (or on the true masks, ``gt``),
scored on the val split."""

from __future__ import annotations

import numpy as np

from wsss.errors import RunDirError
from wsss.results import ResultKey
from wsss.run.rundir import Run, log, timed


def pseudo_mask_fn(run: Run, key: str):
    """image id -> pseudo-mask of result key ``key`` at its fixed threshold (made from its maps, cached in
    ``RUN/masks/<key>/``)."""
    from wsss.labelio import load_label_png, save_label_png
    from wsss.mapsio import load_maps
    from wsss.pseudo import maps_to_mask, normalize_maps

    res = run.method_result(key)
    if res is None:
        raise RunDirError(f"{run.results_path}: no scores for {key} (run `wsss pseudo --run {run.path} --method {key}`)")
    t, norm = res.fixed.t, run.cfg.pseudo.norm_for(key)
    mdir, kdir = run.maps_dir(key), run.masks_dir(key)

    def fn(image_id: str) -> np.ndarray:
        path = kdir / f"{image_id}.png"
        if path.exists():
            return load_label_png(path)
        maps, classes = load_maps(mdir / f"{image_id}.npz")
        mask = maps_to_mask(normalize_maps(maps, norm), classes, t)
        save_label_png(path, mask)
        return mask

    return fn


def train(run: Run, masks: str, progress: bool = True) -> dict:
    """Train the segmenter on ``masks`` (a scored method key whose maps of the train split are stored, or
    ``gt``); ``results["segmentation"][masks]``."""
    from wsss.run.stages import maps
    from wsss.train.segmenter import train_segmenter

    train_ds = run.dataset(run.cfg.train_split)
    if masks == "gt":
        mask_fn = train_ds.mask
    elif ResultKey.parse(masks).post == "irn":  # the walk scores of the train split (IRN's make_sem_seg_labels)
        from wsss.run.stages import irn

        mask_fn = pseudo_mask_fn(run, masks)
        irn.walk(run, masks, splits=(run.cfg.train_split,), progress=progress)
    else:
        mask_fn = pseudo_mask_fn(run, masks)
        gone = maps.missing(run, masks, train_ds.ids)
        if gone:
            raise RunDirError(f"{run.maps_dir(masks) / (gone[0] + '.npz')}: the segmenter trains on {masks}'s masks of "
                              f"the train split, whose maps are missing (`wsss train-seg` computes them)")
    with timed(run, f"train-seg/{masks}"):
        res = train_segmenter(train_ds, mask_fn, run.dataset(run.cfg.val_split), run.cfg.seg, run.segmenter_path(masks),
                              run.device, seed=run.cfg.seed, progress=progress)
    run.update_results("segmentation", masks, value=res)
    log(f"  segmenter on {masks}: val mIoU {100 * res['val_miou']:.1f}")
    return res
