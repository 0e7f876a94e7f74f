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


def _new(w: float, h: float, nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    return path


def _v(x) -> float:
    """A fraction as percent; None -> NaN (a gap in the line)."""
    return math.nan if x is None else 100.0 * x


def styles(keys: list[str]) -> dict[str, dict]:
    """One colour per method (``cam``, ``cam+crf`` and ``cam+irn`` share it; the CRF variant is dashed, the
    IRN variant dotted)."""
    from matplotlib import colormaps

    def base(k: str) -> str:
        return k.replace("+crf", "").replace("+irn", "")

    bases = list(dict.fromkeys(base(k) for k in keys))
    cmap = colormaps["tab10" if len(bases) <= 10 else "tab20"]
    colour = {b: cmap(i % cmap.N) for i, b in enumerate(bases)}
    return {k: {"color": colour[base(k)], "linestyle": "--" if "+crf" in k else ":" if "+irn" in k else "-"}
            for k in keys}


def _legend(ax, n: int) -> None:
    if n > 6:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(fontsize=8)


def sweep(methods: dict, keys: list[str], path: Path) -> Path | None:
    """mIoU vs background threshold, one line per method; a dot at the fixed (tune-chosen) t."""
    keys = [k for k in keys if methods[k].get("sweep")]
    if not keys:
        return None
    st = styles(keys)
    fig, axs = _new(8, 4.2)
    ax = axs[0, 0]
    for k in keys:
        rows = methods[k]["sweep"]
        ax.plot([r["t"] for r in rows], [_v(r.get("miou")) for r in rows], label=k, **st[k])
        fixed = methods[k].get("fixed") or {}
        if fixed.get("t") is not None:
            ax.plot([fixed["t"]], [_v(fixed.get("miou"))], "o", color=st[k]["color"], ms=5)
    ax.axvspan(0.1, 0.5, color="0.92", zorder=0)
    ax.set(xlabel="background threshold t", ylabel="mIoU (%)", xlim=(0, 1),
           title="Pseudo-mask mIoU vs threshold (dot: t chosen on tune; shaded: t in [0.1, 0.5])")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    _legend(ax, len(keys))
    return _save(fig, path)


def precision_recall(methods: dict, keys: list[str], path: Path) -> Path | None:
    """Class-aware foreground precision and recall vs t, one panel each."""
    keys = [k for k in keys if methods[k].get("sweep")]
    if not keys:
        return None
    st = styles(keys)
    fig, axs = _new(11, 4, 1, 2, sharey=True)
    for ax, what in zip(axs[0], ("precision", "recall"), strict=True):
        for k in keys:
            rows = methods[k]["sweep"]
            ax.plot([r["t"] for r in rows], [_v(r.get(what)) for r in rows], label=k, **st[k])
        ax.set(xlabel="background threshold t", title=f"foreground {what}", xlim=(0, 1))
        ax.grid(alpha=0.3)
    axs[0, 0].set_ylabel("%")
    _legend(axs[0, 1], len(keys))
    return _save(fig, path)


def activation_hist(methods: dict, keys: list[str], path: Path) -> Path | None:
    """Density of normalized activation inside objects vs on background, one panel per method."""
    keys = [k for k in keys if (methods[k].get("activation_hist") or {}).get("fg")]
    if not keys:
        return None
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig, axs = _new(3.8 * ncols, 3.0 * nrows, nrows, ncols, sharey=True)
    for ax in axs.flat[len(keys):]:
        ax.axis("off")
    for ax, k in zip(axs.flat, keys, strict=False):
        h = methods[k]["activation_hist"]
        edges = np.linspace(0, 1, int(h.get("bins", len(h["fg"]))) + 1)
        for part, colour, label in (("fg", "tab:red", "inside objects"), ("bg", "tab:blue", "background")):
            counts = np.asarray(h.get(part) or np.zeros(len(edges) - 1), np.float64)
            total = counts.sum()
            dens = counts / (total * np.diff(edges)) if total else counts
            ax.stairs(np.where(dens > 0, dens, np.nan), edges, color=colour, lw=1.6, label=label)
        t = (methods[k].get("fixed") or {}).get("t")
        if t is not None:
            ax.axvline(t, color="0.3", ls=":", lw=1, label=f"fixed t = {t:.2f}")
        ax.set_yscale("log")
        ax.set(title=k, xlabel="normalized activation", xlim=(0, 1))
        ax.legend(fontsize=7)
    for row in axs:
        row[0].set_ylabel("density (log)")
    return _save(fig, path)


def _heat(image: np.ndarray, heat: np.ndarray | None, ax) -> None:
    h, w = image.shape[:2]
    ax.imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255, extent=(0, w, h, 0))
    if heat is not None:
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, extent=(0, w, h, 0))


def overlays(rows: list[dict], columns: list[str], path: Path) -> Path | None:
    """Grid: one row per image. ``rows[i]`` maps a column title to ``("image", rgb)``, ``("mask", labels)``,
    ``("map", (rgb, heat))`` or nothing (blank cell)."""
    if not rows or not columns:
        return None
    fig, axs = _new(1.45 * len(columns), 1.55 * len(rows) + 0.3, len(rows), len(columns))
    for r, cells in enumerate(rows):
        for c, title in enumerate(columns):
            ax = axs[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
            if c == 0:
                ax.set_ylabel(cells.get("_id", ""), fontsize=7)
            kind, data = cells.get(title, (None, None))
            if kind == "image":
                ax.imshow(data)
            elif kind == "mask":
                ax.imshow(VOC_PALETTE[data], interpolation="nearest")
            elif kind == "map":
                _heat(*data, ax)
            else:
                ax.set_frame_on(False)
    return _save(fig, path, dpi=90)


def cost_quality(points: list[dict], path: Path) -> Path | None:
    """mIoU@fixed (and segmentation val mIoU) vs seconds per image, log-x; the Pareto frontier drawn.
    ``points``: ``{"key", "spi", "miou", "seg", "frontier"}``."""
    pts = [p for p in points if p.get("spi") and p["spi"] > 0 and p.get("miou") is not None]
    if not pts:
        return None
    st = styles([p["key"] for p in pts])
    fig, axs = _new(7, 4.2)
    ax = axs[0, 0]
    for p in pts:
        x, y, colour = p["spi"], 100 * p["miou"], st[p["key"]]["color"]
        marker = "D" if "+irn" in p["key"] else "o"
        ax.plot(x, y, marker, color=colour, mfc="white" if "+crf" in p["key"] else colour)
        ax.annotate(p["key"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
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
