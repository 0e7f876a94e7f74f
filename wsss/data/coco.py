"""COCO 2014 reader, behind the same interface as the other readers (:class:`wsss.data.base.Dataset`).

Official layout: ``<root>/train2014/COCO_train2014_000000000009.jpg`` …, ``<root>/val2014/…``,
``<root>/annotations/instances_{train,val}2014.json``; read through pycocotools (the ``[coco]`` extra).

* Classes: the 80 non-contiguous category ids, sorted, become 1..80 with their JSON names; 0 is
  background.
* Semantic masks: non-crowd instances painted in annotation order (a later one covers an earlier
  one), then crowd regions last as 255 (void). An image without annotations is all background.
  Masks are rasterized once and cached as label PNGs (default ``<root>/wsss_masks/<split>2014/``),
  written atomically and reused when present; delete the cache folder if the annotations change.
* Image-level labels: the categories of the image's non-crowd annotations, or a labels file
  (``labels=``, see :mod:`wsss.data.labels`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from wsss.data.base import DatasetBase, Sample, image_size, inside, read_image, resize_mask
from wsss.errors import DataError, MissingDependencyError
from wsss.labelio import load_label_png, save_label_png

SPLITS = ("train", "val")


def _import_coco():
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise MissingDependencyError("reading COCO needs pycocotools: pip install 'wsss[coco]'") from None
    return COCO


class COCODataset(DatasetBase):
    """Images, semantic masks and image-level labels of COCO 2014 ``train`` or ``val``.

    Args:
        root: the folder holding ``train2014/``, ``val2014/`` and ``annotations/``.
        split: ``"train"`` or ``"val"``.
        cache_dir: where rasterized masks are cached (default ``<root>/wsss_masks/<split>2014/``).
        labels: image-level labels file (JSON/CSV over these class names), used instead of the
            annotations' categories.
        max_side: downscale images and masks whose longer side exceeds it (pixels, aspect kept).
    """

    format = "coco"
    layout = "coco"

    def __init__(self, root: str | Path, split: str, cache_dir: str | Path | None = None,
                 labels: str | os.PathLike[str] | None = None, max_side: int | None = None):  # fmt: skip
        coco_cls = _import_coco()
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        if split not in SPLITS:
            raise DataError(f"{self.root}: COCO 2014 split must be 'train' or 'val', got {split!r}")
        self.split = split
        self.image_dir = self.root / f"{split}2014"
        self.annotation_path = self.root / "annotations" / f"instances_{split}2014.json"
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else self.root / "wsss_masks" / f"{split}2014"
        )

        self._coco = self._load_index(coco_cls)
        path = self.annotation_path
        cats = self._coco.cats
        if not cats:
            raise DataError(f"{path}: no categories")
        cat_ids = sorted(cats)
        self._class_of = {cid: i + 1 for i, cid in enumerate(cat_ids)}  # COCO category id -> 1..K
        self.classes = ("background", *(str(cats[cid]["name"]) for cid in cat_ids))

        self._image_of: dict[str, int] = {}  # file stem -> COCO image id
        for img in self._coco.imgs.values():
            stem = Path(img["file_name"]).stem
            if stem in self._image_of:
                raise DataError(f"{path}: file {img['file_name']!r} is listed twice")
            self._image_of[stem] = img["id"]
        self.ids = sorted(self._image_of)

        self._present: dict[int, tuple[int, ...]] = {}  # COCO image id -> class indices (non-crowd)
        for ann in self._coco.anns.values():
            cid = ann.get("category_id")
            if cid not in self._class_of:
                raise DataError(f"{path}: annotation {ann.get('id')} has unknown category id {cid!r}")
            if ann.get("image_id") not in self._coco.imgs:
                raise DataError(
                    f"{path}: annotation {ann.get('id')} has unknown image id {ann.get('image_id')!r}"
                )
        for img_id, anns in self._coco.imgToAnns.items():
            found = {self._class_of[a["category_id"]] for a in anns if not a.get("iscrowd", 0)}
            self._present[img_id] = tuple(sorted(found))
        self.max_side = max_side
        self.labels_file = Path(labels) if labels is not None else None
        self._labels: dict[str, np.ndarray] = {}
        if self.labels_file is not None:
            from wsss.data.labels import read_labels_file

            self._labels = read_labels_file(self.labels_file, self.classes, self.ids)

    def _load_index(self, coco_cls):
        path = self.annotation_path
        if not path.exists():
            raise DataError(f"{path}: COCO annotation file not found (split {self.split!r})")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
            raise DataError(f"{path}: not a COCO instances file (needs images, annotations, categories)")
        coco = coco_cls()
        coco.dataset = data
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                coco.createIndex()
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{path}: malformed COCO instances file ({exc.__class__.__name__} {exc})"
            ) from None
        return coco

    def _sample(self, image_id: str) -> Sample:
        image = self.image(image_id)
        (h, w), (mh, mw) = image_size(self.image_path(image_id)), self.mask_size(image_id)
        if (h, w) != (mh, mw):
            raise DataError(
                f"{self.image_path(image_id)}: image is {w}x{h}, but {self.annotation_path} gives {mw}x{mh}"
            )
        return Sample(image_id, image, self.mask(image_id), self.labels(image_id))

    def _record(self, image_id: str) -> dict:
        if image_id not in self._image_of:
            raise DataError(f"{self.annotation_path}: no image {image_id!r} in split {self.split!r}")
        return self._coco.imgs[self._image_of[image_id]]

    def image_path(self, image_id: str) -> Path:
        return inside(self.image_dir, self._record(image_id)["file_name"])

    def mask_path(self, image_id: str) -> Path:
        """The cached label PNG (it may not be written yet)."""
        return inside(self.cache_dir, f"{image_id}.png")

    def image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        return read_image(self.image_path(image_id), self.max_side)

    def has_mask(self, image_id: str) -> bool:
        """Always True for a known id: COCO masks are rasterized from the annotations."""
        self._record(image_id)
        return True

    def mask_size(self, image_id: str) -> tuple[int, int]:
        """(height, width) the annotations give for the image (no decoding)."""
        rec = self._record(image_id)
        return rec["height"], rec["width"]

    def mask(self, image_id: str, required: bool = True) -> np.ndarray:
        """uint8 (H, W) class ids 0..K, 255 on crowd regions; cached on disk after the first call.

        COCO masks can always be computed, so ``required`` changes nothing (it is kept for the interface).
        """
        rec = self._record(image_id)
        size = (rec["height"], rec["width"])
        path = self.mask_path(image_id)
        if path.exists():
            mask = load_label_png(path)
            if mask.shape != size:
                raise DataError(
                    f"{path}: cached mask is {mask.shape[1]}x{mask.shape[0]}, but "
                    f"{self.annotation_path} gives {size[1]}x{size[0]}; delete the cache folder"
                )
            bad = (mask > self.num_classes) & (mask != 255)
            if bad.any():
                raise DataError(
                    f"{path}: class id {int(mask[bad].max())} out of range (K={self.num_classes})"
                )
            return resize_mask(mask, self.max_side)
        mask = self._rasterize(rec)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            save_label_png(path, mask)
        except OSError as exc:
            raise DataError(
                f"{self.cache_dir}: cannot write the mask cache ({exc.strerror or exc}); pass cache_dir"
            ) from None
        return resize_mask(mask, self.max_side)

    def _rasterize(self, rec: dict) -> np.ndarray:
        size = (rec["height"], rec["width"])
        mask = np.zeros(size, np.uint8)
        crowd = []
        for ann in self._coco.imgToAnns.get(rec["id"], []):
            if ann.get("iscrowd", 0):
                crowd.append(ann)  # painted last, over every instance
            else:
                mask[self._instance(ann, size)] = self._class_of[ann["category_id"]]
        for ann in crowd:
            mask[self._instance(ann, size)] = 255
        return mask

    def _instance(self, ann: dict, size: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) region of one annotation."""
        if not ann.get("segmentation"):
            return np.zeros(size, bool)
        try:
            region = self._coco.annToMask(ann).astype(bool)
        except Exception as exc:  # pycocotools raises assorted errors on malformed segmentations
            raise DataError(
                f"{self.annotation_path}: annotation {ann.get('id')} has a malformed "
                f"segmentation ({exc.__class__.__name__})"
            ) from None
        if region.shape != size:
            raise DataError(
                f"{self.annotation_path}: annotation {ann.get('id')} is {region.shape[1]}x"
                f"{region.shape[0]}, its image is {size[1]}x{size[0]}"
            )
        return region

    def labels(self, image_id: str, mask: np.ndarray | None = None) -> np.ndarray:
        """float32 (K,) multi-hot image-level labels from the labels file when given, else from the
        non-crowd annotations (``mask`` is unused)."""
        if image_id in self._labels:
            return self._labels[image_id]
        present = self._present.get(self._record(image_id)["id"], ())
        vec = np.zeros(self.num_classes, np.float32)
        if present:
            vec[np.asarray(present) - 1] = 1
        return vec
