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

A method of another classifier, ``<method>@<name>`` (``cam@jigsaw-consistency``: CAM of a classifier trained with
that recipe; ``classifiers.<name>`` in the config for other settings), adds that classifier's training, and
its maps (or a fusion's, an AMN's) come after it::

    classifier:jigsaw-consistency
    maps:cam@jigsaw-consistency   after classifier:jigsaw-consistency

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
from wsss.config import RunConfig, check_methods
from wsss.errors import ConfigError
from wsss.results import ResultKey

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
    check_methods(methods, {})  # unknown names fail here, before any work
    if cfg.pseudo.ndr_reference not in methods:
        methods.insert(0, cfg.pseudo.ndr_reference)
    return methods


def _spec(key: str) -> localize.MethodSpec:
    return localize.spec(ResultKey.parse(key).method)


def inputs(cfg: RunConfig, key: str) -> tuple[str, ...]:
    """The maps keys whose stored maps ``key``'s maps are made from (fusion inputs, AMN's source), of the same
    classifier as ``key``."""
    rk = ResultKey.parse(key)
    spec = localize.spec(rk.method)
    if spec.is_fusion:
        base, filler = spec.inputs
        names: tuple[str, ...] = (base, cfg.maps.options.get(rk.method, {}).get("filler", filler))
    elif spec.requires == "amn":
        names = (spec.source or cfg.amn.from_maps,)
    else:
        return ()
    out = []
    for name in names:
        src = ResultKey.parse(name)
        if rk.classifier != "plain" and src.classifier != "plain":
            raise ConfigError(f"method {key}: its source {name} names another classifier (amn.from_maps)")
        out.append(name if rk.classifier == "plain" else ResultKey(src.method, rk.classifier).maps)
    return tuple(out)


def classifier_job(key: str) -> str:
    """The id of the job that trains the classifier of maps key ``key``."""
    name = ResultKey.parse(key).classifier
    return "classifier" if name == "plain" else f"classifier:{name}"


def irn_source(cfg: RunConfig, method: str) -> str:
    """The method whose maps train the IRN that walks ``method``'s maps (``irn.from_maps``)."""
    return method if cfg.irn.from_maps == "self" else cfg.irn.from_maps


def build(cfg: RunConfig, methods: list[str] | None = None, post: tuple[str, ...] | list[str] | None = None,
          trained: tuple[str, ...] = ()) -> list[Job]:
    """The jobs of a run, each after the jobs it needs (see the module docstring); ``post``: the
    post-processing steps scored for every method (default: the config's ``pseudo.post``); ``trained``: names
    of classifiers already trained in the run (``wsss train-cls --name``), usable as ``<method>@<name>``
    without a config entry."""
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
        spec = _spec(m)
        for src in inputs(cfg, m):  # AMN trains on its source's maps of the train split
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
    order = list(dict.fromkeys([*methods, *on_train]))
    # the classifiers: the run's own (IRN's backbone too) and each one a maps key names
    names = list(dict.fromkeys([*(["plain"] if irn_sources else []), *(ResultKey.parse(m).classifier for m in order)]))
    for name in names:
        if name not in trained:
            cfg.classifier_config(name)  # an unknown name fails here, before any work
    jobs = [Job("classifier", "" if name == "plain" else name) for name in names]
    plain = [m for m in order if not _spec(m).is_fusion and _spec(m).requires != "amn"]
    fused = [m for m in order if _spec(m).is_fusion]
    amns = [m for m in order if _spec(m).requires == "amn"]
    for m in plain:
        jobs.append(Job("maps", m, scored + train * on_train[m], (classifier_job(m),)))
    for m in fused:  # after the plain maps (check() catches a fusion of fusions listed out of order)
        jobs.append(Job("fuse", m, scored + train * on_train[m], tuple(_maps_id(s) for s in inputs(cfg, m))))
    for m in amns:  # AMN trains on stored maps of any kind, fused ones included; its backbone is their classifier's
        src = inputs(cfg, m)[0]
        jobs.append(Job("amn", m, train, (classifier_job(src), _maps_id(src))))
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


def _maps_id(key: str) -> str:
    return f"{'fuse' if _spec(key).is_fusion else 'maps'}:{key}"


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
    return "\n".join(f"{j.id:<32}{','.join(s for s in j.splits if s):<28}{'after ' + ', '.join(j.after) if j.after else ''}"
                     for j in jobs)
