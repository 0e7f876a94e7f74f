"""PASCAL VOC layout reader (the built-in benchmark writes this layout too).

``JPEGImages/<id>.jpg`` (any extension of :data:`~wsss.data.base.IMAGE_EXTENSIONS`),
``SegmentationClass/<id>.png`` (class index per pixel, 255 = void; palette or grayscale PNG),
``ImageSets/Segmentation/<split>.txt``, optional ``classes.txt`` (background first; the 20 VOC devkit
names when absent). SBD's ``SegmentationClassAug`` + ``train_aug.txt`` is a split like any other:
``train_aug`` reads its masks from ``SegmentationClassAug`` when that folder exists. Image-level
labels come from the masks, or from a labels file (see :mod:`wsss.data.labels`); a split may have
no masks at all when a labels file is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from wsss.data.base import (
    Sample,
    SplitDataset,
    read_classes_file,
    read_image,
    read_split_file,
    split_not_found,
)
from wsss.data.common import VOC_CLASSES
from wsss.errors import DataError

__all__ = ["AUG_MASK_DIR", "VOC_CLASSES", "Sample", "VOCDataset", "open_dataset", "read_classes", "read_image",
           "read_split", "split_path"]  # fmt: skip

AUG_MASK_DIR = "SegmentationClassAug"
SPLIT_DIR = ("ImageSets", "Segmentation")


def read_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """``<root>/classes.txt`` (see :func:`~wsss.data.base.read_classes_file`), or the 20 VOC classes
    with background when there is none."""
    path = Path(root) / "classes.txt"
    return read_classes_file(path) if path.exists() else VOC_CLASSES


def split_path(root: str | os.PathLike[str], split: str) -> Path:
    """``<root>/ImageSets/Segmentation/<split>.txt``."""
    from wsss.data.base import check_id, inside

    reason = check_id(split)
    if reason:
        raise DataError(f"split name {split!r} {reason}")
    return inside(Path(root).joinpath(*SPLIT_DIR), f"{split}.txt")


def read_split(root: str | os.PathLike[str], split: str) -> list[str]:
    """The checked ids of ``ImageSets/Segmentation/<split>.txt`` (see :func:`~wsss.data.base.read_split_file`)."""
    path = split_path(root, split)
    if not path.exists():
        raise split_not_found(Path(root), split, [(path, "VOC layout")])
    return read_split_file(path)


class VOCDataset(SplitDataset):
    """Images, masks and image-level labels of one split of a VOC-layout folder.

    Args:
        root: the dataset folder.
        split: name of ``ImageSets/Segmentation/<split>.txt``.
        mask_dir: mask folder name (default: ``SegmentationClassAug`` for ``train_aug`` when it
            exists, else ``SegmentationClass``).
        labels: image-level labels file (JSON or CSV, see :mod:`wsss.data.labels`); they take
            precedence over the labels read from masks.
        max_side: downscale images and masks whose longer side exceeds it (pixels, aspect kept).
    """

    format = "voc"
    layout = "voc"

    def __init__(self, root: str | os.PathLike[str], split: str, mask_dir: str | None = None,
                 labels: str | os.PathLike[str] | None = None, max_side: int | None = None):  # fmt: skip
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found")
        path = split_path(root, split)
        if not path.exists():
            raise split_not_found(root, split, [(path, "VOC layout")])
        if mask_dir is None:
            mask_dir = (
                AUG_MASK_DIR
                if split == "train_aug" and (root / AUG_MASK_DIR).is_dir()
                else "SegmentationClass"
            )
        super().__init__(root, split, split_file=path, image_dir=root / "JPEGImages", mask_dir=root / mask_dir,
                         classes=read_classes(root), labels=labels, max_side=max_side)  # fmt: skip


def open_dataset(root, split, format="auto", labels=None, **kwargs):
    """Re-export of :func:`wsss.data.open_dataset` (kept so that ``from wsss.data.voc import
    open_dataset`` keeps working)."""
    from wsss.data import open_dataset as _open

    return _open(root, split, format=format, labels=labels, **kwargs)
