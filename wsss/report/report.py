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
from wsss.results import MethodResult, ResultKey, Results

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


def _fixed_miou(m: MethodResult) -> float:
    return -1.0 if bad(m.fixed.miou) else m.fixed.miou


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
    clf = res.classifiers
    out = ["## Classifiers", ""]
    if not clf:
        out.append("No classifier results.")
    else:
        rows = [[name, c.get("arch", DASH), c.get("recipe", "plain"), pct(c.get("jigsaw_aug")), pct(c.get("val_map")),
                 secs(c.get("seconds"))] for name, c in clf.items()]
        out.append(md_table(["classifier", "arch", "recipe", "jigsaw-aug (% images)", "val mAP", "seconds"], rows))
    out += _scalars("AMN training", res.amn)
    return "\n".join(out)


def _scalars(title: str, d) -> list[str]:
    """A free-form dict as a bullet list of its scalar entries."""
    if not isinstance(d, dict) or not d:
        return []
    items = [f"- {k}: {cell(v)}" for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None]
    return ["", f"**{title}**", "", *items] if items else []


def method_table(run, methods: dict, order: list[str], same: dict[str, list[str]] | None = None) -> str:
    tune = run.cfg.tune_split or "tune"
    score = run.cfg.score_split
    out = ["## Pseudo-masks", ""]
    if not methods:
        return "\n".join(out + ["No method results (run `wsss pseudo`)."])
    rows = []
    for k in order:
        m = methods[k]
        t = num(m.fixed.t)
        if m.fixed.chosen_on and m.fixed.chosen_on != tune and t != DASH:
            t += f" ({m.fixed.chosen_on})"
        first = next((a for a, dups in (same or {}).items() if k in dups), None)
        rows.append([k if first is None else f"{k} (= {first} within 0.01 points)", t, pct(m.fixed.miou),
                     pct(m.fixed.precision), pct(m.fixed.recall), f"{pct(m.best.miou)} ({num(m.best.t)})",
                     num(m.robust_width), pct(m.spread_0_1_0_5), pct(m.ap), pct(m.oracle_miou), pct(m.ndr_recall),
                     secs(m.seconds_per_image)])
    cols = ["method", f"fixed t (chosen on {tune})", "mIoU@fixed", "precision", "recall", "best mIoU (t)",
            "robust width", "spread t∈[0.1,0.5]", "AP", "oracle-t mIoU", "NDR recall", "s/image"]
    norms = ", ".join(f"{k}: {methods[k].normalization}" for k in order if methods[k].normalization)
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
    """Per-class IoU (results.json keys them by class name; older runs by class id)."""
    keys = [k for k in order if methods[k].per_class_iou]
    if not keys:
        return ""
    try:
        names = list(run.dataset(run.cfg.score_split).classes)
    except (WsssError, OSError):
        names = []

    def name(c: str) -> str:
        return names[int(c)] if c.isdigit() and int(c) < len(names) else c

    classes = list(dict.fromkeys(c for k in keys for c in methods[k].per_class_iou))
    rows = [[name(c), *(pct(methods[k].per_class_iou.get(c)) for k in keys)] for c in classes]
    return "\n".join(["### Per-class IoU at the fixed t", "", md_table(["class", *keys], rows), "",
                      f"{DASH}: the class is in neither the ground truth nor the masks of this split (no IoU)."])


SAME_TOL = 1e-4  # 0.01 mIoU points at every swept t: the same method up to float rounding


def identical_methods(methods: dict, order: list[str]) -> dict[str, list[str]]:
    """Keys whose threshold sweep matches an earlier key's in ``order`` within :data:`SAME_TOL` at every t, with
    the same fixed t (e.g. ``gradcam`` at the last layer = ``cam`` / (h*w)): ``{first: [the others]}``; the
    figures draw each group once and the table marks the others."""

    def curve(k):
        return [(r.t, r.miou) for r in methods[k].sweep]

    groups: dict[str, list[str]] = {}
    for k in order:
        c = curve(k)
        first = next((f for f in groups if c and len(curve(f)) == len(c) and methods[f].fixed.t == methods[k].fixed.t
                      and all(ta == tb and abs(a - b) <= SAME_TOL for (ta, a), (tb, b) in zip(curve(f), c, strict=True))),
                     None)
        if first is None:
            groups[k] = []
        else:
            groups[first].append(k)
    return {k: v for k, v in groups.items() if v}


def _section(title: str, prose: str, body: str) -> str:
    return f"## {title}\n\n{prose}\n\n{body}" if body else ""


def _figure(fig_dir: Path, name: str, fn, *args, alt: str, **kwargs) -> str:
    """Draw one figure; the markdown that references it (relative path), or a note why there is none."""
    try:
        path = fn(*args, fig_dir / name, **kwargs)
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
            norm = methods[k].normalization or run.cfg.pseudo.norm_for(k)
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


def cost_points(res: Results, order: list[str]) -> list[dict]:
    pts = [{"key": k, "spi": res.methods[k].seconds_per_image, "miou": res.methods[k].fixed.miou,
            "seg": res.segmentation[k].val_miou if k in res.segmentation else None} for k in order]
    ok = [p for p in pts if not bad(p["spi"]) and not bad(p["miou"])]
    for p in ok:  # Pareto frontier: nothing at most as costly is better
        p["frontier"] = not any(q is not p and q["spi"] <= p["spi"] and q["miou"] > p["miou"] for q in ok)
    return pts


def cost_section(res: dict, order: list[str], fig_dir: Path, figures, st: dict | None = None) -> str:
    pts = cost_points(res, order)
    if not pts:
        return ""
    pts.sort(key=lambda p: (math.inf if bad(p["spi"]) else p["spi"]))
    rows = [[p["key"], secs(p["spi"]), pct(p["miou"]), pct(p["seg"]), "✓" if p.get("frontier") else ""]
            for p in pts]
    return "\n".join([
        "## Cost vs quality", "",
        "Seconds per image to compute the maps (+ CRF or IRN's boundary and walk where named; training stages "
        "not included), on this run's machine; the frontier "
        "marks methods that no cheaper-or-equal method beats on mIoU@fixed.", "",
        _figure(fig_dir, "cost_quality.png", figures.cost_quality, pts, alt="mIoU vs seconds per image", st=st), "",
        md_table(["method", "s/image", "mIoU@fixed", "segmenter val mIoU", "frontier"], rows),
    ])


def segmentation(res: dict) -> str:
    seg = res.segmentation
    if not seg:
        return ""
    gt = seg["gt"].val_miou if "gt" in seg else None
    keys = sorted((k for k in seg if k != "gt"), key=lambda k: -(seg[k].val_miou or -1.0))
    def ratio(v):
        return DASH if bad(gt) or not gt or bad(v) else f"{100 * v / gt:.1f}%"

    rows = [[k, pct(seg[k].val_miou), ratio(seg[k].val_miou), secs(seg[k].seconds)] for k in keys]
    if "gt" in seg:
        rows.append(["gt (fully supervised bound)", pct(gt), ratio(gt), secs(seg["gt"].seconds)])
    return "\n".join([
        "## Segmentation", "",
        "A segmenter trained on each method's pseudo-masks of the training split, scored on the val split; "
        "`gt` is the same network and budget trained on the true masks.", "",
        md_table(["masks", "val mIoU", "ratio to gt", "seconds"], rows),
    ])


def study_cost_points(res: dict) -> list[dict]:
    """Every ablation variant with a measured cost (each N, grid, option, classifier ...) and every method,
    for the study's mIoU-vs-seconds plot; the frontier as in :func:`cost_points`."""
    abl = res.ablation.get("variants") or {}
    pts = [{"key": k, "spi": v.get("seconds_per_image"), "miou": v.get("miou"), "seg": None}
           for k, v in abl.items()]
    pts += [dict(p, seg=None) for p in cost_points(res, list(res.methods))]
    ok = [p for p in pts if not bad(p["spi"]) and not bad(p["miou"]) and p["spi"] > 0]
    for p in ok:
        p["frontier"] = not any(q is not p and q["spi"] <= p["spi"] and q["miou"] > p["miou"] for q in ok)
    return ok


def ablation(res: dict, fig_dir: Path | None = None, figures=None) -> str:
    abl = res.ablation
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
    tm = res.timings
    if not tm:
        return ""
    total = tm.get("total")
    rows = [[k, num(v, ".1f"), f"{100 * v / total:.1f}%" if total and not bad(v) else DASH]
            for k, v in tm.items() if k != "total"]
    if total is not None:
        rows.append(["**total**", num(total, ".1f"), "100.0%"])
    return "\n".join(["## Timings", "", md_table(["stage", "seconds", "share of total"], rows)])


# ---- entry point ---------------------------------------------------------------------------------------
def write_report(run, formats: tuple[str, ...] = ()) -> Path:
    """Write ``RUN/report.md``, the self-contained ``RUN/report.html`` (figures embedded) and
    ``RUN/figures/*.png`` (+ each of ``formats``: pdf, svg) from the run's files; return the report path."""
    from wsss.report import figures  # matplotlib, only here

    res = run.typed_results()
    methods = res.methods
    order = sorted(methods, key=lambda k: -_fixed_miou(methods[k]))
    fig_dir = run.path / "figures"
    for name in FIGURES:  # a figure this run can no longer draw must not linger from an earlier report
        for fmt in ("png", "pdf", "svg"):
            (fig_dir / name).with_suffix(f".{fmt}").unlink(missing_ok=True)
    same = identical_methods(methods, order)
    drawn = [k for k in order if not any(k in dups for dups in same.values())]
    st = figures.styles(order, same)
    hist_keys = [k for k in drawn if _headline(k)]
    bad_formats = sorted(set(formats) - {"png", "pdf", "svg"})
    if bad_formats:
        raise WsssError(f"figure format {bad_formats[0]!r}: expected png, pdf or svg")
    figures.EXTRA_FORMATS[:] = [f for f in formats if f != "png"]
    try:
        text = _report_text(run, res, methods, order, drawn, hist_keys, st, same, fig_dir, figures)
    finally:
        figures.EXTRA_FORMATS[:] = []
    path = run.path / "report.md"
    _write_atomic(path, text)
    _write_atomic(run.path / "report.html", to_html(text, run.path, title=f"WSSS run report: {run.path.name}"))
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


HTML_STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child
{text-align:left}img{max-width:100%;height:auto}code{background:#f5f5f5;padding:0 3px}h1,h2,h3{line-height:1.2}"""


def to_html(markdown_text: str, base: Path, title: str) -> str:
    """A self-contained HTML page of a markdown report: tables rendered, every referenced image embedded
    as a data URI (the page needs no other file)."""
    import base64
    import html
    import re

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])

    def embed(m: re.Match) -> str:
        src = m.group(1)
        path = base / src
        if not path.is_file():
            return m.group(0)
        kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix, "image/png")
        return f'src="data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+)"', embed, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _report_text(run, res, methods, order, drawn, hist_keys, st, same, fig_dir, figures) -> str:

    try:
        rows, cols = _overlay_data(run, methods, drawn)
        overlay = _figure(fig_dir, "overlays.png", figures.overlays, rows, cols, class_names=_class_names(run),
                          alt="images, ground truth, maps and masks")
    except (WsssError, OSError) as exc:
        overlay = f"*(overlays not drawn: {exc})*"

    robustness = "\n\n".join(s for s in (
        _figure(fig_dir, "threshold_sweep.png", figures.sweep, methods, drawn, alt="mIoU vs background threshold",
                st=st),
        _figure(fig_dir, "precision_recall.png", figures.precision_recall, methods, drawn,
                alt="precision and recall vs background threshold", st=st),
    ) if s)
    hist = _figure(fig_dir, "activation_hist.png", figures.activation_hist, methods, hist_keys,
                   alt="activation inside objects vs on background", st=st)
    split = run.cfg.score_split
    sections = [
        header(run),
        classifiers(res),
        method_table(run, methods, order, same),
        per_class_table(run, methods, order),
        _section("Robustness to the threshold", ROBUSTNESS_NOTES.format(split=split), robustness),
        _section("Activation inside objects vs on background", HIST_NOTES, hist),
        _section("Examples", OVERLAY_NOTES.format(split=split), overlay),
        cost_section(res, drawn, fig_dir, figures, st),
        segmentation(res),
        ablation(res, fig_dir, figures),
        timings(res),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _class_names(run) -> list[str]:
    try:
        return list(run.dataset(run.cfg.score_split).classes)
    except (WsssError, OSError):
        return []
