"""The jigsaw study (``wsss ablate``): variants of our method and its baselines, each scored like a method.

Every variant writes its maps to ``RUN/maps/ablate/<variant>/`` and its scores to
``results.json["ablation"]["variants"][<variant>]``; tables (for the report) go to
``results.json["ablation"]["tables"]``. Defaults are chosen on the tune split (``tune`` entry of each
variant); the score split is reported.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from wsss import localize
from wsss.pipeline import Run, load_cls, log, train_cls
from wsss.runtime import resolve_device


# (variant name, method, options, classifier)
def study_variants(samples: int = 16) -> dict[str, list[tuple[str, str, dict, str]]]:
    j = {"samples": samples}
    return {
        "samples N": [(f"jigsaw N={n}", "jigsaw", {"samples": n}, "plain") for n in (1, 4, 8, 16, 32)],
        "grid schedule": [
            (f"jigsaw grids={g}", "jigsaw", {**j, "grids": g}, "plain")
            # coarse (patches >= the effective receptive field) to fine (8 px patches at 128 px, well inside it)
            for g in ((2,), (3,), (4,), (2, 3, 4), (4, 6, 8), (8,), (16,), (8, 12, 16))
        ],
        "options": [
            ("jigsaw no offsets", "jigsaw", {**j, "offsets": False}, "plain"),
            ("jigsaw prob weighting", "jigsaw", {**j, "weighting": "prob"}, "plain"),
            ("jigsaw grad x input", "jigsaw", {**j, "reduction": "gradxinput"}, "plain"),
            ("jigsaw L2", "jigsaw", {**j, "reduction": "l2"}, "plain"),
            ("jigsaw smooth 2px", "jigsaw", {**j, "smooth_sigma": 2.0}, "plain"),
            ("jigsaw + intact", "jigsaw", {**j, "include_intact": True}, "plain"),
        ],
        "2x2 classifier x maps": [
            (f"{m}@{c}", m, ({**j} if m in ("jigsaw", "smoothgrad", "cropsal") else {}), c)
            for c in ("plain", "jigsaw-aug")
            for m in ("cam", "gradcam", "saliency", "smoothgrad", "cropsal", "jigsaw")
        ],
        "CAM-seeded region filled by": [
            (
                f"region + {f}",
                "jigsaw-cam",
                {"filler": f, **({"samples": samples} if f in ("jigsaw", "smoothgrad", "cropsal") else {})},
                "plain",
            )
            for f in ("saliency", "smoothgrad", "cropsal", "jigsaw")
        ]
        + [
            (
                "region + grad x input",
                "jigsaw-cam",
                {"filler": "saliency", "reduction": "gradxinput"},
                "plain",
            ),
            (
                "region + jigsaw fine grids",
                "jigsaw-cam",
                {"filler": "jigsaw", "samples": samples, "grids": (8, 12)},
                "plain",
            ),
            ("region + CAM (control)", "jigsaw-cam", {"filler": "cam"}, "plain"),
        ],
        "randomized weights (sanity)": [
            (f"{m}@random", m, ({**j} if m == "jigsaw" else {}), "random")
            for m in ("cam", "saliency", "jigsaw")
        ],
    }


def effective_receptive_field(model: torch.nn.Module, size: int = 96, device="cpu") -> dict:
    """Gradient of the centre feature cell (summed over channels) w.r.t. a random input: the radius (px)
    holding 95 % of the absolute gradient mass around the centre, and the theoretical extent."""
    model = model.to(device).eval()
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    feats = model.features(x)
    h, w = feats.shape[-2:]
    (g,) = torch.autograd.grad(feats[0, :, h // 2, w // 2].sum(), x)
    mass = g.abs().sum(1)[0]
    cy = cx = (size - 1) / 2
    yy, xx = torch.meshgrid(
        torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij"
    )
    r = torch.maximum((yy - cy).abs(), (xx - cx).abs())
    order = torch.argsort(r.flatten())
    cum = torch.cumsum(mass.flatten()[order], 0) / mass.sum().clamp_min(1e-12)
    r95 = float(r.flatten()[order][torch.searchsorted(cum, torch.tensor(0.95, device=device))])
    support = r.flatten()[mass.flatten() > 1e-8 * mass.max()]
    return {
        "effective_radius95_px": r95,
        "theoretical_radius_px": float(support.max()) if support.numel() else 0.0,
        "stride": int(getattr(model, "stride", 0)),
        "input": size,
    }


def run_ablation(
    run: Run,
    groups: list[str] | None = None,
    samples: int = 16,
    jigsaw_aug: float = 0.5,
    progress: bool = True,
) -> dict:
    variants = study_variants(samples)
    groups = groups or list(variants)
    unknown = [g for g in groups if g not in variants]
    if unknown:
        from wsss.errors import ConfigError

        raise ConfigError(f"unknown study group(s) {unknown}; available: {list(variants)}")
    needs = {c for g in groups for *_, c in variants[g]}
    if "jigsaw-aug" in needs and not run.classifier_path("jigsaw-aug").exists():
        log(f"training the jigsaw-augmented classifier (P = {jigsaw_aug})")
        train_cls(run, name="jigsaw-aug", jigsaw_aug=jigsaw_aug, progress=progress)
    device = resolve_device(run.cfg.device)
    rf = effective_receptive_field(load_cls(run), size=_side(run), device=device)
    run.update_results("ablation", "receptive_field", value=rf)
    log(
        f"effective receptive field (95% mass) radius {rf['effective_radius95_px']:.0f} px, "
        f"theoretical {rf['theoretical_radius_px']:.0f} px, stride {rf['stride']}"
    )
    done = run.results().get("ablation", {}).get("variants", {})
    tables = []
    for group in groups:
        rows = []
        for name, method, opts, clf in variants[group]:
            if name not in done:
                done[name] = _score_variant(
                    run, name, method, opts, clf, device, progress
                )
                run.update_results("ablation", "variants", name, value=done[name])
            v = done[name]
            rows.append(
                [
                    name,
                    f"{v['tune_miou'] * 100:.1f}",
                    f"{v['fixed_t']:.2f}",
                    f"{v['miou'] * 100:.1f}",
                    f"{v['best_miou'] * 100:.1f}",
                    f"{v['precision'] * 100:.1f}",
                    f"{v['recall'] * 100:.1f}",
                    "-" if v["ndr_recall"] is None else f"{v['ndr_recall'] * 100:.1f}",
                    f"{v['seconds_per_image']:.3f}",
                ]
            )
        tables.append(
            {
                "title": group,
                "columns": [
                    "variant",
                    "tune mIoU",
                    "t (tune)",
                    "mIoU@t",
                    "best",
                    "prec",
                    "rec",
                    "NDR rec",
                    "s/img",
                ],
                "rows": rows,
                "command": f"wsss ablate --run {run.path} --group '{group}'",
            }
        )
        run.update_results(
            "ablation",
            "tables",
            value=_merge_tables(run.results().get("ablation", {}).get("tables", []), tables),
        )
    return run.results()["ablation"]


def _merge_tables(old: list, new: list) -> list:
    titles = {t["title"] for t in new}
    return [t for t in old if t["title"] not in titles] + new


def _side(run: Run) -> int:
    ds = run.dataset(run.cfg.score_split)
    return int(ds.image(ds.ids[0]).shape[0])


def _variant_localizer(run: Run, method: str, opts: dict, clf: str, device):
    if clf == "random":
        from wsss.train.classifier import load_classifier

        model = load_classifier(run.classifier_path("plain"), device)
        torch.manual_seed(run.cfg.seed)
        for m in model.modules():  # Adebayo et al. 2018: re-initialize every layer
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    else:
        model = load_cls(run, clf)
    return localize.create(
        method, model, **({"seed": run.cfg.seed} if method not in ("cam", "gradcam") else {}), **opts
    )


def _safe(name: str) -> str:
    """A study variant's name as a folder name (``RUN/maps/ablate/<safe>``)."""
    return "".join(ch if ch.isalnum() or ch in "-_=." else "_" for ch in name)


def _filler_dir(run: Run, filler: str):
    """Stored maps of a method (``RUN/maps/<filler>``) or of a study variant (``RUN/maps/ablate/<safe>``)."""
    own = run.maps_dir(filler)
    return own if own.is_dir() else run.path / "maps" / "ablate" / _safe(filler)


def _effective_options(method: str, opts: dict) -> dict:
    """The localizer's keyword defaults updated by ``opts`` (tuples as lists; the seed left out)."""
    import functools
    import inspect

    factory = localize._LOCALIZERS[method]
    fixed = {}
    if isinstance(factory, functools.partial):
        factory, fixed = factory.func, dict(factory.keywords)
    out: dict = {}
    for klass in reversed(factory.__mro__):  # base-class defaults first, overridden by subclasses
        if "__init__" in vars(klass) and klass is not object:
            for k, p in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD:
                    out[k] = p.default
    out.update(fixed)
    out.update(opts)
    if out.get("samples", 0) is None:
        out["samples"] = getattr(factory, "default_samples", 1)
    for k in ("seed", "chunk_size"):  # neither changes the maps (chunked == unchunked is tested)
        out.pop(k, None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _same_as_run_method(run: Run, method: str, opts: dict, clf: str, ids: list[str]) -> bool:
    """Whether a study variant is exactly the run's own ``method`` (plain classifier, same effective
    options, maps for every id stored), so its stored maps can be scored instead of recomputed."""
    from wsss.pipeline import method_options

    if clf != "plain" or method not in localize.available() or not run.maps_dir(method).is_dir():
        return False
    if _effective_options(method, opts) != _effective_options(method, method_options(run, method)):
        return False
    return all((run.maps_dir(method) / f"{i}.npz").exists() for i in ids)


def _scores(summary: dict) -> dict:
    """The fields every study entry records from a :func:`wsss.scoring.score_method` summary (t chosen on
    tune; ``tune_miou`` is None without a tune split)."""
    return {
        "tune_miou": summary["tune"]["best"]["miou"] if summary["tune"] else None,
        "fixed_t": summary["fixed"]["t"],
        "miou": summary["fixed"]["miou"],
        "best_miou": summary["best"]["miou"],
        "precision": summary["fixed"]["precision"],
        "recall": summary["fixed"]["recall"],
        "ndr_recall": summary["ndr_recall"],
        "ap": summary["ap"],
        "robust_width": summary["robust_width"],
    }


def _score_variant(run, name, method, opts, clf, device, progress, loc=None) -> dict:
    from wsss.data.transforms import to_tensor
    from wsss.mapsio import save_maps
    from wsss.scoring import score_method

    safe = _safe(name)
    ids = [(s, i) for s in (run.cfg.score_split, run.cfg.tune_split) for i in run.dataset(s).ids]
    maps_dir = run.path / "maps" / "ablate" / safe
    spi = None
    if loc is None and _same_as_run_method(run, method, opts, clf, [i for _, i in ids]):
        maps_dir = run.maps_dir(method)  # this variant is the run's own method: score its stored maps
        spi = run.results().get("methods", {}).get(method, {}).get("seconds_per_image")
        log(f"  {name}: the run's {method} maps (same options)")
    maps_dir.mkdir(parents=True, exist_ok=True)
    t0, n = time.time(), 0
    for split, image_id in ids:
        path = maps_dir / f"{image_id}.npz"
        if path.exists():
            continue
        if loc is None:
            loc = _variant_localizer(run, method, opts, clf, device)
        ds = run.dataset(split)
        x = to_tensor(ds.image(image_id))[None].to(device)
        y = torch.from_numpy(ds.labels(image_id))[None].to(device)
        maps = loc.attribute(x, y, ids=[image_id])[0].cpu().numpy()
        cls = torch.nonzero(y[0]).flatten().cpu().numpy()
        save_maps(path, maps[cls], cls + 1)
        n += 1
    if n:
        spi = (time.time() - t0) / n
    norm = run.cfg.pseudo.norm_for(method)
    summ = score_method(
        run,
        maps_dir,
        norm,
        masks_dir=run.path / "masks" / "ablate" / safe,
        reference_dir=run.maps_dir("cam") if run.maps_dir("cam").is_dir() else None,
        progress=progress,
    )
    out = {
        "method": method,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
        "classifier": clf,
        **_scores(summ),
        "seconds_per_image": spi,
    }
    log(
        f"  {name:<32} tune {out['tune_miou'] * 100:.1f}  train@t {out['miou'] * 100:.1f}  "
        f"P {out['precision'] * 100:.1f} R {out['recall'] * 100:.1f}"
    )
    return out


def region_grid(run: Run, fillers: tuple[str, ...] = ("jigsaw", "saliency", "smoothgrad", "cropsal"),
                thresholds: tuple[float, ...] = (0.3, 0.5, 0.7), dilations: tuple[int, ...] = (4, 10, 16, 24),
                progress: bool = True) -> dict:
    """The CAM-seeded region (``jigsaw-cam``) as a grid over seed threshold x dilation, for each filler map
    already in the run (``RUN/maps/<filler>``), built offline from the stored CAM and filler maps (the
    filler does not depend on the region, so nothing is recomputed). The setting is chosen on the tune
    split per filler; the table reports the score split at that setting."""
    from wsss.localize.jigsaw import region_from_cam
    from wsss.mapsio import load_maps, save_maps
    from wsss.scoring import score_method

    cam_dir = run.maps_dir("cam")
    ids = [i for s in (run.cfg.score_split, run.cfg.tune_split) for i in run.dataset(s).ids]
    rows, chosen = [], {}
    for filler in fillers:
        src = _filler_dir(run, filler)
        if not src.is_dir():
            continue
        best = None
        for thr in thresholds:
            for dil in dilations:
                name = f"region({filler}) thr={thr} dil={dil}"
                out_dir = run.path / "maps" / "ablate" / f"region_{_safe(filler)}_{thr}_{dil}"
                out_dir.mkdir(parents=True, exist_ok=True)
                for image_id in ids:
                    path = out_dir / f"{image_id}.npz"
                    if path.exists():
                        continue
                    cam, classes = load_maps(cam_dir / f"{image_id}.npz")
                    fill, _ = load_maps(src / f"{image_id}.npz")
                    region = region_from_cam(torch.from_numpy(cam)[None], thr, dil)[0].numpy()
                    scale = np.maximum(np.quantile(fill.reshape(len(fill), -1), 0.99, axis=1), 1e-12)[:, None, None]
                    save_maps(path, np.minimum(fill / scale, 1.0) * region, classes)
                summ = score_method(run, out_dir, "max", masks_dir=run.path / "masks" / "ablate" / out_dir.name,
                                    reference_dir=cam_dir, progress=False)
                v = {"filler": filler, "seed_threshold": thr, "dilation": dil, **_scores(summ)}
                run.update_results("ablation", "region_grid", name, value=v)
                if best is None or v["tune_miou"] > best[1]["tune_miou"]:
                    best = (name, v)
        chosen[filler] = best
        name, v = best
        rows.append([filler, f"{v['seed_threshold']:.2f}", str(v["dilation"]), f"{v['tune_miou'] * 100:.1f}",
                     f"{v['fixed_t']:.2f}", f"{v['miou'] * 100:.1f}", f"{v['precision'] * 100:.1f}",
                     f"{v['recall'] * 100:.1f}", "-" if v["ndr_recall"] is None else f"{v['ndr_recall'] * 100:.1f}"])
        log(f"  region({filler}): chosen on tune thr={v['seed_threshold']} dil={v['dilation']} "
            f"(tune {v['tune_miou'] * 100:.1f}) -> {run.cfg.score_split} {v['miou'] * 100:.1f}")
    table = {"title": "CAM-seeded region: seed threshold x dilation chosen on tune, per filler",
             "columns": ["filler", "seed thr", "dilation", "tune mIoU", "t (tune)", "mIoU@t", "prec", "rec", "NDR rec"],
             "rows": rows, "command": f"wsss ablate --run {run.path} --region-grid"}
    run.update_results("ablation", "tables",
                       value=_merge_tables(run.results().get("ablation", {}).get("tables", []), [table]))
    return chosen


def fusion_label(v: dict) -> str:
    """``geo(CAM, jigsaw)`` / ``geo(cam@jigsaw-aug, jigsaw@jigsaw-aug)`` for a fusion-grid entry."""
    base = v.get("base", "cam")
    return f"{v['fusion']}({'CAM' if base == 'cam' else base}, {v['filler']})"


FUSIONS = {
    "max": lambda c, g: np.maximum(c, g),
    "mean": lambda c, g: (c + g) / 2,
    "geo": lambda c, g: np.sqrt(c * g),
    "cam-weighted": lambda c, g: c * (0.5 + 0.5 * g),
}


def fusion_grid(run: Run, fillers: tuple[str, ...] = ("jigsaw", "saliency", "smoothgrad", "cropsal"),
                modes: tuple[str, ...] = tuple(FUSIONS), base: str = "cam", progress: bool = True) -> dict:
    """Fusions of the normalized CAM (max) with each stored gradient map (p99, clipped to 1), built offline
    from ``RUN/maps``; each scored like a method (t chosen on tune). ``geo`` is what ``jigsaw-cam`` does.
    ``base``: the CAM to fuse with (default the run's ``cam``; e.g. the study variant ``cam@jigsaw-aug``),
    fillers and base may be methods of the run or study variants."""
    from wsss.mapsio import load_maps, save_maps
    from wsss.pseudo import normalize_maps
    from wsss.scoring import score_method

    cam_dir = _filler_dir(run, base)
    if not cam_dir.is_dir():
        from wsss.errors import ConfigError

        raise ConfigError(f"fusion base {base!r}: no stored maps in {run.path / 'maps'}")
    tag = "" if base == "cam" else f"[{base}]"
    ids = [i for s in (run.cfg.score_split, run.cfg.tune_split) for i in run.dataset(s).ids]
    for filler in fillers:
        src = _filler_dir(run, filler)
        if not src.is_dir():
            continue
        for mode in modes:
            out_dir = run.path / "maps" / "ablate" / f"fusion_{mode}{_safe(tag)}_{_safe(filler)}"
            out_dir.mkdir(parents=True, exist_ok=True)
            for image_id in ids:
                path = out_dir / f"{image_id}.npz"
                if not path.exists():
                    cam, classes = load_maps(cam_dir / f"{image_id}.npz")
                    grad, _ = load_maps(src / f"{image_id}.npz")
                    save_maps(path, FUSIONS[mode](normalize_maps(cam, "max"), normalize_maps(grad, "p99")), classes)
            s = score_method(run, out_dir, "max", masks_dir=run.path / "masks" / "ablate" / out_dir.name,
                             reference_dir=run.maps_dir("cam"), progress=False)
            v = {"base": base, "filler": filler, "fusion": mode, **_scores(s)}
            run.update_results("ablation", "fusion_grid", f"{mode}{tag}({filler})", value=v)
            log(f"  {fusion_label(v)}: tune {v['tune_miou'] * 100:.1f} -> {run.cfg.score_split} "
                f"{v['miou'] * 100:.1f} (P {v['precision'] * 100:.1f} R {v['recall'] * 100:.1f})")
    rows = [[fusion_label(v), f"{v['tune_miou'] * 100:.1f}", f"{v['fixed_t']:.2f}", f"{v['miou'] * 100:.1f}",
             f"{v['precision'] * 100:.1f}", f"{v['recall'] * 100:.1f}",
             "-" if v["ndr_recall"] is None else f"{v['ndr_recall'] * 100:.1f}"]
            for v in run.results().get("ablation", {}).get("fusion_grid", {}).values()]
    table = {"title": "CAM fused with a gradient map (normalized maps; t chosen on tune)",
             "columns": ["fusion", "tune mIoU", "t (tune)", "mIoU@t", "prec", "rec", "NDR rec"], "rows": rows,
             "command": f"wsss ablate --run {run.path} --fusion-grid [--filler NAME] [--fusion-base NAME]"}
    run.update_results("ablation", "tables",
                       value=_merge_tables(run.results().get("ablation", {}).get("tables", []), [table]))
    return run.results()["ablation"]["fusion_grid"]


AMN_OFFICIAL_LR = (5e-6, 1e-4)  # backbone, head (Adam), as in the official code


def amn_grid(run: Run, crf: tuple = (False, True), lr_mults: tuple[float, ...] = (1.0, 10.0, 30.0),
             from_maps: str | None = None, progress: bool = True) -> dict:
    """AMN's training labels and schedule on this data: dense-CRF labels (IRN) on/off x the official learning
    rates (backbone 5e-6, head 1e-4) scaled by each of ``lr_mults``, every variant trained on ``from_maps``
    (default: the config's), scored like a method (t chosen on tune). Checkpoints go to ``RUN/ablate/``; the
    benchmark defaults of ``amn`` (``AMNConfig``) were chosen from this table's tune column."""
    from wsss.crf import crf_available
    from wsss.pipeline import amn_localizer, train_amn

    from_maps = from_maps or run.cfg.amn.from_maps
    base = run.cfg.amn
    device = resolve_device(run.cfg.device)
    done = run.results().get("ablation", {}).get("variants", {})
    rows = []
    for use_crf in crf:
        if use_crf and not crf_available():
            log("  skipping the CRF variants: the [crf] extra is not installed")
            continue
        for mult in lr_mults:
            name = f"amn<{from_maps}> crf={'on' if use_crf else 'off'} lr x{mult:g}"
            cfg = base.model_copy(update={"crf": use_crf, "lr_backbone": AMN_OFFICIAL_LR[0] * mult,
                                          "lr_head": AMN_OFFICIAL_LR[1] * mult, "from_maps": from_maps})
            if name not in done:
                safe = f"amn_{from_maps}_crf{int(use_crf)}_lr{mult:g}"
                ckpt = run.path / "ablate" / f"{safe}.pt"
                if not ckpt.exists():
                    train_amn(run, from_maps, progress=progress, amn_cfg=cfg, out=ckpt)
                loc = amn_localizer(run, ckpt, from_maps, amn_cfg=cfg)
                v = _score_variant(run, name, "amn", {"crf": use_crf, "lr_mult": mult, "from_maps": from_maps},
                                   "plain", device, progress, loc=loc)
                done[name] = v
                run.update_results("ablation", "variants", name, value=v)
            v = done[name]
            rows.append([name, f"{v['tune_miou'] * 100:.1f}", f"{v['fixed_t']:.2f}", f"{v['miou'] * 100:.1f}",
                         f"{v['best_miou'] * 100:.1f}", f"{v['precision'] * 100:.1f}", f"{v['recall'] * 100:.1f}",
                         f"{v['robust_width']:.2f}"])
    table = {"title": f"AMN: CRF labels x learning rate (labels from {from_maps}; chosen on tune)",
             "columns": ["variant", "tune mIoU", "t (tune)", "mIoU@t", "best", "prec", "rec", "robust width"],
             "rows": rows, "command": f"wsss ablate --run {run.path} --amn-grid"}
    run.update_results("ablation", "tables",
                       value=_merge_tables(run.results().get("ablation", {}).get("tables", []), [table]))
    return {r[0]: done[r[0]] for r in rows}


def normalization_grid(run: Run, methods: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """Every stored method of the run scored with both map normalizations (``max``: divide by the class
    maximum; ``p99``: by the 99th percentile, clipped to 1), t chosen on tune as always: does the
    normalization, rather than the map, decide a comparison? Nothing is recomputed."""
    from wsss.scoring import score_method

    methods = methods or tuple(m for m in run.results().get("methods", {}) if "+" not in m)
    rows = []
    for method in methods:
        src = run.maps_dir(method)
        if not src.is_dir():
            continue
        for norm in ("max", "p99"):
            name = f"{method} norm={norm}"
            s = score_method(run, src, norm, masks_dir=run.path / "masks" / "ablate" / _safe(name),
                             reference_dir=run.maps_dir("cam"), progress=False)
            v = {"method": method, "normalization": norm, "default": run.cfg.pseudo.norm_for(method) == norm,
                 **_scores(s)}
            run.update_results("ablation", "variants", name, value=v)
            rows.append([name + (" (default)" if v["default"] else ""), f"{v['tune_miou'] * 100:.1f}",
                         f"{v['fixed_t']:.2f}", f"{v['miou'] * 100:.1f}", f"{v['precision'] * 100:.1f}",
                         f"{v['recall'] * 100:.1f}", f"{v['robust_width']:.2f}"])
            log(f"  {name:<32} tune {v['tune_miou'] * 100:.1f}  train@t {v['miou'] * 100:.1f}")
    table = {"title": "Map normalization: max vs p99 (t chosen on tune)",
             "columns": ["method, normalization", "tune mIoU", "t (tune)", "mIoU@t", "prec", "rec", "robust width"],
             "rows": rows, "command": f"wsss ablate --run {run.path} --norm-grid"}
    run.update_results("ablation", "tables",
                       value=_merge_tables(run.results().get("ablation", {}).get("tables", []), [table]))
    return {r[0]: r for r in rows}
