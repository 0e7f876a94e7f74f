"""Localization maps drawn over their image, for people: :func:`overlay` returns a matplotlib figure with the
image, each class's normalized map over it (with a colorbar and the class name), and a panel that colours
every pixel by its strongest class (with a legend of class names).

Matplotlib is imported here only; ``import wsss`` does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

HEAT_CMAP = "inferno"
CLASS_CMAP = "tab10"
ALPHA = 0.55


def overlay(image: np.ndarray, maps: np.ndarray, classes: Sequence[str], title: str | None = None,
            normalization: str = "max"):
    """A figure of ``maps`` over ``image``.

    Args:
        image: uint8 ``(H, W, 3)``.
        maps: raw, non-negative ``(K', H, W)`` maps of the classes shown (any scale: each is normalized
            with ``normalization``, ``max`` or ``p99`` as in :func:`wsss.pseudo.normalize_maps`).
        classes: ``K'`` class names (titles, legend).
        title: the figure title (e.g. the method).
    Returns:
        a :class:`matplotlib.figure.Figure` (Agg canvas; save it with ``fig.savefig``).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from wsss.pseudo import normalize_maps

    image = np.asarray(image)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[1:] != image.shape[:2] or len(classes) != maps.shape[0]:
        raise ValueError(f"overlay: {maps.shape} maps, {len(classes)} class names, image {image.shape}")
    norm = np.asarray(normalize_maps(maps, normalization)) if len(maps) else maps
    panels = 2 + len(norm)
    h, w = image.shape[:2]
    panel_w = 3.0
    fig = Figure(figsize=(panel_w * panels, panel_w * h / w + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axs = fig.subplots(1, panels, squeeze=False)[0]
    for ax in axs:
        ax.set_xticks([])
        ax.set_yticks([])
    axs[0].imshow(image)
    axs[0].set_title("image", fontsize=11)
    for ax, m, name in zip(axs[1:-1], norm, classes, strict=True):
        ax.imshow(image)
        im = ax.imshow(m, cmap=HEAT_CMAP, vmin=0, vmax=1, alpha=ALPHA)
        ax.set_title(name, fontsize=11)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="normalized map")
    palette = colormaps[CLASS_CMAP]
    ax = axs[-1]
    ax.imshow(image)
    if len(norm):
        top = norm.argmax(0)
        strength = norm.max(0)
        colours = np.asarray([palette(i % palette.N)[:3] for i in range(len(norm))])[top]
        ax.imshow(np.concatenate([colours, (ALPHA * strength)[..., None]], axis=-1))
        handles = [Patch(color=palette(i % palette.N), label=name) for i, name in enumerate(classes)]
        ax.legend(handles=handles, loc="lower left", fontsize=9, framealpha=0.8)
    ax.set_title("strongest class", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def save_overlay(path: str | Path, image: np.ndarray, maps: np.ndarray, classes: Sequence[str],
                 title: str | None = None, normalization: str = "max", dpi: int = 100) -> Path:
    """:func:`overlay` written to ``path`` (the format from its suffix: .png, .pdf, .svg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, maps, classes, title, normalization).savefig(path, dpi=dpi)
    return path
