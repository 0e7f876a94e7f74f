"""Figures of the run report: matplotlib ``Figure`` objects on the Agg canvas (no pyplot, no global
backend state). Imported lazily by :mod:`wsss.report.report`. Every function writes one PNG atomically
and returns its path, or ``None`` when there is nothing to draw."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from wsss.labelio import VOC_PALETTE

DPI = 110


def _new(w: float, h: float, nrows: int = 1, ncols: int = 1, layout: str | None = "constrained", **kw):
    fig = Figure(figsize=(w, h), layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


EXTRA_FORMATS: list[str] = []
"""Formats written beside each PNG (``wsss report --format pdf``); set by the report for one call."""


def _save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for fmt in ["png", *EXTRA_FORMATS]:
        target = path.with_suffix(f".{fmt}")
        tmp = target.with_name(f".{path.stem}.tmp.{fmt}")
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, target)
    return path


def _v(x) -> float:
    """A fraction as percent; None -> NaN (a gap in the line)."""
    return math.nan if x is None else 100.0 * x


def _method_order() -> list[str]:
    from wsss.localize import available

    return available()


def _family(method: str) -> str:
    """The registered method a result's colour comes from (``amn-<maps>`` is drawn in AMN's)."""
    from wsss.errors import WsssError
    from wsss.localize import spec

    try:
        s = spec(method)
    except WsssError:  # a plugin that is not installed here
        return method
    return "amn" if s.requires == "amn" else s.name


def styles(keys: list[str], aliases: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """One colour per method in every figure (from the registry's order, so a method keeps its colour whatever
    else a figure shows); ``+crf`` dashed, ``+irn`` dash-dotted, another classifier (``@name``) dotted. ``aliases``: keys
    with identical scores drawn once, labelled ``cam = gradcam``."""
    from matplotlib import colormaps

    from wsss.results import ResultKey

    order = _method_order()
    cmap = colormaps["tab20"]
    out = {}
    for k in keys:
        try:
            rk = ResultKey.parse(k)
        except ValueError:
            rk = ResultKey(k)
        base = _family(rk.method)
        idx = order.index(base) if base in order else len(order) + sum(map(ord, base))
        # tab20 pairs a dark and a light shade: even indices first, so neighbours in the registry differ
        colour = cmap((2 * idx) % 20 + (idx // 10) % 2)
        style = {"crf": "--", "irn": "-."}.get(rk.post or "", ":" if rk.classifier != "plain" else "-")
        out[k] = {"color": colour, "linestyle": style, "label": " = ".join([k, *(aliases or {}).get(k, [])])}
    return out


def _legend(ax, n: int) -> None:
    if n > 6:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(fontsize=8)


def sweep(methods: dict, keys: list[str], path: Path, st: dict | None = None) -> Path | None:
    """mIoU vs background threshold, one line per method; a dot at the fixed (tune-chosen) t. ``methods``:
    :class:`wsss.results.MethodResult` by key (likewise below)."""
    keys = [k for k in keys if methods[k].sweep]
    if not keys:
        return None
    st = st or styles(keys)
    fig, axs = _new(8, 4.2)
    ax = axs[0, 0]
    for k in keys:
        rows = methods[k].sweep
        ax.plot([r.t for r in rows], [_v(r.miou) for r in rows], **st[k])
        fixed = methods[k].fixed
        ax.plot([fixed.t], [_v(fixed.miou)], "o", color=st[k]["color"], ms=5)
    ax.axvspan(0.1, 0.5, color="0.92", zorder=0)
    ax.set(xlabel="background threshold t", ylabel="mIoU (%)", xlim=(0, 1),
           title="Pseudo-mask mIoU vs threshold (dot: t chosen on tune; shaded: t in [0.1, 0.5])")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    _legend(ax, len(keys))
    return _save(fig, path)


def precision_recall(methods: dict, keys: list[str], path: Path, st: dict | None = None) -> Path | None:
    """Class-aware foreground precision and recall vs t, one panel each."""
    keys = [k for k in keys if methods[k].sweep]
    if not keys:
        return None
    st = st or styles(keys)
    fig, axs = _new(11, 4, 1, 2, sharey=True)
    for ax, what in zip(axs[0], ("precision", "recall"), strict=True):
        for k in keys:
            rows = methods[k].sweep
            ax.plot([r.t for r in rows], [_v(getattr(r, what)) for r in rows], **st[k])
        ax.set(xlabel="background threshold t", title=f"foreground {what}", xlim=(0, 1))
        ax.grid(alpha=0.3)
    axs[0, 0].set_ylabel("%")
    _legend(axs[0, 1], len(keys))
    return _save(fig, path)


def activation_hist(methods: dict, keys: list[str], path: Path, st: dict | None = None) -> Path | None:
    """Density of normalized activation inside objects vs on background, one panel per method."""
    keys = [k for k in keys if (methods[k].activation_hist or {}).get("fg")]
    if not keys:
        return None
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig, axs = _new(3.8 * ncols, 3.0 * nrows, nrows, ncols, sharey=True)
    for ax in axs.flat[len(keys):]:
        ax.axis("off")
    for ax, k in zip(axs.flat, keys, strict=False):
        h = methods[k].activation_hist
        edges = np.linspace(0, 1, int(h.get("bins", len(h["fg"]))) + 1)
        for part, colour, label in (("fg", "tab:red", "inside objects"), ("bg", "tab:blue", "background")):
            counts = np.asarray(h.get(part) or np.zeros(len(edges) - 1), np.float64)
            total = counts.sum()
            dens = counts / (total * np.diff(edges)) if total else counts
            ax.stairs(np.where(dens > 0, dens, np.nan), edges, color=colour, lw=1.6, label=label)
        t = methods[k].fixed.t
        if t is not None:
            ax.axvline(t, color="0.3", ls=":", lw=1, label=f"fixed t = {t:.2f}")
        ax.set_yscale("log")
        ax.set(title=(st or {}).get(k, {}).get("label", k), xlabel="normalized activation", xlim=(0, 1))
        ax.legend(fontsize=7)
    for row in axs:
        row[0].set_ylabel("density (log)")
    return _save(fig, path)


HEAT_CMAP = "inferno"


def _heat(image: np.ndarray, heat: np.ndarray | None, ax):
    h, w = image.shape[:2]
    ax.imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255, extent=(0, w, h, 0))
    if heat is not None:
        return ax.imshow(heat, cmap=HEAT_CMAP, alpha=0.6, vmin=0, vmax=1, extent=(0, w, h, 0))
    return None


def overlays(rows: list[dict], columns: list[str], path: Path, class_names: list[str] | None = None) -> Path | None:
    """Grid: one row per image. ``rows[i]`` maps a column title to ``("image", rgb)``, ``("mask", labels)``,
    ``("map", (rgb, heat))`` or nothing (blank cell). A legend names the mask colours' classes and a colorbar
    reads the maps."""
    import textwrap

    from matplotlib.patches import Patch

    if not rows or not columns:
        return None
    # a fixed layout (inches): a grid of axes all alike needs no layout engine, which took most of the figure's
    # drawing time (4 of 7 s on the full demo's 8 x 10 grid)
    cell, left, right, top, bottom = 1.9, 0.45, 1.0, 0.6, 0.85
    w, h = cell * len(columns) + left + right, cell * len(rows) + top + bottom
    fig, axs = _new(w, h, len(rows), len(columns), layout=None)
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, wspace=0.04, hspace=0.04)
    heat_im, seen = None, set()
    for r, cells in enumerate(rows):
        for c, title in enumerate(columns):
            ax = axs[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("\n".join(textwrap.wrap(title, 14)), fontsize=9)
            if c == 0:
                ax.set_ylabel(cells.get("_id", ""), fontsize=9)
            kind, data = cells.get(title, (None, None))
            if kind == "image":
                ax.imshow(data)
            elif kind == "mask":
                ax.imshow(VOC_PALETTE[data], interpolation="nearest")
                seen.update(int(v) for v in np.unique(data) if v != 255)
            elif kind == "map":
                heat_im = _heat(*data, ax) or heat_im
            else:
                ax.set_frame_on(False)
    if seen:
        names = class_names or []
        handles = [Patch(color=VOC_PALETTE[c] / 255, label=names[c] if c < len(names) else f"class {c}")
                   for c in sorted(seen)]
        fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 8), fontsize=9,
                   title="mask colours", title_fontsize=9, frameon=False)
    if heat_im is not None:
        cax = fig.add_axes((1 - (right - 0.12) / w, bottom / h, 0.14 / w, 1 - (top + bottom) / h))
        fig.colorbar(heat_im, cax=cax, label="normalized map")
    return _save(fig, path, dpi=90)


def cost_quality(points: list[dict], path: Path, st: dict | None = None) -> Path | None:
    """mIoU@fixed (and segmentation val mIoU) vs seconds per image, log-x; the Pareto frontier drawn.
    ``points``: ``{"key", "spi", "miou", "seg", "frontier"}``."""
    pts = [p for p in points if p.get("spi") and p["spi"] > 0 and p.get("miou") is not None]
    if not pts:
        return None
    st = {**styles([p["key"] for p in pts]), **(st or {})}
    fig, axs = _new(7, 4.2)
    ax = axs[0, 0]
    for p in pts:
        x, y, colour = p["spi"], 100 * p["miou"], st[p["key"]]["color"]
        marker = "D" if "+irn" in p["key"] else "o"
        ax.plot(x, y, marker, color=colour, mfc="white" if "+crf" in p["key"] else colour)
        ax.annotate(st[p["key"]]["label"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if p.get("seg") is not None:
            ax.plot(x, 100 * p["seg"], "s", color=colour, ms=6)
            ax.plot([x, x], [y, 100 * p["seg"]], ":", color=colour, lw=0.8)
    front = sorted((p for p in pts if p.get("frontier")), key=lambda p: p["spi"])
    if len(front) > 1:
        ax.plot([p["spi"] for p in front], [100 * p["miou"] for p in front], "-", color="0.5", lw=1, zorder=0,
                label="frontier (pseudo-masks)")
    ax.plot([], [], "o", color="0.4", label="pseudo-mask mIoU@fixed (score split)")
    if any(p.get("seg") is not None for p in pts):
        ax.plot([], [], "s", color="0.4", label="segmenter val mIoU")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.1)
    ax.set(xlabel="seconds per image (log)", ylabel="mIoU (%)", title="Cost vs quality")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)
