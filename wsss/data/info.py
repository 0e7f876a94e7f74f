"""What a dataset split holds (``wsss data info``): per-class image and pixel counts, each image's labels,
the layout found, and a cheap header check of every image and mask (:func:`check_split`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.data.base import image_size
from wsss.errors import DataError


def check_image(ds: Any, image_id: str) -> str | None:
    """The problem with one image of ``ds``, or None: image missing or unreadable, mask unreadable, or
    mask size differing from the image. Reads file headers only (no pixel decoding)."""
    try:
        h, w = image_size(ds.image_path(image_id))
        size = ds.mask_size(image_id) if hasattr(ds, "mask_size") else None
    except DataError as exc:
        return str(exc)
    if size is not None and size != (h, w):
        where = ds.mask_path(image_id) if getattr(ds, "format", "") != "coco" else ds.annotation_path
        return f"{where}: mask is {size[1]}x{size[0]}, image {ds.image_path(image_id)} is {w}x{h}"
    return None


def check_split(ds: Any, progress: bool | None = False) -> list[str]:
    """Every problem found in the file headers of a split, one line each naming the file (empty when
    all is well): images missing, ambiguous (``a.jpg`` and ``a.png``) or unreadable, masks unreadable or
    of another size than their image. Cheap: headers only, one pass over ``ds.ids``."""
    from wsss.progress import progress_bar

    problems = []
    for image_id in progress_bar(ds.ids, desc="headers", unit="img", disable=None if progress is None else not progress,
                         leave=False):  # fmt: skip
        problem = check_image(ds, image_id)
        if problem:
            problems.append(problem)
    return problems


def dataset_info(ds: Any, progress: bool | None = None) -> dict:
    """Counts over the foreground classes of one split (void 255 and background excluded).

    Every image's header is checked against its mask's first (:func:`check_image`); the first bad file
    raises DataError naming it.

    Args:
        ds: a dataset (``ids``, ``classes``, ``image_path``, ``mask(id, required=False)``, ``labels(id, mask)``).
        progress: show a progress bar over images; ``None`` shows it only on a terminal.

    Returns:
        ``{"num_images": n, "layout": "voc" | "images+masks" | "flat" | "coco",
        "num_with_masks": images with a mask, "num_labels_only": images without one,
        "classes": [names, background first],
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
    with_masks = 0
    for image_id in progress_bar(
        ds.ids, desc="images", unit="img", disable=None if progress is None else not progress, leave=False
    ):
        problem = check_image(ds, image_id)
        if problem:
            raise DataError(problem)
        mask = ds.mask(image_id, required=False)
        vec = np.asarray(ds.labels(image_id, mask)).reshape(-1)
        present = np.flatnonzero(vec > 0)
        image_counts[present] += 1
        labels[image_id] = [names[c] for c in present]
        if mask is not None:
            with_masks += 1
            valid = mask[mask != 255]
            pixel_counts += np.bincount(valid.ravel(), minlength=k + 1)[: k + 1]
    return {
        "num_images": len(ds.ids),
        "layout": getattr(ds, "layout", getattr(ds, "format", "unknown")),
        "num_with_masks": with_masks,
        "num_labels_only": len(ds.ids) - with_masks,
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
    if title is None:
        title = f"{n} images, {len(info['classes']) - 1} classes"
        if "layout" in info:
            title += (f" ({info['layout']} layout; {info['num_with_masks']} with masks, "
                      f"{info['num_labels_only']} labels only)")  # fmt: skip
    table = Table(title=title)
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
