"""PASCAL VOC layout reader (the one on-disk format; the built-in benchmark writes it too).

``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (class index per pixel, 255 = void; palette
or grayscale PNG), ``ImageSets/Segmentation/<split>.txt``, optional ``classes.txt`` (background first;
the 20 VOC devkit names when absent). SBD's ``SegmentationClassAug`` + ``train_aug.txt`` is a split like
any other: ``train_aug`` reads its masks from ``SegmentationClassAug`` when that folder exists.
Image-level labels come from the masks, or from a labels file (IRN's ``cls_labels.npy`` or JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsss.errors import DataError
from wsss.labelio import load_label_png

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
AUG_MASK_DIR = "SegmentationClassAug"


@dataclass
class Sample:
    """One image: ``image`` uint8 (H, W, 3); ``mask`` uint8 (H, W) or None; ``labels`` float32 (K,)."""

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    labels: np.ndarray


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale, palette and RGBA images are converted. DataError names the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc.__class__.__name__})") from None


def read_classes(root: Path) -> tuple[str, ...]:
    path = root / "classes.txt"
    if not path.exists():
        return VOC_CLASSES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2 or names[0] != "background":
        raise DataError(f"{path}: must list 'background' first, then at least one class")
    return names


def read_split(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.exists():
        raise DataError(f"{path}: split file not found (split {split!r})")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path}: split {split!r} is empty")
    return ids


class VOCDataset:
    """Images, masks and image-level labels of one split of a VOC-layout folder.

    Args:
        root: the dataset folder.
        split: name of ``ImageSets/Segmentation/<split>.txt``.
        mask_dir: mask folder name (default: ``SegmentationClassAug`` for ``train_aug`` when it
            exists, else ``SegmentationClass``).
        labels_file: image-level labels instead of masks: IRN's ``cls_labels.npy`` (a pickled dict
            id -> K-vector; keys as ids or as IRN's integer form) or JSON ``{id: [class names]}``.
    """

    format = "voc"

    def __init__(self, root: str | Path, split: str, mask_dir: str | None = None,
                 labels_file: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        self.split = split
        self.classes = read_classes(self.root)
        self.ids = read_split(self.root, split)
        if mask_dir is None:
            mask_dir = AUG_MASK_DIR if split == "train_aug" and (self.root / AUG_MASK_DIR).is_dir() else "SegmentationClass"
        self.mask_dir = self.root / mask_dir
        self._labels: dict[str, np.ndarray] = {}
        if labels_file is not None:
            self._labels = self._read_labels_file(Path(labels_file))

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.classes) - 1

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        image_id = self.ids[i]
        image = self.image(image_id)
        mask = self.mask(image_id, required=False)
        if mask is not None and mask.shape != image.shape[:2]:
            raise DataError(f"{self.mask_path(image_id)}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                            f"image is {image.shape[1]}x{image.shape[0]}")
        return Sample(image_id, image, mask, self.labels(image_id, mask))

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.png"

    def image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def mask(self, image_id: str, required: bool = True) -> np.ndarray | None:
        """uint8 (H, W) class ids, 255 void. Class ids beyond K raise DataError naming the file."""
        path = self.mask_path(image_id)
        if not path.exists():
            if required:
                raise DataError(f"{path}: mask not found")
            return None
        mask = load_label_png(path)
        bad = (mask > self.num_classes) & (mask != 255)
        if bad.any():
            raise DataError(f"{path}: class id {int(mask[bad].max())} out of range (K = {self.num_classes})")
        return mask

    def labels(self, image_id: str, mask: np.ndarray | None = None) -> np.ndarray:
        """float32 (K,) multi-hot image-level labels."""
        if image_id not in self._labels:
            if mask is None:
                mask = self.mask(image_id, required=False)
            if mask is None:
                raise DataError(f"{self.mask_path(image_id)}: mask not found and no labels file given")
            present = np.unique(mask)
            vec = np.zeros(self.num_classes, np.float32)
            fg = present[(present > 0) & (present != 255)]
            vec[fg.astype(int) - 1] = 1
            self._labels[image_id] = vec
        return self._labels[image_id]

    def _read_labels_file(self, path: Path) -> dict[str, np.ndarray]:
        if not path.exists():
            raise DataError(f"{path}: labels file not found")
        k = self.num_classes
        out: dict[str, np.ndarray] = {}
        if path.suffix == ".npy":
            # IRN's cls_labels.npy is a pickled dict; it is read only from a path the user names.
            raw = np.load(path, allow_pickle=True).item()
            for key, vec in raw.items():
                vec = np.asarray(vec, np.float32).reshape(-1)
                if vec.shape[0] != k:
                    raise DataError(f"{path}: label vector of {key} has {vec.shape[0]} entries, expected {k}")
                out[str(key)] = vec
            for image_id in self.ids:  # IRN keys '2007_000032' as the integer 2007000032
                alt = image_id.replace("_", "")
                if image_id not in out and alt in out:
                    out[image_id] = out[alt]
        else:
            try:
                raw = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc.msg})") from None
            names = {n: i for i, n in enumerate(self.classes[1:])}
            for key, present in raw.items():
                vec = np.zeros(k, np.float32)
                for name in present:
                    if name not in names:
                        raise DataError(f"{path}: unknown class {name!r} for image {key}")
                    vec[names[name]] = 1
                out[str(key)] = vec
        missing = [i for i in self.ids if i not in out]
        if missing:
            raise DataError(f"{path}: no labels for {len(missing)} image(s) of split {self.split!r}, e.g. {missing[0]}")
        return out


def open_dataset(root: str | Path, split: str, format: str = "voc", **kwargs):
    """Open a split of a dataset folder (``voc`` layout, or ``coco`` 2014 via pycocotools)."""
    if format == "voc":
        return VOCDataset(root, split, **kwargs)
    if format == "coco":
        from wsss.data.coco import COCODataset

        return COCODataset(root, split, **kwargs)
    raise DataError(f"unknown dataset format {format!r} (voc or coco)")
