"""Label PNGs: the PASCAL VOC palette, and reading/writing single-channel label masks.

Kept apart from :mod:`wsss.metrics` and :mod:`wsss.pseudo` so that both can use it
(``pseudo`` imports ``metrics``, never the other way round).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np

from wsss.errors import DataError

__all__ = ["VOC_PALETTE", "load_label_png", "save_label_png", "voc_palette"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colormap: ``(n, 3)`` uint8 RGB, built by spreading the bits of each index.

    Bits 0, 1, 2 of the index feed the most significant free bit of R, G, B, then the next three
    bits the next one, and so on; so 1 -> (128, 0, 0), 15 -> (192, 128, 128), 255 -> (224, 224, 192).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


VOC_PALETTE: np.ndarray = voc_palette()
VOC_PALETTE.setflags(write=False)


def _as_uint8_mask(mask: object) -> np.ndarray:
    """``mask`` (numpy array or torch tensor, (H, W), integer values 0..255) as a uint8 numpy array."""
    if hasattr(mask, "detach"):  # torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a label mask must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"a label mask must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"label values must lie in 0..255, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def save_label_png(path: str | os.PathLike[str], mask: object) -> None:
    """Write ``mask`` ((H, W), values 0..255) as a palette ('P') PNG with :data:`VOC_PALETTE`.

    The file is written to a temporary file in the same folder and moved into place with
    :func:`os.replace`, so a reader never sees a half-written PNG; on failure the temporary file is removed
    (a full disk is a DataError naming the file).
    """
    from PIL import Image

    arr = _as_uint8_mask(mask)
    path = Path(path)
    arr = np.ascontiguousarray(arr)
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    img.putpalette(VOC_PALETTE.tobytes())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{path}: no space left on device while writing the mask (free some space and "
                            "rerun)") from exc
        raise


def load_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label PNG as a uint8 (H, W) array: palette ('P') images give their indices,
    grayscale ('L') images their values; 16-bit grayscale ('I;16', 'I') is accepted when every value
    is at most 255. Anything else raises :class:`DataError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode.startswith("I;16") or mode == "I":
                wide = np.asarray(img)
                if wide.size and (wide.min() < 0 or wide.max() > 255):
                    raise DataError(
                        f"{path}: 16-bit label PNG holds values {wide.min()}..{wide.max()}; "
                        "class ids must lie in 0..255"
                    )
                return wide.astype(np.uint8)
            if mode not in ("P", "L"):
                raise DataError(
                    f"{path}: label PNG must be single-channel (palette 'P' or grayscale 'L'), "
                    f"got mode {mode!r}"
                )
            arr = np.array(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{path}: cannot read label PNG ({e})") from e
    if arr.ndim != 2:
        raise DataError(f"{path}: label PNG must be single-channel, got array of shape {arr.shape}")
    return arr
