"""The run report: ``RUN/results.json`` (+ maps, masks, dataset) -> ``RUN/report.md`` + ``RUN/figures/``.

Every section renders from whatever the run holds: a missing key gives a one-line note, never an error.
Scores in results.json are fractions; tables show percent with one decimal.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from wsss.errors import WsssError
from wsss.report.tables import DASH, bad, cell, md_table, num, pct, secs, study_table
from wsss.results import ResultKey

OVERLAY_IMAGES = 4
OVERLAY_METHODS = 8
FIGURES = ("threshold_sweep.png", "precision_recall.png", "activation_hist.png", "overlays.png",
           "cost_quality.png", "cost_quality_study.png")

METHOD_NOTES = (
    "*best mIoU* picks t on the scored split itself, so it is optimistic. Precision and recall are "
    "class-aware foreground precision/recall at the fixed t. *robust width*: width of the t range with mIoU "
    "≥ 95% of the best. *spread*: max − min mIoU (points) over t ∈ [0.1, 0.5]. *AP* and *oracle-t mIoU* "
    "(best t per image) are threshold-free: they measure map quality apart from the threshold choice. "
    "*NDR recall*: share of the object pixels outside the plain classifier's CAM ≥ 0.5 region that the "
    "fixed-t mask labels correctly."
)
ROBUSTNESS_NOTES = (
    "mIoU, foreground precision and recall of the pseudo-masks on `{split}` as the background threshold t "
    "moves; a flat curve means the method does not depend on a well-chosen t."
)
HIST_NOTES = (
    "Density of the normalized map values (each method's normalization, listed above) on ground-truth "
    "object pixels of the image's classes and on background pixels. Two well-separated modes make the "
    "pseudo-mask insensitive to t; activation piled near 0 inside objects is what a global threshold cuts "
    "away."
)
OVERLAY_NOTES = (
    "The first images of `{split}`: image, ground truth, then per method its normalized map (max over the "
    "image's classes, over the image) and its pseudo-mask at the fixed t (columns without files are left "
    "out)."
)


def _maps_key(key: str) -> str:
    return ResultKey.parse(key).maps_key


def _headline(key: str) -> bool:
    """Whether a result key goes into the activation-distribution panel: a headline method, no post step."""
    from wsss.localize import spec

    rk = ResultKey.parse(key)
    try:
        return spec(rk.method).headline and not rk.post
    except WsssError:  # a method of an uninstalled plugin: no panel
        return False


def _fixed_miou(m: dict) -> float:
    v = (m.get("fixed") or {}).get("miou")
    return -1.0 if bad(v) else v


# ---- sections ----------------------------------------------------------------------------------------------
def _synth_line(data: str) -> str:
    from wsss.data.synth import describe

    text = describe(data) if data else None
    return f"; {text}" if text else ""


def _split_line(run, role: str, split: str) -> str:
    if not split:
        return f"- {role}: {DASH}"
    try:
        n = len(run.dataset(split).ids)
        n = f" ({n} image{'s' if n != 1 else ''})"
    except (WsssError, OSError):
        n = ""
    return f"- {role}: `{split}`{n}"


def _device(run) -> str:
    dev = run.cfg.device
    for p in sorted((run.path / "maps").glob("*/_timing.rank0.json")):
        try:
            import json

            used = json.loads(p.read_text()).get("device")
        except (OSError, ValueError):
            continue
        if used:
            return f"{dev} (maps computed on {used})" if used != dev else dev
    return dev


def header(run) -> str:
    cfg = run.cfg
    return "\n".join([
        f"# WSSS run report: `{run.path.name}`",
        "",
        f"- run directory: `{run.path}`",
        f"- dataset: `{cfg.data}` ({cfg.format} layout{_synth_line(cfg.data)})",
        _split_line(run, "classifier trained on", cfg.train_split),
        _split_line(run, "pseudo-masks scored on (score split)", cfg.score_split),
        _split_line(run, "threshold chosen on (tune split)", cfg.tune_split),
        _split_line(run, "segmenter scored on (val split)", cfg.val_split),
        f"- seed: {cfg.seed}; device: {_device(run)}; profile: {'quick' if cfg.quick else 'full'}",
        "",
        f"Regenerate this report: `wsss report --run {run.path}`",
    ])


def classifiers(res: dict) -> str:
    clf = res.get("classifiers") or {}
    out = ["## Classifiers", ""]
    if not clf:
        out.append("No classifier results.")
    else:
        rows = [[name, c.get("arch", DASH), c.get("recipe", "plain"), pct(c.get("jigsaw_aug")), pct(c.get("val_map")),
                 secs(c.get("seconds"))] for name, c in clf.items()]
        out.append(md_table(["classifier", "arch", "recipe", "jigsaw-aug (% images)", "val mAP", "seconds"], rows))
    out += _scalars("AMN training", res.get("amn"))
    return "\n".join(out)


def _scalars(title: str, d) -> list[str]:
    """A free-form dict as a bullet list of its scalar entries."""
    if not isinstance(d, dict) or not d:
        return []
    items = [f"- {k}: {cell(v)}" for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None]
    return ["", f"**{title}**", "", *items] if items else []


def method_table(run, methods: dict, order: list[str]) -> str:
    tune = run.cfg.tune_split or "tune"
    score = run.cfg.score_split
    out = ["## Pseudo-masks", ""]
    if not methods:
        return "\n".join(out + ["No method results (run `wsss pseudo`)."])
    rows = []
    for k in order:
        m = methods[k]
        fixed, best = m.get("fixed") or {}, m.get("best") or {}
        chosen = fixed.get("chosen_on")
        t = num(fixed.get("t"))
        if chosen and chosen != tune and t != DASH:
            t += f" ({chosen})"
        rows.append([k, t, pct(fixed.get("miou")), pct(fixed.get("precision")), pct(fixed.get("recall")),
                     f"{pct(best.get('miou'))} ({num(best.get('t'))})" if best else DASH,
                     num(m.get("robust_width")), pct(m.get("spread_0.1_0.5")), pct(m.get("ap")),
                     pct(m.get("oracle_miou")), pct(m.get("ndr_recall")), secs(m.get("seconds_per_image"))])
    cols = ["method", f"fixed t (chosen on {tune})", "mIoU@fixed", "precision", "recall", "best mIoU (t)",
            "robust width", "spread t∈[0.1,0.5]", "AP", "oracle-t mIoU", "NDR recall", "s/image"]
    norms = ", ".join(f"{k}: {methods[k]['normalization']}" for k in order if methods[k].get("normalization"))
    out += [
        md_table(cols, rows),
        "",
        f"**mIoU@fixed is the honest number**: its threshold t was chosen on the tune split `{tune}` and "
        f"the masks were scored on the score split `{score}`. " + METHOD_NOTES,
    ]
    if norms:
        out += ["", f"Map normalization per method: {norms}."]
    return "\n".join(out)


def per_class_table(run, methods: dict, order: list[str]) -> str:
    keys = [k for k in order if methods[k].get("per_class_iou")]
    if not keys:
        return ""
    try:
        names = list(run.dataset(run.cfg.score_split).classes)
    except (WsssError, OSError):
        names = []
    ids = sorted({int(c) for k in keys for c in methods[k]["per_class_iou"]})
    rows = [[names[c] if c < len(names) else str(c),
             *(pct(methods[k]["per_class_iou"].get(str(c))) for k in keys)]
            for c in ids]
    return "\n".join(["### Per-class IoU at the fixed t", "", md_table(["class", *keys], rows)])


def _section(title: str, prose: str, body: str) -> str:
    return f"## {title}\n\n{prose}\n\n{body}" if body else ""


def _figure(fig_dir: Path, name: str, fn, *args, alt: str) -> str:
    """Draw one figure; the markdown that references it (relative path), or a note why there is none."""
    try:
        path = fn(*args, fig_dir / name)
    except (WsssError, OSError, ValueError) as exc:
        return f"*({alt}: figure not drawn: {exc})*"
    return f"![{alt}](figures/{name})" if path else ""


def _overlay_data(run, methods: dict, order: list[str]) -> tuple[list[dict], list[str]]:
    from wsss.labelio import load_label_png
    from wsss.mapsio import load_maps
    from wsss.pseudo import normalize_maps

    ds = run.dataset(run.cfg.score_split)
    keys = order[:OVERLAY_METHODS]
    ids = list(ds.ids)[:OVERLAY_IMAGES]
    columns, sources = ["image", "ground truth"], []
    for k in keys:
        mdir, kdir = run.maps_dir(_maps_key(k)), run.masks_dir(k)
        if not ResultKey.parse(k).post and any((mdir / f"{i}.npz").exists() for i in ids):
            norm = (methods.get(k) or {}).get("normalization") or run.cfg.pseudo.norm_for(k)
            sources.append((f"{k} map", "map", mdir, norm))
        if any((kdir / f"{i}.png").exists() for i in ids):
            sources.append((f"{k} mask", "mask", kdir, None))
    if not sources:
        return [], []
    columns += [s[0] for s in sources]
    rows = []
    for i in ids:
        image = ds.image(i)
        cells = {"_id": i, "image": ("image", image), "ground truth": ("mask", ds.mask(i))}
        for title, kind, folder, norm in sources:
            if kind == "map" and (folder / f"{i}.npz").exists():
                maps, _ = load_maps(folder / f"{i}.npz")
                nm = np.asarray(normalize_maps(maps, norm))
                heat = nm.max(axis=0) if len(nm) else np.zeros(image.shape[:2], np.float32)
                cells[title] = ("map", (image, heat))
            elif kind == "mask" and (folder / f"{i}.png").exists():
                cells[title] = ("mask", load_label_png(folder / f"{i}.png"))
        rows.append(cells)
    return rows, columns


def cost_points(res: dict, order: list[str]) -> list[dict]:
    methods, seg = res.get("methods") or {}, res.get("segmentation") or {}
    pts = [{"key": k, "spi": methods[k].get("seconds_per_image"),
            "miou": (methods[k].get("fixed") or {}).get("miou"), "seg": (seg.get(k) or {}).get("val_miou")}
           for k in order]
    ok = [p for p in pts if not bad(p["spi"]) and not bad(p["miou"])]
    for p in ok:  # Pareto frontier: nothing at most as costly is better
        p["frontier"] = not any(q is not p and q["spi"] <= p["spi"] and q["miou"] > p["miou"] for q in ok)
    return pts


def cost_section(res: dict, order: list[str], fig_dir: Path, figures) -> str:
    pts = cost_points(res, order)
    if not pts:
        return ""
    pts.sort(key=lambda p: (math.inf if bad(p["spi"]) else p["spi"]))
    rows = [[p["key"], secs(p["spi"]), pct(p["miou"]), pct(p["seg"]), "✓" if p.get("frontier") else ""]
            for p in pts]
    return "\n".join([
        "## Cost vs quality", "",
        "Seconds per image to compute the maps (+ CRF where named), on this run's machine; the frontier "
        "marks methods that no cheaper-or-equal method beats on mIoU@fixed.", "",
        _figure(fig_dir, "cost_quality.png", figures.cost_quality, pts, alt="mIoU vs seconds per image"), "",
        md_table(["method", "s/image", "mIoU@fixed", "segmenter val mIoU", "frontier"], rows),
    ])


def segmentation(res: dict) -> str:
    seg = res.get("segmentation") or {}
    if not seg:
        return ""
    gt = (seg.get("gt") or {}).get("val_miou")
    keys = sorted((k for k in seg if k != "gt"), key=lambda k: -(seg[k].get("val_miou") or -1.0))
    def ratio(v):
        return DASH if bad(gt) or not gt or bad(v) else f"{100 * v / gt:.1f}%"

    rows = [[k, pct(seg[k].get("val_miou")), ratio(seg[k].get("val_miou")), secs(seg[k].get("seconds"))]
            for k in keys]
    if "gt" in seg:
        rows.append(["gt (fully supervised bound)", pct(gt), ratio(gt), secs(seg["gt"].get("seconds"))])
    return "\n".join([
        "## Segmentation", "",
        "A segmenter trained on each method's pseudo-masks of the training split, scored on the val split; "
        "`gt` is the same network and budget trained on the true masks.", "",
        md_table(["masks", "val mIoU", "ratio to gt", "seconds"], rows),
    ])


def study_cost_points(res: dict) -> list[dict]:
    """Every ablation variant with a measured cost (each N, grid, option, classifier ...) and every method,
    for the study's mIoU-vs-seconds plot; the frontier as in :func:`cost_points`."""
    abl = (res.get("ablation") or {}).get("variants") or {}
    pts = [{"key": k, "spi": v.get("seconds_per_image"), "miou": v.get("miou"), "seg": None}
           for k, v in abl.items()]
    pts += [dict(p, seg=None) for p in cost_points(res, list(res.get("methods") or {}))]
    ok = [p for p in pts if not bad(p["spi"]) and not bad(p["miou"]) and p["spi"] > 0]
    for p in ok:
        p["frontier"] = not any(q is not p and q["spi"] <= p["spi"] and q["miou"] > p["miou"] for q in ok)
    return ok


def ablation(res: dict, fig_dir: Path | None = None, figures=None) -> str:
    abl = res.get("ablation") or {}
    tables = abl.get("tables") or []
    if not tables:
        return ""
    out = ["## Ablations"]
    rf = abl.get("receptive_field")
    if rf:
        out += ["", f"Classifier receptive field at {rf.get('input')} px input: 95 % of the gradient mass of the "
                    f"centre feature cell within {num(rf.get('effective_radius95_px'), '.0f')} px, theoretical "
                    f"radius {num(rf.get('theoretical_radius_px'), '.0f')} px, output stride {rf.get('stride')}."]
    pts = study_cost_points(res)
    if fig_dir is not None and figures is not None and len(pts) > 1:
        out += ["", _figure(fig_dir, "cost_quality_study.png", figures.cost_quality, pts,
                            alt="mIoU vs seconds per image, every study variant")]
    for tab in tables:
        columns, rows = study_table(abl, tab)
        out += ["", f"### {tab.get('title', 'table')}", "", md_table(columns, rows)]
        if tab.get("command"):
            out += ["", f"Command: `{tab['command']}`"]
    return "\n".join(out)


def timings(res: dict) -> str:
    tm = res.get("timings") or {}
    if not tm:
        return ""
    total = tm.get("total")
    rows = [[k, num(v, ".1f"), f"{100 * v / total:.1f}%" if total and not bad(v) else DASH]
            for k, v in tm.items() if k != "total"]
    if total is not None:
        rows.append(["**total**", num(total, ".1f"), "100.0%"])
    return "\n".join(["## Timings", "", md_table(["stage", "seconds", "share of total"], rows)])


# ---- entry point ---------------------------------------------------------------------------------------
def write_report(run) -> Path:
    """Write ``RUN/report.md`` and ``RUN/figures/*.png`` from the run's files; return the report path."""
    from wsss.report import figures  # matplotlib, only here

    res = run.results()
    methods = res.get("methods") or {}
    order = sorted(methods, key=lambda k: -_fixed_miou(methods[k]))
    fig_dir = run.path / "figures"
    for name in FIGURES:  # a figure this run can no longer draw must not linger from an earlier report
        (fig_dir / name).unlink(missing_ok=True)
    hist_keys = [k for k in order if _headline(k)]

    try:
        rows, cols = _overlay_data(run, methods, order)
        overlay = _figure(fig_dir, "overlays.png", figures.overlays, rows, cols,
                          alt="images, ground truth, maps and masks")
    except (WsssError, OSError) as exc:
        overlay = f"*(overlays not drawn: {exc})*"

    robustness = "\n\n".join(s for s in (
        _figure(fig_dir, "threshold_sweep.png", figures.sweep, methods, order,
                alt="mIoU vs background threshold"),
        _figure(fig_dir, "precision_recall.png", figures.precision_recall, methods, order,
                alt="precision and recall vs background threshold"),
    ) if s)
    hist = _figure(fig_dir, "activation_hist.png", figures.activation_hist, methods, hist_keys,
                   alt="activation inside objects vs on background")
    split = run.cfg.score_split
    sections = [
        header(run),
        classifiers(res),
        method_table(run, methods, order),
        per_class_table(run, methods, order),
        _section("Robustness to the threshold", ROBUSTNESS_NOTES.format(split=split), robustness),
        _section("Activation inside objects vs on background", HIST_NOTES, hist),
        _section("Examples", OVERLAY_NOTES.format(split=split), overlay),
        cost_section(res, order, fig_dir, figures),
        segmentation(res),
        ablation(res, fig_dir, figures),
        timings(res),
    ]
    text = "\n\n".join(s for s in sections if s).rstrip() + "\n"
    path = run.path / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
