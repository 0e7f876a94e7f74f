"""Stage: localization maps, streamed to ``RUN/maps/<key>/<id>.npz`` (batched, resumable, sharded by rank).

:func:`write_maps` is the one map writer: the pipeline (:func:`compute`) and the study both use it.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from wsss import localize
from wsss.data.transforms import to_tensor
from wsss.errors import DataError, RunDirError
from wsss.mapsio import map_file_problem, save_maps
from wsss.progress import progress_bar
from wsss.results import ResultKey
from wsss.run.rundir import Run, log
from wsss.runtime import barrier, init_distributed, is_main, rank, shard, world_size


def method_options(run: Run, method: str) -> dict:
    """The options a run builds ``method``'s localizer with: the run's seed, then its configured options."""
    return {"seed": run.cfg.seed, **run.cfg.maps.options.get(method, {})}


def localizer(run: Run, method: str, classifier: str = "plain") -> localize.Localizer:
    """``method``'s localizer on trained classifier ``classifier``, as the run configures it (for methods that read
    the classifier's training outputs, its checkpoint too; multi-scale / flip around it when the config asks and
    the maps come from the image)."""
    from wsss.run.stages import classifier as clf_stage

    spec = localize.spec(method)
    opts = method_options(run, method)
    if spec.requires == "checkpoint":  # maps from the classifier's training outputs (OAA bank, snapshots)
        opts["checkpoint"] = run.classifier_path(classifier)
    loc = spec.create(clf_stage.load(run, classifier), **opts)
    if loc.from_image and (run.cfg.maps.multiscale != (1.0,) or run.cfg.maps.flip):
        loc = localize.MultiScale(loc, run.cfg.maps.multiscale, run.cfg.maps.flip)
    return loc


def write_maps(loc: localize.Localizer, ids: list[str], lookup: dict, out: Path, device: torch.device,
               batch_size: int = 16, amp: bool = False, progress: bool = True, desc: str = "maps") -> tuple[int, float]:
    """Maps of ``ids`` (each read from ``lookup[id]``, a dataset) by ``loc``, one ``out/<id>.npz`` per image
    with the present classes only; images already in ``out`` are skipped. A batch holds images of one size.
    Returns (images written, seconds). Stored files are checked first (:func:`todo_in`: a corrupt one is
    named and computed again); a second writer of the same folder at the same time is refused (:func:`writing`)."""
    out.mkdir(parents=True, exist_ok=True)
    with writing(out):
        return _write_maps(loc, ids, lookup, out, device, batch_size, amp, progress, desc)


def _write_maps(loc, ids, lookup, out, device, batch_size, amp, progress, desc) -> tuple[int, float]:
    todo = todo_in(out, ids)
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
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    if isinstance(loc, localize.Localizer):  # the present classes only: never (B, K, H, W)
                        res = loc.attribute(x, y, ids=batch_ids, compact=True)
                        maps, slots = res.maps, res.classes
                    else:  # any object with a dense ``attribute``
                        maps = loc.attribute(x, y, ids=batch_ids)
                        slots = localize.slot_classes(y)
                        maps = localize.pick(maps, slots)
            except (RuntimeError, MemoryError) as exc:
                if not _out_of_memory(exc):
                    raise
                first = lookup[batch_ids[0]].image_path(batch_ids[0])
                raise DataError(f"{first}: out of memory computing maps of this {x.shape[-1]}x{x.shape[-2]} image "
                                f"(batch of {len(batch_ids)}); set max_side to downscale large images (e.g. --set "
                                "max_side=1024) or a smaller maps.batch_size, then rerun to resume") from None
            maps = maps.float().cpu().numpy()  # leaves the device once per batch
            slots = slots.cpu().numpy()
            for j, image_id in enumerate(batch_ids):
                n = int((slots[j] >= 0).sum())
                save_maps(out / f"{image_id}.npz", maps[j, :n], slots[j, :n] + 1)
            done += len(batch_ids)
            pbar.update(len(batch_ids))
    return done, time.time() - t0


def compute(run: Run, method: str, classifier: str = "plain", splits: tuple[str, ...] | None = None,
            progress: bool = True, loc: localize.Localizer | None = None) -> dict:
    """Maps of ``method`` by its localizer (``loc``, default :func:`localizer`) on the score + tune splits (or
    ``splits``), sharded by rank under torchrun; images already stored are skipped. Returns
    ``{"images": n, "seconds": s, "seconds_per_image": s/n}`` over every rank and resume. (Maps of any kind of
    method, fusions and AMN included: :func:`wsss.run.stages.produce.maps_of`.)"""
    splits = run.scored_splits if splits is None else splits
    device = run.device
    init_distributed(device)
    key = ResultKey(method, classifier).maps
    out = run.maps_dir(key)
    ids = shard(run.split_ids(splits))
    loc = loc or localizer(run, method, classifier)
    done, seconds = write_maps(loc, ids, run.lookup(ids), out, device,
                               run.cfg.maps.batch_size, run.cfg.maps.amp, progress, desc=f"maps {key}")
    add_timing(out, done, seconds, device)
    barrier()
    return timing(run, key)


def missing(run: Run, key: str, ids: list[str]) -> list[str]:
    """The ids without stored maps in ``RUN/maps/<key>``."""
    return missing_in(run.maps_dir(key), ids)


def missing_in(folder: Path, ids: list[str]) -> list[str]:
    """The ids without a whole map file in ``folder`` (absent, or corrupt: see :func:`todo_in`)."""
    return [i for i in ids if not (folder / f"{i}.npz").exists() or map_file_problem(folder / f"{i}.npz")]


def todo_in(folder: Path, ids: list[str]) -> list[str]:
    """The ids whose maps must be (re)computed: no file, or a file that cannot be trusted (empty, truncated,
    missing arrays: :func:`wsss.mapsio.map_file_problem`), which is named and deleted."""
    todo = []
    for i in ids:
        path = folder / f"{i}.npz"
        if path.exists():
            problem = map_file_problem(path)
            if problem is None:
                continue
            log(f"  {path}: corrupt map file ({problem}); computing it again")
            path.unlink(missing_ok=True)
        todo.append(i)
    return todo


@contextmanager
def writing(folder: Path):
    """Hold ``folder/.writing.rank<r>`` locked (``fcntl.flock``, released when the process ends, even by
    ``kill -9``) while maps are written: a second ``wsss maps`` of the same maps at the same time is refused
    instead of racing on the same files and counting the time twice. A no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    lock = folder / f".writing.rank{rank()}"
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{folder}: another process is writing these maps now; wait for it to finish "
                              "(then rerun to resume), or write another method") from None
        if world_size() == 1:  # the only writer: temp files left by a killed one are garbage
            for tmp in folder.glob(".*.tmp.npz"):
                tmp.unlink(missing_ok=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


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
