"""What a dataset split holds (``wsss data info``): per-class image and pixel counts, each image's labels."""

from __future__ import annotations

from typing import Any

import numpy as np


def dataset_info(ds: Any, progress: bool | None = None) -> dict:
    """Counts over the foreground classes of one split (void 255 and background excluded).

    Args:
        ds: a dataset (``ids``, ``classes``, ``mask(id, required=False)``, ``labels(id, mask)``).
        progress: show a progress bar over images; ``None`` shows it only on a terminal.

    Returns:
        ``{"num_images": n, "classes": [names, background first],
        "image_counts": {name: images whose labels contain it}, "pixel_counts": {name: mask pixels},
        "labels": {image_id: [names]}}``. Every foreground name is a key of both count dicts (0 when
        absent). Labels come from ``ds.labels``; pixels from the masks that exist (0 without masks).
    """
    from wsss.progress import progress_bar

    names = list(ds.classes[1:])
    k = len(names)
    image_counts = np.zeros(k, np.int64)
    pixel_counts = np.zeros(k + 1, np.int64)  # index 0 = background, dropped below
    labels: dict[str, list[str]] = {}
    for image_id in progress_bar(
        ds.ids, desc="images", unit="img", disable=None if progress is None else not progress, leave=False
    ):
        mask = ds.mask(image_id, required=False)
        vec = np.asarray(ds.labels(image_id, mask)).reshape(-1)
        present = np.flatnonzero(vec > 0)
        image_counts[present] += 1
        labels[image_id] = [names[c] for c in present]
        if mask is not None:
            valid = mask[mask != 255]
            pixel_counts += np.bincount(valid.ravel(), minlength=k + 1)[: k + 1]
    return {
        "num_images": len(ds.ids),
        "classes": list(ds.classes),
        "image_counts": {n: int(c) for n, c in zip(names, image_counts, strict=True)},
        "pixel_counts": {n: int(c) for n, c in zip(names, pixel_counts[1:], strict=True)},
        "labels": labels,
    }


def format_info(info: dict, title: str | None = None):
    """A rich ``Table`` of ``info`` (from :func:`dataset_info`): per class, images containing it (count
    and share of the split) and its pixels (count and share of all foreground pixels)."""
    from rich.table import Table

    n = info["num_images"]
    total_px = sum(info["pixel_counts"].values())
    table = Table(title=title or f"{n} images, {len(info['classes']) - 1} classes")
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("% images", justify="right")
    table.add_column("pixels", justify="right")
    table.add_column("% fg pixels", justify="right")
    for name in info["classes"][1:]:
        imgs = info["image_counts"][name]
        px = info["pixel_counts"][name]
        table.add_row(
            name,
            str(imgs),
            f"{100 * imgs / n:.1f}" if n else "-",
            str(px),
            f"{100 * px / total_px:.1f}" if total_px else "-",
        )
    return table
