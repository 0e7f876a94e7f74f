"""Stage: localization maps, streamed to ``RUN/maps/<key>/<id>.npz`` (batched, resumable, sharded by rank).

:func:`write_maps` is the one map writer: the pipeline (:func:`compute`) and the study both use it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from wsss import localize
from wsss.data.transforms import to_tensor
from wsss.mapsio import save_maps
from wsss.progress import progress_bar
from wsss.results import ResultKey
from wsss.run.rundir import Run
from wsss.runtime import barrier, init_distributed, is_main, rank, shard


def method_options(run: Run, method: str) -> dict:
    """The options a run builds ``method``'s localizer with: the run's seed, then its configured options."""
    return {"seed": run.cfg.seed, **run.cfg.maps.options.get(method, {})}


def localizer(run: Run, method: str, classifier: str = "plain") -> localize.Localizer:
    """``method``'s localizer as the run configures it (a trained AMN for AMN methods; multi-scale / flip
    around it when the config asks)."""
    spec = localize.spec(method)
    if spec.requires == "amn":
        from wsss.run.stages import amn

        return amn.localizer(run, method)
    from wsss.run.stages import classifier as clf_stage

    loc = spec.create(clf_stage.load(run, classifier), **method_options(run, method))
    if run.cfg.maps.multiscale != (1.0,) or run.cfg.maps.flip:
        loc = localize.MultiScale(loc, run.cfg.maps.multiscale, run.cfg.maps.flip)
    return loc


def write_maps(loc: localize.Localizer, ids: list[str], lookup: dict, out: Path, device: torch.device,
               batch_size: int = 16, amp: bool = False, progress: bool = True, desc: str = "maps") -> tuple[int, float]:
    """Maps of ``ids`` (each read from ``lookup[id]``, a dataset) by ``loc``, one ``out/<id>.npz`` per image
    with the present classes only; images already in ``out`` are skipped. A batch holds images of one size.
    Returns (images written, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in ids if not (out / f"{i}.npz").exists()]
    t0, done, i = time.time(), 0, 0
    amp = amp and device.type == "cuda"
    with progress_bar(total=len(todo), desc=desc, disable=not progress or not is_main(), leave=False) as pbar:
        while i < len(todo):
            batch_ids, images, labels = [], [], []
            while i < len(todo) and len(batch_ids) < batch_size:
                ds, image_id = lookup[todo[i]], todo[i]
                img = to_tensor(ds.image(image_id))
                if images and img.shape != images[0].shape:
                    break
                batch_ids.append(image_id)
                images.append(img)
                labels.append(torch.from_numpy(ds.labels(image_id)))
                i += 1
            x = torch.stack(images).to(device)
            y = torch.stack(labels).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if isinstance(loc, localize.Localizer):  # the present classes only: never (B, K, H, W)
                    res = loc.attribute(x, y, ids=batch_ids, compact=True)
                    maps, slots = res.maps, res.classes
                else:  # any object with a dense ``attribute`` (e.g. TrajectoryMaps)
                    maps = loc.attribute(x, y, ids=batch_ids)
                    slots = localize.slot_classes(y)
                    maps = localize.pick(maps, slots)
            maps = maps.float().cpu().numpy()  # leaves the device once per batch
            slots = slots.cpu().numpy()
            for j, image_id in enumerate(batch_ids):
                n = int((slots[j] >= 0).sum())
                save_maps(out / f"{image_id}.npz", maps[j, :n], slots[j, :n] + 1)
            done += len(batch_ids)
            pbar.update(len(batch_ids))
    return done, time.time() - t0


def compute(run: Run, method: str, classifier: str = "plain", splits: tuple[str, ...] | None = None,
            progress: bool = True) -> dict:
    """Maps of ``method`` on the score + tune splits (or ``splits``), sharded by rank under torchrun.
    A fusion is fused from its inputs' stored maps (computed first where missing). Returns
    ``{"images": n, "seconds": s, "seconds_per_image": s/n}`` over every rank and resume."""
    spec = localize.spec(method)
    splits = run.scored_splits if splits is None else splits
    if spec.is_fusion and classifier == "plain":
        from wsss.run.stages import fuse

        return fuse.compute(run, method, splits, progress=progress)
    device = run.device
    init_distributed(device)
    key = ResultKey(method, classifier).maps
    out = run.maps_dir(key)
    ids = shard(run.split_ids(splits))
    done, seconds = write_maps(localizer(run, method, classifier), ids, run.lookup(ids), out, device,
                               run.cfg.maps.batch_size, run.cfg.maps.amp, progress, desc=f"maps {key}")
    add_timing(out, done, seconds, device)
    barrier()
    return timing(run, key)


def missing(run: Run, key: str, ids: list[str]) -> list[str]:
    """The ids without stored maps in ``RUN/maps/<key>``."""
    return missing_in(run.maps_dir(key), ids)


def missing_in(folder: Path, ids: list[str]) -> list[str]:
    return [i for i in ids if not (folder / f"{i}.npz").exists()]


def add_timing(maps_dir: Path, images: int, seconds: float, device, **extra) -> None:
    """Add this rank's images and seconds to ``maps_dir/_timing.rank<r>.json`` (kept across resumes)."""
    meta_path = maps_dir / f"_timing.rank{rank()}.json"
    prev = json.loads(meta_path.read_text()) if meta_path.exists() else {"images": 0, "seconds": 0.0}
    meta = {"images": prev["images"] + images, "seconds": prev["seconds"] + seconds, "device": str(device), **extra}
    meta_path.write_text(json.dumps(meta))


def timing(run: Run, key: str) -> dict:
    """Images and seconds of ``RUN/maps/<key>`` summed over ranks and resumes."""
    imgs, secs = 0, 0.0
    for p in run.maps_dir(key).glob("_timing.rank*.json"):
        m = json.loads(p.read_text())
        imgs += m["images"]
        secs += m["seconds"]
    return {"images": imgs, "seconds": secs, "seconds_per_image": secs / imgs if imgs else None}
