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

With post-processing (``wsss run --post crf,irn``, ``pseudo.post``) every scored method ``M`` also gets
``score:M+crf`` (after ``score:M``: the CRF refines at M's tune-chosen t) and ``score:M+irn`` (after
``maps:M`` and ``irn:<S>``, the IRN trained on the maps of ``S``: ``M`` itself under ``irn.from_maps: self``,
whose maps are then also made on the train split)::

    irn:cam               after classifier, maps:cam
    score:cam+crf         after score:cam
    score:cam+irn         after maps:cam, irn:cam
"""

from __future__ import annotations

import dataclasses

from wsss import localize
from wsss.config import RunConfig
from wsss.errors import ConfigError

KINDS = ("classifier", "maps", "fuse", "amn", "irn", "score", "seg", "report")


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


def irn_source(cfg: RunConfig, method: str) -> str:
    """The method whose maps train the IRN that walks ``method``'s maps (``irn.from_maps``)."""
    return method if cfg.irn.from_maps == "self" else cfg.irn.from_maps


def build(cfg: RunConfig, methods: list[str] | None = None, post: tuple[str, ...] | list[str] | None = None
          ) -> list[Job]:
    """The jobs of a run, each after the jobs it needs (see the module docstring); ``post``: the
    post-processing steps scored for every method (default: the config's ``pseudo.post``)."""
    methods = methods_of(cfg, methods)
    post = tuple(dict.fromkeys(cfg.pseudo.post if post is None else post))
    bad = [p for p in post if p not in ("crf", "irn")]
    if bad:
        raise ConfigError(f"--post {bad[0]}: unknown post-processing step (crf, irn)")
    # a segmenter trains on a method's masks or on its +irn masks (the walk runs on the train split; dense-CRF
    # masks exist only on the scored splits)
    trainable = [*methods, *(f"{m}+irn" for m in methods if "irn" in post)]
    seg = [m for m in cfg.seg.methods if m in trainable] if cfg.train_segmenter else []
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
    irn_sources = list(dict.fromkeys(irn_source(cfg, m) for m in methods)) if "irn" in post else []
    for src in irn_sources:  # IRN trains on its source's maps of the train split
        need(src, True)
    for m in methods:  # a segmenter on M+irn: M's walk on the train split needs M's maps there
        if f"{m}+irn" in seg:
            need(m, True)
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
    for src in irn_sources:
        jobs.append(Job("irn", src, train, ("classifier", _maps_id(src))))
    jobs += [Job("score", m, after=(_maps_id(m),)) for m in methods]
    if "crf" in post:
        jobs += [Job("score", f"{m}+crf", after=(f"score:{m}",)) for m in methods]
    if "irn" in post:
        jobs += [Job("score", f"{m}+irn", scored, (_maps_id(m), f"irn:{irn_source(cfg, m)}")) for m in methods]
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
