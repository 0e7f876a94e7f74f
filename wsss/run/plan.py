"""The plan: which jobs a run needs for its methods, in an order where every job comes after the jobs it
reads from. Built from the method specs alone (:func:`wsss.localize.spec`): a fusion depends on its inputs'
maps, an AMN method on its source maps and a trained AMN, a segmenter on a method's scores, and a method's
maps are made on the train split exactly when something downstream trains on them.

``wsss run --methods jigsaw-cam,amn`` plans::

    classifier            train the classifier
    maps:cam              score + tune + train splits (AMN's source, the fusion's base)
    maps:jigsaw           score + tune splits (an input of jigsaw-cam)
    fuse:jigsaw-cam       after maps:cam, maps:jigsaw
    amn:amn               after maps:cam
    maps:amn              after amn:amn
    score:cam ...         after each method's maps
    seg:cam, seg:gt       after score:cam
    report
"""

from __future__ import annotations

import dataclasses

from wsss import localize
from wsss.config import RunConfig

KINDS = ("classifier", "maps", "fuse", "amn", "score", "seg", "report")


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` on ``target`` (a method, a mask source), on ``splits``, after ``after``."""

    kind: str
    target: str = ""
    splits: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def methods_of(cfg: RunConfig, methods: list[str] | None = None) -> list[str]:
    """The methods a run scores: ``methods`` (or the config's), the NDR reference first when missing."""
    methods = list(dict.fromkeys(methods or cfg.maps.methods))
    for m in methods:
        localize.spec(m)  # unknown names fail here, before any work
    if cfg.pseudo.ndr_reference not in methods:
        methods.insert(0, cfg.pseudo.ndr_reference)
    return methods


def _inputs(cfg: RunConfig, method: str) -> tuple[str, ...]:
    """The methods whose stored maps ``method``'s maps are made from (fusion inputs, AMN source)."""
    spec = localize.spec(method)
    if spec.is_fusion:
        base, filler = spec.inputs
        return base, cfg.maps.options.get(method, {}).get("filler", filler)
    if spec.requires == "amn":
        return (spec.source or cfg.amn.from_maps,)
    return ()


def build(cfg: RunConfig, methods: list[str] | None = None) -> list[Job]:
    """The jobs of a run, each after the jobs it needs (see the module docstring)."""
    methods = methods_of(cfg, methods)
    seg = [m for m in cfg.seg.methods if m in methods] if cfg.train_segmenter else []
    # every method whose maps are needed, with whether they are needed on the train split
    on_train: dict[str, bool] = {}

    def need(m: str, train: bool) -> None:
        if on_train.get(m) is True or (m in on_train and not train):
            return
        on_train[m] = train
        spec = localize.spec(m)
        for src in _inputs(cfg, m):  # AMN trains on its source's maps of the train split
            need(src, train or spec.requires == "amn")

    for m in methods:
        need(m, m in seg)
    scored = (cfg.score_split, cfg.tune_split)
    train = (cfg.train_split,)
    jobs = [Job("classifier")]
    order = list(dict.fromkeys([*methods, *on_train]))
    plain = [m for m in order if not localize.spec(m).is_fusion and localize.spec(m).requires != "amn"]
    fused = [m for m in order if localize.spec(m).is_fusion]
    amns = [m for m in order if localize.spec(m).requires == "amn"]
    for m in plain:
        jobs.append(Job("maps", m, scored + train * on_train[m], ("classifier",)))
    for m in fused:  # after the plain maps (check() catches a fusion of fusions listed out of order)
        jobs.append(Job("fuse", m, scored + train * on_train[m], tuple(_maps_id(s) for s in _inputs(cfg, m))))
    for m in amns:  # AMN trains on stored maps of any kind, fused ones included
        jobs.append(Job("amn", m, train, ("classifier", _maps_id(_inputs(cfg, m)[0]))))
    for m in amns:
        jobs.append(Job("maps", m, scored + train * on_train[m], (f"amn:{m}",)))
    jobs += [Job("score", m, after=(_maps_id(m),)) for m in methods]
    if cfg.train_segmenter:
        jobs += [Job("seg", m, after=(f"score:{m}",)) for m in seg]
        if cfg.seg.ground_truth:
            jobs.append(Job("seg", "gt"))
    jobs.append(Job("report", after=tuple(j.id for j in jobs if j.kind in ("score", "seg"))))
    check(jobs)
    return jobs


def _maps_id(method: str) -> str:
    return f"{'fuse' if localize.spec(method).is_fusion else 'maps'}:{method}"


def check(jobs: list[Job]) -> None:
    """Every job after the jobs it needs (the plan is a topological order)."""
    seen: set[str] = set()
    for job in jobs:
        missing = [d for d in job.after if d not in seen]
        if missing:
            raise AssertionError(f"plan: {job.id} comes before {missing[0]}")
        seen.add(job.id)


def describe(jobs: list[Job]) -> str:
    """The plan, one job a line (``wsss run --plan``)."""
    return "\n".join(f"{j.id:<28}{','.join(s for s in j.splits if s):<28}{'after ' + ', '.join(j.after) if j.after else ''}"
                     for j in jobs)
