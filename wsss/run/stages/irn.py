"""Stage: IRN (Ahn et al. CVPR 2019), the semantic path, as a post-processing step of any method's maps.

* :func:`train` (``wsss train-irn --run R --from-maps M``): the boundary branch trained on IR labels of
  ``M``'s maps of the train split -> ``RUN/irn-<M>.pt``, its summary (label / training seconds, seconds per
  training image) in ``results["irn"][M]``.
* :func:`walk`: the random walk of a method's maps on the boundary of its IRN -> the walk's normalized
  class scores in ``RUN/maps/<M>+irn/<id>.npz`` (:func:`wsss.irn.irn_scores`), timed per image (boundary
  prediction + walk) in that folder's ``_timing.rank*.json``.
* ``wsss pseudo --method M --irn`` (:func:`wsss.run.stages.score.pseudo`) scores ``M+irn`` like any method:
  the walk's background score ``sem_seg_bg`` is the threshold t, chosen on the tune split (or fixed by
  ``irn.sem_seg_bg``), the sweep, AP and masks (``RUN/masks/<M>+irn``) come from the stored walk scores.

Which IRN walks which maps (``irn.from_maps``): ``self`` (default) = each method's own IRN, trained on its own
maps, which is IRN's protocol for CAM (IRN from CAM labels) and AMN's for AMN (IRN from AMN labels, AMN's
72.2); a method name = one IRN from that method's maps for every method (IRN's protocol applied to others).
The method's preset (``irn.presets``, :func:`wsss.config.irn_settings`) sets the label thresholds of its
IRN and the power of its walked maps.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from wsss import localize
from wsss.config import irn_settings
from wsss.errors import RunDirError
from wsss.results import ResultKey
from wsss.run.rundir import Run, log, timed


def source(run: Run, key: str) -> str:
    """The maps key the IRN of result key ``key``'s walk is trained on (``irn.from_maps``; ``self``: its own)."""
    src = run.cfg.irn.from_maps
    return ResultKey.parse(key).maps_key if src == "self" else ResultKey.parse(src).maps_key


def checkpoint(run: Run, from_maps: str) -> Path:
    return run.path / f"irn-{from_maps}.pt"


def train(run: Run, from_maps: str, progress: bool = True) -> dict:
    """Train IRN on labels from ``from_maps``'s maps of the train split (computed where missing), save
    ``RUN/irn-<from_maps>.pt``, record ``results["irn"][from_maps]``."""
    from wsss.models.checkpoint import arch_of, load_checkpoint
    from wsss.run.stages import classifier, maps
    from wsss.train.irn import train_irn

    rk = ResultKey.parse(from_maps)
    localize.spec(rk.method)  # an unknown method fails here
    src = rk.maps_key
    cfg = irn_settings(run.cfg.irn, rk.method).model_copy(update={"from_maps": src})
    train_ds = run.dataset(run.cfg.train_split)
    if maps.missing(run, src, train_ds.ids):
        maps.compute(run, rk.method, rk.classifier, splits=(run.cfg.train_split,), progress=progress)
    ckpt = load_checkpoint(run.classifier_path(), "classifier", ("arch",), command="wsss train-cls")
    arch, arch_kwargs = arch_of(ckpt)
    log(f"  IRN on {src} maps (fg {cfg.fg_threshold}, bg {cfg.bg_threshold}, radius {cfg.radius})")
    with timed(run, f"train-irn/{src}"):
        res = train_irn(train_ds, run.maps_dir(src), classifier.load(run), cfg, checkpoint(run, src), run.device,
                        seed=run.cfg.seed, progress=progress, arch=arch, arch_kwargs=arch_kwargs)
    res["seconds_per_image"] = res["seconds"] / max(len(train_ds.ids), 1)
    run.update_results("irn", src, value=res)
    return res


def walk(run: Run, key: str, splits: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """The walk scores of result key ``key`` (``M`` or ``M+irn``) on ``splits`` (default: score + tune) into
    ``RUN/maps/<M>+irn/``; images already there are skipped. Returns the folder's timing
    (:func:`wsss.run.stages.maps.timing`)."""
    from wsss.irn import irn_scores, predict_boundary
    from wsss.mapsio import load_maps, save_maps
    from wsss.progress import progress_bar
    from wsss.run.stages import maps
    from wsss.train.irn import load_irn

    rk = ResultKey.parse(key).with_post("irn")
    base, src = rk.maps_key, source(run, key)
    path = checkpoint(run, src)
    if not path.exists():
        raise RunDirError(f"{path}: no trained IRN (run `wsss train-irn --run {run.path} --from-maps {src}`)")
    cfg = irn_settings(run.cfg.irn, rk.method)
    splits = run.scored_splits if splits is None else splits
    ids = run.split_ids(splits)
    if maps.missing(run, base, ids):
        maps.compute(run, rk.method, rk.classifier, splits=splits, progress=progress)
    out = run.maps_dir(str(rk))
    made_by = {json.loads(p.read_text()).get("irn") for p in out.glob("_timing.rank*.json")}
    if made_by - {src}:  # walked on another IRN's boundary (irn.from_maps changed): walk again
        log(f"  {out}: walked with irn-{sorted(made_by - {src})[0]}.pt, not irn-{src}.pt: walking again")
        shutil.rmtree(out)
    todo = maps.missing_in(out, ids)
    if todo:
        device = run.device
        branch = load_irn(path, device)
        lookup = run.lookup(todo)
        t0 = time.time()
        for image_id in progress_bar(todo, desc=f"walk {rk}", disable=not progress, leave=False):
            image = lookup[image_id].image(image_id)
            m, classes = load_maps(run.maps_dir(base) / f"{image_id}.npz")
            boundary = predict_boundary(branch, image, device, flip=cfg.flip_boundary)
            scores = irn_scores(m, classes, boundary, image.shape[:2], cfg)
            save_maps(out / f"{image_id}.npz", scores, classes)
        maps.add_timing(out, len(todo), time.time() - t0, device, irn=src)
    return maps.timing(run, str(rk))


def costs(run: Run, key: str) -> dict:
    """Seconds per image of ``M+irn``'s post step: ``walk`` (boundary + walk, per scored image) and
    ``training`` (the IRN's labels + training, amortized over its training images)."""
    from wsss.run.stages import maps

    rk = ResultKey.parse(key).with_post("irn")
    trained = (run.results().get("irn") or {}).get(source(run, key)) or {}
    return {"walk": maps.timing(run, str(rk))["seconds_per_image"], "training": trained.get("seconds_per_image"),
            "from_maps": source(run, key)}
