"""What every dataset shares: :class:`Sample`, :func:`read_image`, the dataset protocol, checked ids and
paths, text files (split lists, ``classes.txt``), and :class:`SplitDataset`, the reader behind the VOC
and folder layouts.

Every error a user can act on is a :class:`~wsss.errors.DataError` whose one-line message starts with
the file it is about.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from wsss.data.common import MAX_TEXT_BYTES, read_text, read_text_lines  # noqa: F401 (re-exported)
from wsss.errors import DataError
from wsss.labelio import load_label_png

__all__ = [
    "IMAGE_EXTENSIONS",
    "Dataset",
    "ImageFolder",
    "Sample",
    "SplitDataset",
    "check_id",
    "image_size",
    "inside",
    "read_classes_file",
    "read_image",
    "read_split_file",
    "read_text",
    "read_text_lines",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Image file extensions looked for (case-insensitive)."""
MAX_CLASSES = 255  # background + 254 foreground: ids 0..254 fit uint8 with 255 = void


@dataclass
class Sample:
    """One image: ``image`` uint8 (H, W, 3); ``mask`` uint8 (H, W) class ids (255 void) or None;
    ``labels`` float32 (K,) multi-hot over the foreground classes."""

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    labels: np.ndarray


@runtime_checkable
class Dataset(Protocol):
    """The interface the pipeline uses; every reader (VOC, folder, COCO) implements it.

    ``classes`` lists background first, then the K foreground names; class id ``c`` in a mask is
    ``classes[c]``, and entry ``c - 1`` of a label vector. ``layout`` names the on-disk layout found
    (``"voc"``, ``"images+masks"``, ``"flat"``, ``"coco"``). ``has_mask`` and ``mask_size`` ((H, W) or
    None) are cheap: no pixel decoding.
    """

    root: Path
    split: str
    ids: list[str]
    classes: tuple[str, ...]
    format: str
    layout: str

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...

    def image_path(self, image_id: str) -> Path: ...

    def mask_path(self, image_id: str) -> Path: ...

    def image(self, image_id: str) -> np.ndarray: ...

    def has_mask(self, image_id: str) -> bool: ...

    def mask_size(self, image_id: str) -> tuple[int, int] | None: ...

    def mask(self, image_id: str, required: bool = True) -> np.ndarray | None: ...

    def labels(self, image_id: str, mask: np.ndarray | None = None) -> np.ndarray: ...


# --- images --------------------------------------------------------------------------------------------


def _to_uint8(im: Image.Image, path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an opened image; 16-bit and 32-bit integer images are scaled by 1/257."""
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit grayscale (PNG, TIFF): 0..65535 -> 0..255 by dividing by 257 (65535 = 255 * 257), rounded.
        # Pillow opens some 16-bit files as 32-bit "I"; values are clipped to the 16-bit range.
        wide = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
        grey = ((wide + 128) // 257).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"{path}: 32-bit floating-point image; convert it to 8-bit RGB")
    return np.asarray(im.convert("RGB"))


def read_image(path: str | os.PathLike[str], max_side: int | None = None) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3).

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted; a 16-bit image
    (mode ``I;16``/``I``) maps 0..65535 to 0..255 by dividing by 257. With ``max_side`` (pixels), an
    image whose longer side exceeds it is downscaled, aspect ratio kept, to ``max_side`` on its longer
    side (bilinear); smaller images are returned unchanged. Images above Pillow's decompression-bomb
    limit (about 179 megapixels) are refused. Every failure is a DataError naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if max_side is not None:
                w, h = im.size
                if max(w, h) > max_side:
                    size = _scaled_size(w, h, max_side)
                    im.draft("RGB", size)  # JPEG: decode at a reduced scale, never below ``size``
                    rgb = _to_uint8(im, path)
                    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
            return _to_uint8(im, path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _image_error(path, exc, "image not found") from None


def _scaled_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side ``max_side`` and the aspect ratio kept (each side >= 1)."""
    if max_side < 1:
        raise DataError(f"max_side must be a positive number of pixels, got {max_side}")
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) in pixels from the file header, without decoding the pixels. DataError names
    the file when it is missing or not an image."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _image_error(path, exc, "not found") from None
    return h, w


def _image_error(path: Path, exc: Exception, missing: str) -> DataError:
    """The one-line error of a failed image read (``missing``: the words for a file that is not there)."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: {missing}")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a directory, not an image")
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(f"{path}: image too large to read ({exc})")
    return DataError(f"{path}: unreadable image ({exc.__class__.__name__})")


def resize_mask(mask: np.ndarray, max_side: int | None) -> np.ndarray:
    """``mask`` (H, W) downscaled with nearest neighbour exactly as :func:`read_image` scales an image of
    the same size (a no-op when ``max_side`` is None or not exceeded)."""
    h, w = mask.shape
    if max_side is None or max(w, h) <= max_side:
        return mask
    size = _scaled_size(w, h, max_side)
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


# --- ids and paths -------------------------------------------------------------------------------------


def check_id(image_id: str) -> str | None:
    """Why ``image_id`` cannot name a file inside a dataset folder, or None when it can.

    Refused: empty, any whitespace (ids with spaces are not supported), control characters (NUL
    included), ``/`` or ``\\``, ``..``, a leading ``.`` (hidden files), and absolute or drive paths.
    """
    if not image_id:
        return "is empty"
    if any(ch.isspace() for ch in image_id):
        return "contains whitespace (ids with spaces are not supported; rename the file)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in image_id):
        return "contains a control character (NUL or similar)"
    if "/" in image_id or "\\" in image_id:
        return "contains a path separator (ids are file names without folder or extension)"
    if ".." in image_id:
        return "contains '..'"
    if image_id.startswith("."):
        return "starts with '.'"
    if PurePosixPath(image_id).anchor or PureWindowsPath(image_id).anchor:
        return "is an absolute path"
    return None


def inside(folder: str | os.PathLike[str], name: str) -> Path:
    """``folder / name``, checked to stay inside ``folder`` (lexically: symlinks inside the dataset are
    followed as usual). DataError when ``name`` is absolute or climbs out with ``..``."""
    folder = Path(folder)
    path = folder / name
    base, full = os.path.abspath(folder), os.path.abspath(path)
    if full == base or os.path.commonpath([base, full]) != base:
        raise DataError(f"{folder}: {name!r} leads outside this folder")
    return path


# --- text files ----------------------------------------------------------------------------------------


def image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``inputs`` (files, or folders whose images of :data:`IMAGE_EXTENSIONS` are taken in
    name order), each once; two files with the same stem are refused (their outputs would collide)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: image not found")
    if not files:
        raise DataError("no input images given")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen and seen[f.stem] != f:
            raise DataError(f"{f}: same name as {seen[f.stem]}; both would write {f.stem}.png")
        seen[f.stem] = f
    return list(dict.fromkeys(files))


def read_split_file(path: str | os.PathLike[str]) -> list[str]:
    """The image ids of a split list (one id a line, blank lines skipped), in file order.

    Each id is checked once here (see :func:`check_id`); a bad id names the file and its line number,
    an id listed twice names both lines. An empty list is refused.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for n, image_id in read_text_lines(path, "split file"):
        reason = check_id(image_id)
        if reason:
            raise DataError(f"{path}: line {n}: id {image_id!r} {reason}")
        if image_id in seen:
            raise DataError(f"{path}: id {image_id!r} is listed twice (lines {seen[image_id]} and {n})")
        seen[image_id] = n
    if not seen:
        raise DataError(f"{path}: split {path.stem!r} is empty")
    return list(seen)


def read_classes_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names of a ``classes.txt``: one a line, ``background`` first, then the K >= 1 foreground
    classes in class-id order (at most 254). Duplicate names are refused (both line numbers named)."""
    path = Path(path)
    lines = read_text_lines(path, "classes file (one class name a line, background first)")
    seen: dict[str, int] = {}
    for n, name in lines:
        if name in seen:
            raise DataError(f"{path}: class {name!r} is listed twice (lines {seen[name]} and {n})")
        seen[name] = n
    names = tuple(seen)
    if len(names) < 2 or names[0] != "background":
        raise DataError(f"{path}: must list 'background' first, then at least one class")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} classes; at most {MAX_CLASSES} (id 255 is void)")
    return names


# --- one listing per image folder ----------------------------------------------------------------------


class ImageFolder:
    """Finds ``<id>.<ext>`` in one folder for any of :data:`IMAGE_EXTENSIONS`, from one cached listing.

    Args:
        folder: the image folder.
        default_ext: the extension of the path reported for an id that has no file.
    """

    def __init__(self, folder: Path, default_ext: str = ".jpg"):
        self.folder = folder
        self.default_ext = default_ext
        self._files: dict[str, list[str]] | None = None

    def listing(self) -> dict[str, list[str]]:
        """stem -> file names with an image extension (listed once, then cached; hidden files skipped)."""
        if self._files is None:
            files: dict[str, list[str]] = {}
            try:
                with os.scandir(self.folder) as it:
                    for entry in it:
                        stem, ext = os.path.splitext(entry.name)
                        if ext.lower() in IMAGE_EXTENSIONS and not entry.name.startswith("."):
                            files.setdefault(stem, []).append(entry.name)
            except FileNotFoundError:
                pass
            except NotADirectoryError:
                raise DataError(f"{self.folder}: not a folder") from None
            self._files = files
        return self._files

    def path(self, image_id: str) -> Path:
        """The image file of ``image_id``; ``<id><default_ext>`` when there is none (reading it then fails
        naming that path). Two files for one id (``a.jpg`` and ``a.png``) are a DataError."""
        names = self.listing().get(image_id)
        if names is None:  # not in the listing: look once more in case it was written since
            names = [
                f"{image_id}{ext}"
                for ext in IMAGE_EXTENSIONS
                if inside(self.folder, f"{image_id}{ext}").is_file()
            ]
        if len(names) > 1:
            raise DataError(
                f"{self.folder}: image {image_id!r} is ambiguous: {', '.join(sorted(names))}; keep one"
            )
        return inside(self.folder, names[0] if names else f"{image_id}{self.default_ext}")

    def ids(self) -> list[str]:
        """Every stem with an image file, sorted."""
        return sorted(self.listing())


# --- the reader behind the VOC and folder layouts ------------------------------------------------------


class DatasetBase:
    """What every reader shares: ``len``, ``ds[i]`` (a :class:`Sample`, checked by :meth:`_sample`) and
    ``num_classes``; a reader gives ``ids``, ``classes``, ``image``, ``mask``, ``labels``."""

    ids: list[str]
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.classes) - 1

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        return self._sample(self.ids[i])

    def _sample(self, image_id: str) -> Sample:
        raise NotImplementedError


class SplitDataset(DatasetBase):
    """Images, masks and image-level labels of one split listed in a text file.

    Subclasses (:class:`~wsss.data.voc.VOCDataset`, :class:`~wsss.data.folder.FolderDataset`) find the
    folders; this class reads them. Labels come from the labels file when one is given, else from the
    mask. A split without masks works for ``image`` and ``labels`` (with a labels file); ``mask`` then
    fails, only when called, naming the missing file.

    Args:
        root: the dataset folder.
        split: the split name.
        split_file: its id list (checked by :func:`read_split_file`).
        image_dir: folder of ``<id>.<ext>`` images.
        mask_dir: folder of ``<id>.png`` label masks (uint8 class ids, 255 void), or None (no masks).
        classes: background first.
        labels: a labels file (see :func:`wsss.data.labels.read_labels_file`), or None.
        max_side: downscale images (bilinear) and masks (nearest) whose longer side exceeds it, aspect
            kept; None reads them at full size.
    """

    format = "voc"
    layout = "voc"

    def __init__(self, root: Path, split: str, *, split_file: Path, image_dir: Path, mask_dir: Path | None,
                 classes: Sequence[str], labels: str | os.PathLike[str] | None = None,
                 max_side: int | None = None):  # fmt: skip
        from wsss.data.labels import read_labels_file

        self.root = root
        self.split = split
        self.split_file = split_file
        self.classes = tuple(classes)
        self.ids = read_split_file(split_file)
        self.images = ImageFolder(image_dir)
        self.mask_dir = mask_dir
        self.max_side = max_side
        self.labels_file = Path(labels) if labels is not None else None
        self._labels: dict[str, np.ndarray] = {}
        if self.labels_file is not None:
            # every image needs labels from the file or a mask: a file for the training images alone serves
            # a dataset whose scored splits have masks
            self._labels = read_labels_file(self.labels_file, self.classes,
                                            [i for i in self.ids if not self.has_mask(i)])
        self._from_masks: dict[str, np.ndarray] = {}

    @property
    def image_dir(self) -> Path:
        return self.images.folder

    def _sample(self, image_id: str) -> Sample:
        image = self.image(image_id)
        mask = self.mask(image_id, required=False)
        if mask is not None and mask.shape != image.shape[:2]:
            raise DataError(
                f"{self.mask_path(image_id)}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                f"image is {image.shape[1]}x{image.shape[0]}"
            )
        return Sample(image_id, image, mask, self.labels(image_id, mask))

    def image_path(self, image_id: str) -> Path:
        """The image file of ``image_id`` (any extension of :data:`IMAGE_EXTENSIONS`)."""
        return self.images.path(image_id)

    def mask_path(self, image_id: str) -> Path:
        """``<mask folder>/<id>.png`` (it may not exist)."""
        return inside(self.mask_dir if self.mask_dir is not None else self.root / "masks", f"{image_id}.png")

    def image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        path = self.image_path(image_id)
        if not path.exists():
            raise DataError(f"{path}: image not found (no {image_id}.* image in {path.parent})")
        return read_image(path, self.max_side)

    def has_mask(self, image_id: str) -> bool:
        """Whether ``image_id`` has a mask file (one stat, no decoding)."""
        return self.mask_dir is not None and self.mask_path(image_id).is_file()

    def mask_size(self, image_id: str) -> tuple[int, int] | None:
        """(height, width) of the mask from its PNG header, or None without a mask (no decoding)."""
        return image_size(self.mask_path(image_id)) if self.has_mask(image_id) else None

    def mask(self, image_id: str, required: bool = True) -> np.ndarray | None:
        """uint8 (H, W) class ids 0..K, 255 void. A missing mask is a DataError naming the file when
        ``required``, else None. Class ids above K raise DataError naming the file."""
        path = self.mask_path(image_id)
        if not self.has_mask(image_id):
            if required:
                why = "this split has no mask folder" if self.mask_dir is None else "mask not found"
                raise DataError(f"{path}: {why} (split {self.split!r} of the {self.layout} layout)")
            return None
        mask = load_label_png(path)
        bad = (mask > self.num_classes) & (mask != 255)
        if bad.any():
            raise DataError(f"{path}: class id {int(mask[bad].max())} out of range (K = {self.num_classes})")
        return resize_mask(mask, self.max_side)

    def labels(self, image_id: str, mask: np.ndarray | None = None) -> np.ndarray:
        """float32 (K,) multi-hot image-level labels: from the labels file when given, else the classes
        present in the mask (``mask``, when passed, saves reading it again)."""
        if image_id in self._labels:
            return self._labels[image_id]
        if image_id not in self._from_masks:
            if mask is None:
                mask = self.mask(image_id, required=False)
            if mask is None:
                raise DataError(f"{self.mask_path(image_id)}: mask not found and no labels file given")
            present = np.unique(mask)
            vec = np.zeros(self.num_classes, np.float32)
            fg = present[(present > 0) & (present != 255)]
            vec[fg.astype(int) - 1] = 1
            self._from_masks[image_id] = vec
        return self._from_masks[image_id]


def available_splits(*folders: Path) -> list[str]:
    """Names of the ``*.txt`` files in ``folders`` (for error messages)."""
    names: set[str] = set()
    for folder in folders:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.txt"))
    return sorted(names)


def split_not_found(root: Path, split: str, candidates: Sequence[tuple[Path, str]]) -> DataError:
    """The error for a missing split: every place looked (with its layout), the splits that do exist,
    and how to create splits."""
    looked = " or ".join(f"{p} ({layout})" for p, layout in candidates)
    have = available_splits(*{p.parent for p, _ in candidates})
    there = f"; splits found: {', '.join(have)}" if have else ""
    return DataError(f"split file not found: {looked}{there}; create splits with `wsss data split {root}`")
