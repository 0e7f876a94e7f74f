"""Maps of any method, whatever makes them: a localizer on a classifier, a fusion of stored maps, or a
trained AMN; the maps a method reads are made first where missing (a fusion's inputs, AMN's source maps and
network). The commands that take one method (``wsss maps``, ``train-amn``, ``train-seg``) call this; a
whole run follows its plan (:mod:`wsss.run.plan`) instead.
"""

from __future__ import annotations

from wsss import localize
from wsss.results import ResultKey
from wsss.run.rundir import Run, log
from wsss.run.stages import amn, fuse, maps


def maps_of(run: Run, key: str, splits: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """Stored maps of ``key`` (``<method>[@<classifier>]``) on ``splits`` (default: score + tune)."""
    rk = ResultKey.parse(key)
    splits = run.scored_splits if splits is None else splits
    spec = localize.spec(rk.method)
    if spec.is_fusion:
        base, filler, _, _ = fuse.plan(run, rk.method)
        for source in (base, filler):
            ensure(run, ResultKey(source, rk.classifier).maps, splits, progress)
        return fuse.compute(run, rk.method, splits, progress=progress, classifier=rk.classifier)
    if spec.requires == "amn":
        if not run.amn_path(rk.maps).exists():
            source = ResultKey(amn.source(run, rk.method), rk.classifier).maps
            ensure(run, source, (run.cfg.train_split,), progress)
            log(f"  AMN on {source} maps ({rk.maps})")
            amn.train(run, source, progress=progress, name=rk.maps)
        return amn.compute_maps(run, rk.method, splits, progress=progress, classifier=rk.classifier)
    return maps.compute(run, rk.method, rk.classifier, splits=splits, progress=progress)


def ensure(run: Run, key: str, splits: tuple[str, ...], progress: bool = True) -> None:
    """Make ``key``'s maps of ``splits`` where any is missing."""
    if maps.missing(run, key, run.split_ids(splits)):
        maps_of(run, key, splits, progress)
