"""Datasets: one interface (:class:`~wsss.data.base.Dataset`: ``ids``, ``classes``, ``num_classes``,
``image``, ``mask``, ``has_mask``, ``labels``, items as :class:`Sample`) over the VOC layout, plain
folders (``images/`` + ``masks/``, or flat with a labels file), COCO 2014, and the built-in benchmark
(which writes VOC layout). Open any of them with :func:`open_dataset`.
"""

from __future__ import annotations

import os

from wsss.data.base import (
    IMAGE_EXTENSIONS,
    Dataset,
    Sample,
    available_splits,
    check_id,
    image_size,
    inside,
    read_image,
)
from wsss.data.folder import FolderDataset, detect_layout, split_dirs
from wsss.data.labels import convert_irn_labels, read_labels_file
from wsss.data.voc import VOC_CLASSES, VOCDataset
from wsss.errors import DataError

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "VOC_CLASSES",
    "Dataset",
    "FolderDataset",
    "Sample",
    "VOCDataset",
    "check_id",
    "convert_irn_labels",
    "dataset_splits",
    "detect_layout",
    "image_size",
    "inside",
    "open_dataset",
    "read_image",
    "read_labels_file",
]

FORMATS = ("auto", "voc", "coco", "folder")


def open_dataset(root: str | os.PathLike[str], split: str, format: str = "auto",
                 labels: str | os.PathLike[str] | None = None, **kwargs) -> Dataset:  # fmt: skip
    """Open one split of a dataset folder.

    Args:
        root: the dataset folder.
        split: split name (``ImageSets/Segmentation/<split>.txt``, ``splits/<split>.txt``; ``train`` or
            ``val`` for COCO 2014).
        format: ``"auto"`` (detect: ``JPEGImages/`` -> voc, ``annotations/instances_*2014.json`` -> coco,
            ``images/`` or image files -> folder), ``"voc"``, ``"coco"`` or ``"folder"``. The dataset's
            ``layout`` attribute says which layout it read.
        labels: image-level labels file (``.json``/``.csv``, see :mod:`wsss.data.labels`), used instead
            of the labels derived from masks or annotations.
        **kwargs: passed to the reader (``max_side``; ``mask_dir`` for voc; ``cache_dir`` for coco).
    """
    if format not in FORMATS:
        raise DataError(f"unknown dataset format {format!r} ({', '.join(FORMATS)})")
    if format == "auto":
        layout = detect_layout(root)
        format = {"voc": "voc", "coco": "coco"}.get(layout, "folder")
    if format == "voc":
        return VOCDataset(root, split, labels=labels, **kwargs)
    if format == "coco":
        from wsss.data.coco import COCODataset

        return COCODataset(root, split, labels=labels, **kwargs)
    return FolderDataset(root, split, labels=labels, **kwargs)


def dataset_splits(root: str | os.PathLike[str], format: str = "auto") -> list[str]:
    """The splits a dataset folder has (``train`` and ``val`` for COCO 2014); DataError when it has none."""
    layout = detect_layout(root) if format in ("auto", "folder") else format
    if layout == "coco":
        return ["train", "val"]
    names = available_splits(*split_dirs(root, layout))
    if not names:
        raise DataError(f"{root}: no split files (layout {layout}); create them with `wsss data split {root}`")
    return names
