"""Stage: a fusion's maps (``jigsaw-cam`` = geo(cam, jigsaw)) from its input methods' stored maps.

:func:`fuse_dirs` is the one offline fuser; the pipeline and the study's fusion grid both call it, with the
fusions of :mod:`wsss.localize.fusion` (the same code :class:`wsss.localize.Fused` runs in memory).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from wsss import localize
from wsss.errors import DataError, RunDirError
from wsss.localize.fusion import REGION_PARAMS, fuse
from wsss.mapsio import load_maps, save_maps
from wsss.progress import progress_bar
from wsss.results import ResultKey
from wsss.run.rundir import Run
from wsss.run.stages import maps
from wsss.runtime import barrier, is_main, shard


def plan(run: Run, method: str) -> tuple[str, str, str, dict]:
    """``(base, filler, mode, params)`` of a fusion method as the run configures it."""
    spec = localize.spec(method)
    opts = run.cfg.maps.options.get(method, {})
    base, filler = spec.inputs
    params = {k: opts[k] for k in REGION_PARAMS if k in opts}
    return base, opts.get("filler", filler), opts.get("fusion", spec.fusion), params


def fuse_dirs(mode: str, base_dir: Path, fill_dir: Path, out_dir: Path, ids: list[str], progress: bool = False,
              desc: str = "fuse", **params) -> int:
    """``out_dir/<id>.npz`` = ``mode``-fusion of ``base_dir/<id>.npz`` and ``fill_dir/<id>.npz`` for each id not
    already there; returns how many were written."""
    from wsss.run.stages.maps import todo_in, writing

    out_dir.mkdir(parents=True, exist_ok=True)
    with writing(out_dir):
        todo = todo_in(out_dir, ids)
        for image_id in progress_bar(todo, desc=desc, disable=not progress or not is_main(), leave=False):
            cam, classes = load_maps(base_dir / f"{image_id}.npz")
            fill, fill_classes = load_maps(fill_dir / f"{image_id}.npz")
            if not np.array_equal(classes, fill_classes):
                raise DataError(f"{fill_dir / f'{image_id}.npz'}: classes differ from those of {base_dir / f'{image_id}.npz'}")
            fused = fuse(mode, torch.from_numpy(cam), torch.from_numpy(fill), **params).numpy()
            save_maps(out_dir / f"{image_id}.npz", fused, classes)
    return len(todo)


def compute(run: Run, method: str, splits: tuple[str, ...], progress: bool = True, classifier: str = "plain") -> dict:
    """The fusion's maps on ``splits`` from its inputs' stored maps of classifier ``classifier``
    (``jigsaw-cam@puzzle`` fuses ``cam@puzzle`` and ``jigsaw@puzzle``), which must be there (the plan, or
    :func:`wsss.run.stages.produce.maps_of`, computes them first). Its recorded cost per image is the inputs' plus
    the fusion's own."""
    base, filler, mode, params = plan(run, method)
    keys = [ResultKey(m, classifier).maps for m in (base, filler)]
    ids = run.split_ids(splits)
    for key in keys:
        gone = maps.missing(run, key, ids)
        if gone:
            raise RunDirError(f"{run.maps_dir(key) / (gone[0] + '.npz')}: {method} fuses {key}'s maps, which are "
                              f"missing (run `wsss maps --run {run.path} --method {method}`)")
    key = ResultKey(method, classifier).maps
    out = run.maps_dir(key)
    t0 = time.time()
    n = fuse_dirs(mode, run.maps_dir(keys[0]), run.maps_dir(keys[1]), out, shard(ids), progress,
                  desc=f"maps {key} (fused)", **params)
    per_image = sum(maps.timing(run, k)["seconds_per_image"] or 0.0 for k in keys)
    maps.add_timing(out, n, n * per_image + time.time() - t0, run.device, fused_from=keys)
    barrier()
    return maps.timing(run, key)
