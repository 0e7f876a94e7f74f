"""Writing split lists for a folder: :func:`write_splits` (all four splits of a folder that has none) and
:func:`make_tune` (a ``tune`` split from VOC's ``train_aug`` minus ``train``).

Split relations, as in PASCAL VOC + SBD with a tune split:

* ``val`` is disjoint from ``train_aug``;
* ``train`` and ``tune`` are subsets of ``train_aug``, disjoint from each other.

Every file is written atomically, only inside the dataset folder, one id a line, sorted.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

from wsss.data.base import ImageFolder, check_id, inside, read_split_file
from wsss.data.folder import detect_layout, find_split_file, split_dirs
from wsss.errors import DataError

__all__ = ["SPLITS", "make_tune", "write_splits"]

SPLITS = ("train_aug", "train", "tune", "val")


def _image_dir(root: Path, layout: str) -> Path:
    return {"voc": root / "JPEGImages", "images+masks": root / "images", "flat": root}[layout]


def _mask_dir(root: Path, layout: str) -> Path | None:
    return {"voc": root / "SegmentationClass", "images+masks": root / "masks"}.get(layout)


def _write_ids(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{i}\n" for i in sorted(ids)))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _existing(root: Path, layout: str, split: str) -> list[Path]:
    return [p for d in split_dirs(root, layout) if (p := inside(d, f"{split}.txt")).exists()]


def write_splits(root: str | os.PathLike[str], tune: float = 0.1, val: float = 0.1, seed: int = 0,
                 force: bool = False) -> dict[str, Path]:  # fmt: skip
    """Write ``train_aug``, ``train``, ``tune`` and ``val`` split lists for a folder of images.

    Every image of the folder (VOC ``JPEGImages/``, ``images/``, or the flat folder itself) is shuffled
    with ``seed``; ``val`` gets ``round(val * n)`` of them and ``train_aug`` the rest; ``tune`` gets
    ``round(tune * n)`` of ``train_aug``, and ``train`` is ``train_aug`` minus ``tune``. So
    ``train_aug = train + tune`` exactly, and ``val`` shares no image with it. When some images have
    masks, ``val`` and ``tune`` (which are scored against masks) are drawn from those only. A fraction
    of 0 leaves that split out (no ``tune.txt``/``val.txt``).

    Files go to ``ImageSets/Segmentation/`` (VOC layout) or ``splits/`` (other layouts).

    Args:
        root: the dataset folder.
        tune, val: fractions of all images, each in [0, 1), together below 1.
        seed: shuffling seed; the same folder and seed give the same splits.
        force: replace existing split lists of these names (otherwise DataError naming one).

    Returns:
        split name -> path of the file written.
    """
    root = Path(root)
    layout = detect_layout(root)
    if layout == "coco":
        raise DataError(f"{root}: COCO 2014 has its own train/val splits; nothing to write")
    if not (0 <= tune < 1 and 0 <= val < 1 and tune + val < 1):
        raise DataError(f"{root}: tune ({tune}) and val ({val}) must be fractions in [0, 1) summing below 1")
    if not force:
        for split in SPLITS:
            found = _existing(root, layout, split)
            if found:
                raise DataError(f"{found[0]}: split list exists; pass force=True to replace it")
    folder = ImageFolder(_image_dir(root, layout))
    ids = []
    for stem, names in sorted(folder.listing().items()):
        if len(names) > 1:
            raise DataError(
                f"{folder.folder}: image {stem!r} is ambiguous: {', '.join(sorted(names))}; keep one"
            )
        reason = check_id(stem)
        if reason:
            raise DataError(f"{folder.folder / names[0]}: file name {stem!r} {reason}")
        ids.append(stem)
    n = len(ids)
    n_val, n_tune = round(val * n), round(tune * n)
    if n - n_val - n_tune < 1 or (val > 0 and n_val < 1) or (tune > 0 and n_tune < 1):
        raise DataError(f"{folder.folder}: {n} images are too few for tune={tune}, val={val}")
    mask_dir = _mask_dir(root, layout)
    with_masks = [i for i in ids if mask_dir is not None and (mask_dir / f"{i}.png").is_file()]
    pool = with_masks or ids  # val and tune come from here
    if n_val + n_tune > len(pool):
        raise DataError(f"{mask_dir}: only {len(pool)} images have masks, val and tune need {n_val + n_tune}")
    rng = random.Random(seed)
    chosen = rng.sample(pool, n_val + n_tune)
    val_ids, tune_ids = chosen[:n_val], chosen[n_val:]
    train_aug = sorted(set(ids) - set(val_ids))
    train = sorted(set(train_aug) - set(tune_ids))
    out_dir = split_dirs(root, layout)[0]
    lists = {"train_aug": train_aug, "train": train, "tune": tune_ids, "val": val_ids}
    written = {}
    for split, members in lists.items():
        if split in ("tune", "val") and not members:
            continue
        for stale in _existing(root, layout, split):  # only reached with force: keep one list per split
            stale.unlink()
        path = inside(out_dir, f"{split}.txt")
        _write_ids(path, members)
        written[split] = path
    return written


def make_tune(root: str | os.PathLike[str], size: int = 1464, seed: int = 0, force: bool = False) -> Path:
    """Write the ``tune`` split list: ``size`` images drawn with ``seed`` from ``train_aug`` minus ``train``
    (so disjoint from ``train`` and ``val``), next to the ``train_aug`` list.

    Args:
        root: a dataset folder with ``train_aug`` and ``train`` split lists (any layout but COCO).
        size: images in ``tune`` (VOC: 1464, as many as ``train``).
        seed: sampling seed.
        force: replace an existing ``tune`` list (False: DataError naming it).

    Returns:
        the path written.
    """
    root = Path(root)
    layout = detect_layout(root)
    if layout == "coco":
        raise DataError(f"{root}: COCO 2014 has no train_aug split to draw a tune split from")
    aug_path = find_split_file(root, "train_aug", layout)
    aug, train = read_split_file(aug_path), set(read_split_file(find_split_file(root, "train", layout)))
    pool = sorted(i for i in aug if i not in train)
    if size < 1:
        raise DataError(f"{root}: tune size must be at least 1, got {size}")
    if len(pool) < size:
        raise DataError(f"{aug_path}: only {len(pool)} train_aug images outside train, asked for {size}")
    path = inside(aug_path.parent, "tune.txt")
    existing = _existing(root, layout, "tune")
    if existing and not force:
        raise DataError(f"{existing[0]}: split list exists; pass force=True (--force) to replace it")
    for stale in existing:
        if stale != path:
            stale.unlink()
    _write_ids(path, random.Random(seed).sample(pool, size))
    return path
