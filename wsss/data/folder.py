"""Plain-folder layouts, and finding which layout a folder has.

``images+masks``: ``images/<id>.<ext>``, optional ``masks/<id>.png`` (uint8 class ids, 255 void;
any image may lack one), ``classes.txt`` (background first), split lists in ``splits/<split>.txt``
(or ``ImageSets/Segmentation/<split>.txt``, not both).

``flat``: ``<id>.<ext>`` images directly in the folder, ``classes.txt``, a labels file (no masks),
split lists as above.

Labels: the ``labels`` argument, else ``labels.json`` or ``labels.csv`` in the folder when present
(see :mod:`wsss.data.labels`), else the masks.
"""

from __future__ import annotations

import os
from pathlib import Path

from wsss.data.base import IMAGE_EXTENSIONS, SplitDataset, inside, read_classes_file, split_not_found
from wsss.errors import DataError

__all__ = ["LAYOUTS", "FolderDataset", "detect_layout", "find_labels_file", "split_dirs"]

LAYOUTS = ("voc", "images+masks", "flat", "coco")
LAYOUT_NAMES = {"voc": "VOC layout", "images+masks": "images/+masks/ layout", "flat": "flat layout",
                "coco": "COCO 2014 layout"}  # fmt: skip
EXPECTED = (
    "JPEGImages/ + SegmentationClass/ (VOC layout), images/ [+ masks/] (images/+masks/ layout), "
    "image files + a labels file (flat layout), or annotations/instances_<split>2014.json (COCO 2014)"
)


def _has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(
                e.name[:1] != "." and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file()
                for e in it
            )
    except OSError:
        return False


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout of a dataset folder: ``"voc"`` (``JPEGImages/``), ``"coco"``
    (``annotations/instances_*2014.json``), ``"images+masks"`` (``images/``) or ``"flat"`` (image files
    in the folder itself). DataError naming the folder and the expected layouts when none matches."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if (root / "JPEGImages").is_dir():
        return "voc"
    if any((root / "annotations").glob("instances_*2014.json")):
        return "coco"
    if (root / "images").is_dir():
        return "images+masks"
    if _has_images(root):
        return "flat"
    raise DataError(f"{root}: no dataset layout found; expected {EXPECTED}")


def split_dirs(root: str | os.PathLike[str], layout: str) -> list[Path]:
    """Folders where split lists of ``layout`` may live, the one :func:`write_splits` uses first."""
    root = Path(root)
    voc = root / "ImageSets" / "Segmentation"
    return [voc] if layout == "voc" else [root / "splits", voc]


def find_split_file(root: Path, split: str, layout: str) -> Path:
    """The split list of ``split``; DataError naming every place looked when there is none, or when
    there are two."""
    from wsss.data.base import check_id

    reason = check_id(split)
    if reason:
        raise DataError(f"split name {split!r} {reason}")
    paths = [inside(d, f"{split}.txt") for d in split_dirs(root, layout)]
    found = [p for p in paths if p.exists()]
    if len(found) > 1:
        raise DataError(f"{found[0]}: split {split!r} is also listed in {found[1]}; keep one")
    if not found:
        raise split_not_found(root, split, [(p, LAYOUT_NAMES[layout]) for p in paths])
    return found[0]


def find_labels_file(root: Path) -> Path | None:
    """``labels.json`` or ``labels.csv`` in ``root`` (DataError when both), or None."""
    found = [root / n for n in ("labels.json", "labels.csv") if (root / n).is_file()]
    if len(found) > 1:
        raise DataError(f"{found[0]}: {found[1].name} is here too; keep one labels file, or pass labels=")
    return found[0] if found else None


class FolderDataset(SplitDataset):
    """One split of an ``images+masks`` or ``flat`` folder (see the module docstring).

    Args:
        root: the dataset folder.
        split: the split name (``splits/<split>.txt``).
        labels: labels file (JSON/CSV); default ``labels.json``/``labels.csv`` in ``root`` if present.
        layout: ``"images+masks"`` or ``"flat"``; detected when None.
        max_side: downscale images and masks whose longer side exceeds it (pixels, aspect kept).
    """

    format = "folder"

    def __init__(self, root: str | os.PathLike[str], split: str, labels: str | os.PathLike[str] | None = None,
                 layout: str | None = None, max_side: int | None = None):  # fmt: skip
        root = Path(root)
        if layout is None:
            layout = detect_layout(root)
            if layout not in ("images+masks", "flat"):
                raise DataError(f"{root}: this is the {LAYOUT_NAMES[layout]}; open it with format={layout!r}")
        elif layout not in ("images+masks", "flat"):
            raise DataError(f"{root}: folder layout must be 'images+masks' or 'flat', got {layout!r}")
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found")
        self.layout = layout
        path = find_split_file(root, split, layout)
        classes_path = root / "classes.txt"
        if not classes_path.exists():
            raise DataError(f"{classes_path}: not found; the {LAYOUT_NAMES[layout]} needs it "
                            "(one class name a line, background first)")  # fmt: skip
        if labels is None:
            labels = find_labels_file(root)
        if layout == "flat":
            image_dir, mask_dir = root, None
            if labels is None:
                raise DataError(f"{root}: the flat layout has no masks, so it needs a labels file: put labels.json "
                                "or labels.csv there, or pass labels=")  # fmt: skip
        else:
            image_dir = root / "images"
            mask_dir = root / "masks" if (root / "masks").is_dir() else None
        super().__init__(root, split, split_file=path, image_dir=image_dir, mask_dir=mask_dir,
                         classes=read_classes_file(classes_path), labels=labels, max_side=max_side)  # fmt: skip
