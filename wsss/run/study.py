"""The study (``wsss ablate``): variants of our method and its baselines, each scored like a method by the
same stages as a run (the one map writer, the one scorer, the one offline fuser).

A variant is data (:class:`Variant`): a method, its options and a classifier. Its maps go to
``RUN/maps/ablate/<variant>/``, its scores (fractions) to ``results.json["ablation"]["variants"][<variant>]``;
the grids write ``["fusion_grid"]`` / ``["region_grid"]``; ``["tables"]`` lists which entries each table shows
(the report formats them). Settings are chosen on the tune split; the score split is reported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from wsss import localize
from wsss.errors import ConfigError
from wsss.localize.fusion import FUSIONS
from wsss.results import MethodResult, StudyEntry
from wsss.run.rundir import Run, log
from wsss.run.stages import amn, classifier, fuse, maps, produce, score

FILLERS = ("jigsaw", "saliency", "smoothgrad", "cropsal")
GRID_FUSIONS = ("max", "mean", "geo", "cam-weighted")
AMN_OFFICIAL_LR = (5e-6, 1e-4)  # backbone, head (Adam), as in the official code


@dataclasses.dataclass(frozen=True)
class Variant:
    """One scored variant: ``method`` with ``options``, maps from classifier ``classifier`` (``random``: the
    plain classifier with every layer re-initialized, Adebayo et al. 2018)."""

    name: str
    method: str
    options: dict = dataclasses.field(default_factory=dict)
    classifier: str = "plain"


def study_groups(samples: int = 16) -> dict[str, list[Variant]]:
    """The study's groups of variants."""
    j = {"samples": samples}

    def sampled(method: str) -> dict:
        return dict(j) if localize.spec(method).stochastic else {}

    return {
        "samples N": [Variant(f"jigsaw N={n}", "jigsaw", {"samples": n}) for n in (1, 4, 8, 16, 32)],
        "grid schedule": [
            # coarse (patches >= the effective receptive field) to fine (8 px patches at 128 px, well inside it)
            Variant(f"jigsaw grids={g}", "jigsaw", {**j, "grids": g})
            for g in ((2,), (3,), (4,), (2, 3, 4), (4, 6, 8), (8,), (16,), (8, 12, 16))
        ],
        "options": [
            Variant("jigsaw no offsets", "jigsaw", {**j, "offsets": False}),
            Variant("jigsaw prob weighting", "jigsaw", {**j, "weighting": "prob"}),
            Variant("jigsaw grad x input", "jigsaw", {**j, "reduction": "gradxinput"}),
            Variant("jigsaw L2", "jigsaw", {**j, "reduction": "l2"}),
            Variant("jigsaw smooth 2px", "jigsaw", {**j, "smooth_sigma": 2.0}),
            Variant("jigsaw + intact", "jigsaw", {**j, "include_intact": True}),
        ],
        "2x2 classifier x maps": [
            Variant(f"{m}@{c}", m, sampled(m), c)
            for c in ("plain", "jigsaw-aug")
            for m in ("cam", "gradcam", "saliency", "smoothgrad", "cropsal", "jigsaw")
        ],
        "CAM-seeded region filled by": [
            Variant(f"region + {f}", "jigsaw-cam", {"filler": f, **sampled(f)}) for f in FILLERS[1:] + FILLERS[:1]
        ] + [
            Variant("region + grad x input", "jigsaw-cam", {"filler": "saliency", "reduction": "gradxinput"}),
            Variant("region + jigsaw fine grids", "jigsaw-cam", {"filler": "jigsaw", "samples": samples, "grids": (8, 12)}),
            Variant("region + CAM (control)", "jigsaw-cam", {"filler": "cam"}),
        ],
        "randomized weights (sanity)": [
            Variant(f"{m}@random", m, dict(j) if m == "jigsaw" else {}, "random") for m in ("cam", "saliency", "jigsaw")
        ],
    }


def effective_receptive_field(model: torch.nn.Module, size: int = 96, device="cpu") -> dict:
    """Gradient of the centre feature cell (summed over channels) w.r.t. a random input: the radius (px)
    holding 95 % of the absolute gradient mass around the centre, and the theoretical extent."""
    model = model.to(device).eval()
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    feats = model.forward_features(x)
    h, w = feats.shape[-2:]
    (g,) = torch.autograd.grad(feats[0, :, h // 2, w // 2].sum(), x)
    mass = g.abs().sum(1)[0]
    cy = cx = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    r = torch.maximum((yy - cy).abs(), (xx - cx).abs())
    order = torch.argsort(r.flatten())
    cum = torch.cumsum(mass.flatten()[order], 0) / mass.sum().clamp_min(1e-12)
    r95 = float(r.flatten()[order][torch.searchsorted(cum, torch.tensor(0.95, device=device))])
    support = r.flatten()[mass.flatten() > 1e-8 * mass.max()]
    return {"effective_radius95_px": r95, "theoretical_radius_px": float(support.max()) if support.numel() else 0.0,
            "stride": int(model.stride), "input": size}


# ---- where a study's maps live --------------------------------------------------------------------------
def safe_name(name: str) -> str:
    """A study variant's name as a folder name (``RUN/maps/ablate/<safe>``)."""
    return "".join(ch if ch.isalnum() or ch in "-_=." else "_" for ch in name)


def stored_maps_dir(run: Run, name: str) -> Path:
    """Stored maps of a method of the run (``RUN/maps/<name>``) or of a study variant (``RUN/maps/ablate/<safe>``)."""
    own = run.maps_dir(name)
    return own if own.is_dir() else run.path / "maps" / "ablate" / safe_name(name)


def _study_ids(run: Run) -> list[str]:
    return run.split_ids(run.scored_splits)


def _record(run: Run, *keys: str, value: dict) -> None:
    run.update_results("ablation", *keys, value=value)


def _set_table(run: Run, title: str, kind: str, entries: list[str], command: str) -> None:
    """Record which entries a table of the report shows (the report formats them)."""
    old = (run.results().get("ablation") or {}).get("tables") or []
    table = {"title": title, "kind": kind, "entries": entries, "command": command}
    _record(run, "tables", value=[t for t in old if t["title"] != title] + [table])


def _score_dir(run: Run, maps_dir: Path, norm: str, masks_name: str, progress: bool) -> MethodResult:
    masks = run.path / "masks" / "ablate" / masks_name
    return MethodResult.model_validate(
        score.score_maps(run, maps_dir, norm, masks, score.reference_dir(run), progress=progress))


# ---- variants --------------------------------------------------------------------------------------------
def _model(run: Run, clf: str):
    if clf != "random":
        return classifier.load(run, clf)
    model = classifier.load(run, "plain")
    torch.manual_seed(run.cfg.seed)
    for m in model.modules():  # Adebayo et al. 2018: re-initialize every layer
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def same_as_run_method(run: Run, v: Variant, ids: list[str]) -> bool:
    """Whether a variant is exactly the run's own method (plain classifier, the same effective options, maps
    of every id stored), so its stored maps are scored instead of recomputed."""
    if v.classifier != "plain" or v.method not in localize.available() or maps.missing(run, v.method, ids):
        return False
    spec = localize.spec(v.method)
    if spec.is_fusion:
        return False
    opts = {"seed": run.cfg.seed}
    return spec.effective_options({**opts, **v.options}) == spec.effective_options(maps.method_options(run, v.method))


def score_variant(run: Run, v: Variant, progress: bool = True, loc: localize.Localizer | None = None,
                  extra: dict | None = None) -> dict:
    """Maps of variant ``v`` on the score + tune splits (the run's own when identical, else computed by ``loc``
    or by its method), scored like a method; returns its study entry."""
    ids = _study_ids(run)
    maps_dir, spi = run.path / "maps" / "ablate" / safe_name(v.name), None
    if loc is None and same_as_run_method(run, v, ids):
        maps_dir = run.maps_dir(v.method)  # this variant is the run's own method: score its stored maps
        spi = (run.results().get("methods", {}).get(v.method) or {}).get("seconds_per_image")
        log(f"  {v.name}: the run's {v.method} maps (same options)")
    elif maps.missing_in(maps_dir, ids):
        if loc is None:
            loc = localize.create(v.method, _model(run, v.classifier), **{"seed": run.cfg.seed, **v.options})
        n, seconds = maps.write_maps(loc, ids, run.lookup(ids), maps_dir, run.device, run.cfg.maps.batch_size,
                                     run.cfg.maps.amp, progress, desc=f"maps {v.name}")
        spi = seconds / n if n else None
    res = _score_dir(run, maps_dir, run.cfg.pseudo.norm_for(v.method), safe_name(v.name), progress)
    entry = StudyEntry.from_method(res, seconds_per_image=spi, method=v.method, classifier=v.classifier,
                                   options={k: list(x) if isinstance(x, tuple) else x for k, x in v.options.items()},
                                   **(extra or {}))
    out = entry.model_dump()
    log(f"  {v.name:<32} tune {_pct(out['tune_miou'])}  {run.cfg.score_split}@t {_pct(out['miou'])}  "
        f"P {_pct(out['precision'])} R {_pct(out['recall'])}")
    return out


def run_ablation(run: Run, groups: list[str] | None = None, samples: int = 16, jigsaw_aug: float = 0.5,
                 progress: bool = True) -> dict:
    """Score every variant of ``groups`` (default: all) not scored yet; measure the receptive field."""
    variants = study_groups(samples)
    chosen = groups or list(variants)
    unknown = [g for g in chosen if g not in variants]
    if unknown:
        raise ConfigError(f"unknown study group(s) {', '.join(unknown)}; available: {', '.join(variants)}")
    if any(v.classifier == "jigsaw-aug" for g in chosen for v in variants[g]) and not run.classifier_path("jigsaw-aug").exists():
        log(f"training the jigsaw-augmented classifier (P = {jigsaw_aug})")
        classifier.train(run, name="jigsaw-aug", jigsaw_aug=jigsaw_aug, progress=progress)
    ds = run.dataset(run.cfg.score_split)
    rf = effective_receptive_field(classifier.load(run), size=int(ds.image(ds.ids[0]).shape[0]), device=run.device)
    _record(run, "receptive_field", value=rf)
    log(f"effective receptive field (95% mass) radius {rf['effective_radius95_px']:.0f} px, "
        f"theoretical {rf['theoretical_radius_px']:.0f} px, stride {rf['stride']}")
    done = (run.results().get("ablation") or {}).get("variants") or {}
    for group in chosen:
        for v in variants[group]:
            if v.name not in done:
                done[v.name] = score_variant(run, v, progress)
                _record(run, "variants", v.name, value=done[v.name])
        _set_table(run, group, "variants", [v.name for v in variants[group]],
                   f"wsss ablate --run {run.path} --group '{group}'")
    return run.results()["ablation"]


# ---- grids over stored maps --------------------------------------------------------------------------------
def _stored(run: Run, name: str) -> Path:
    src = stored_maps_dir(run, name)
    if not src.is_dir():
        raise ConfigError(f"{name!r}: no stored maps in {run.path / 'maps'} (a method of the run or a study variant "
                          "that was run)")
    return src


def region_grid(run: Run, fillers: tuple[str, ...] = FILLERS, thresholds: tuple[float, ...] = (0.3, 0.5, 0.7),
                dilations: tuple[int, ...] = (4, 10, 16, 24), progress: bool = True) -> dict:
    """The CAM-seeded region fusion (``fusion: region``) over seed threshold x dilation, for each filler map
    already stored, fused offline from the stored CAM and filler maps. The setting is chosen on the tune split
    per filler; the table reports the score split at that setting."""
    cam_dir, ids, chosen = run.maps_dir("cam"), _study_ids(run), {}
    for filler in fillers:
        if not stored_maps_dir(run, filler).is_dir():
            continue
        best = None
        for thr in thresholds:
            for dil in dilations:
                name = f"region({filler}) thr={thr} dil={dil}"
                out = run.path / "maps" / "ablate" / f"region_{safe_name(filler)}_{thr}_{dil}"
                fuse.fuse_dirs("region", cam_dir, stored_maps_dir(run, filler), out, ids, seed_threshold=thr, dilation=dil)
                v = {"filler": filler, "seed_threshold": thr, "dilation": dil,
                     **StudyEntry.from_method(_score_dir(run, out, "max", out.name, False)).model_dump()}
                _record(run, "region_grid", name, value=v)
                if best is None or v["tune_miou"] > best[1]["tune_miou"]:
                    best = (name, v)
        chosen[filler] = best
        log(f"  region({filler}): chosen on tune thr={best[1]['seed_threshold']} dil={best[1]['dilation']} "
            f"(tune {_pct(best[1]['tune_miou'])}) -> {run.cfg.score_split} {_pct(best[1]['miou'])}")
    _set_table(run, "CAM-seeded region: seed threshold x dilation chosen on tune, per filler", "region",
               [name for name, _ in chosen.values()], f"wsss ablate --run {run.path} --region-grid")
    return chosen


def fusion_key(mode: str, filler: str, base: str = "cam") -> str:
    return f"{mode}{'' if base == 'cam' else f'[{base}]'}({filler})"


def fusion_grid(run: Run, fillers: tuple[str, ...] = FILLERS, modes: tuple[str, ...] = GRID_FUSIONS,
                base: str = "cam", progress: bool = True) -> dict:
    """Fusions of the stored CAM (``base``: a method or a study variant, e.g. ``cam@jigsaw-aug``) with each
    stored filler map, every mode of :data:`wsss.localize.fusion.FUSIONS` named in ``modes``, each scored like a
    method (t chosen on tune). ``geo`` is what ``jigsaw-cam`` does."""
    unknown = [m for m in modes if m not in FUSIONS]
    if unknown:
        raise ConfigError(f"unknown fusion {unknown[0]!r}; available: {', '.join(FUSIONS)}")
    cam_dir, ids = _stored(run, base), _study_ids(run)
    tag = "" if base == "cam" else f"[{base}]"
    for filler in fillers:
        if not stored_maps_dir(run, filler).is_dir():
            continue
        for mode in modes:
            out = run.path / "maps" / "ablate" / f"fusion_{mode}{safe_name(tag)}_{safe_name(filler)}"
            fuse.fuse_dirs(mode, cam_dir, stored_maps_dir(run, filler), out, ids)
            v = {"base": base, "filler": filler, "fusion": mode,
                 **StudyEntry.from_method(_score_dir(run, out, "max", out.name, False)).model_dump()}
            _record(run, "fusion_grid", fusion_key(mode, filler, base), value=v)
            log(f"  {mode}({base}, {filler}): tune {_pct(v['tune_miou'])} -> {run.cfg.score_split} {_pct(v['miou'])} "
                f"(P {_pct(v['precision'])} R {_pct(v['recall'])})")
    grid = run.results()["ablation"].get("fusion_grid", {})
    _set_table(run, "CAM fused with a gradient map (normalized maps; t chosen on tune)", "fusion", list(grid),
               f"wsss ablate --run {run.path} --fusion-grid [--filler NAME] [--fusion-base NAME]")
    return grid


def amn_grid(run: Run, crf: tuple = (False, True), lr_mults: tuple[float, ...] = (1.0, 10.0, 30.0),
             from_maps: str | None = None, progress: bool = True) -> dict:
    """AMN's training labels and schedule on this data: dense-CRF labels (IRN) on/off x the official learning
    rates (backbone 5e-6, head 1e-4) scaled by each of ``lr_mults``, every variant trained on ``from_maps``
    (default: the config's), scored like a method (t chosen on tune). Checkpoints go to ``RUN/ablate/``; the
    benchmark defaults of ``amn`` were chosen from this table's tune column."""
    from wsss.crf import crf_available

    from_maps = from_maps or run.cfg.amn.from_maps
    done = (run.results().get("ablation") or {}).get("variants") or {}
    names = []
    for use_crf in crf:
        if use_crf and not crf_available():
            log("  skipping the CRF variants: the [crf] extra is not installed")
            continue
        for mult in lr_mults:
            name = f"amn<{from_maps}> crf={'on' if use_crf else 'off'} lr x{mult:g}"
            names.append(name)
            if name in done:
                continue
            cfg = run.cfg.amn.model_copy(update={"crf": use_crf, "lr_backbone": AMN_OFFICIAL_LR[0] * mult,
                                                 "lr_head": AMN_OFFICIAL_LR[1] * mult, "from_maps": from_maps})
            ckpt = run.path / "ablate" / f"amn_{from_maps}_crf{int(use_crf)}_lr{mult:g}.pt"
            if not ckpt.exists():
                produce.ensure(run, from_maps, (run.cfg.train_split,), progress)
                amn.train(run, from_maps, progress=progress, amn_cfg=cfg, out=ckpt)
            loc = amn.localizer(run, checkpoint=ckpt, from_maps=from_maps, amn_cfg=cfg)
            v = Variant(name, "amn", {"crf": use_crf, "lr_mult": mult, "from_maps": from_maps})
            done[name] = score_variant(run, v, progress, loc=loc)
            _record(run, "variants", name, value=done[name])
    _set_table(run, f"AMN: CRF labels x learning rate (labels from {from_maps}; chosen on tune)", "variants", names,
               f"wsss ablate --run {run.path} --amn-grid")
    return {n: done[n] for n in names}


def normalization_grid(run: Run, methods: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """Every stored method of the run scored with both map normalizations (``max``; ``p99`` clipped to 1), t
    chosen on tune as always: does the normalization, rather than the map, decide a comparison?"""
    methods = methods or tuple(m for m in run.results().get("methods", {}) if "+" not in m)
    names: list[str] = []
    out: dict[str, Any] = {}
    for method in methods:
        src = run.maps_dir(method)
        if not src.is_dir():
            continue
        for norm in ("max", "p99"):
            name = f"{method} norm={norm}"
            v = {"method": method, "normalization": norm, "default": run.cfg.pseudo.norm_for(method) == norm,
                 **StudyEntry.from_method(_score_dir(run, src, norm, safe_name(name), False)).model_dump()}
            _record(run, "variants", name, value=v)
            names.append(name)
            out[name] = v
            log(f"  {name:<32} tune {_pct(v['tune_miou'])}  {run.cfg.score_split}@t {_pct(v['miou'])}")
    _set_table(run, "Map normalization: max vs p99 (t chosen on tune)", "variants", names,
               f"wsss ablate --run {run.path} --norm-grid")
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"
