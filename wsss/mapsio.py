"""Map files of a run directory: ``RUN/maps/<method>/<id>.npz``.

Keys: ``maps`` float16 ``(K', H, W)`` — each class map divided by its float32 ``scale`` (stored
alongside, so small gradients never underflow) — and ``classes``, the present class ids (1..K), at the
image's original size. Written atomically (a unique temp file + rename), so a reader, a second writer or a
``kill -9`` never leaves a half-written ``<id>.npz``; :func:`map_file_problem` checks a stored file cheaply.
"""

from __future__ import annotations

import errno
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from wsss.errors import DataError


def save_maps(path: str | Path, maps: np.ndarray, classes: np.ndarray) -> None:
    """``maps`` float ``(K', H, W)`` raw non-negative; ``classes`` int ``(K',)`` class ids 1..K."""
    path = Path(path)
    maps = np.asarray(maps, dtype=np.float32)
    scale = maps.reshape(maps.shape[0], -1).max(axis=1) if maps.size else np.zeros(0, np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    stored = (maps / scale[:, None, None]).astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.npz", dir=path.parent)  # unique per writer
    os.close(fd)
    tmp = Path(name)
    try:
        np.savez_compressed(tmp, maps=stored, scale=scale, classes=np.asarray(classes, dtype=np.int16))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{path}: no space left on device while saving the maps (free some space and rerun; "
                            "the maps already written are kept)") from exc
        raise


MAP_KEYS = ("maps.npy", "scale.npy", "classes.npy")


def map_file_problem(path: str | Path) -> str | None:
    """Why the stored map file ``path`` cannot be trusted (empty, truncated, not a zip, missing arrays,
    members that run past the end of the file), or None when it looks whole. Reads the zip directory only,
    not the arrays: cheap enough to run on every stored file when ``wsss maps`` resumes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "0 bytes"
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            missing = [k for k in MAP_KEYS if k not in infos]
            if missing:
                return f"no {missing[0][:-4]!r} array"
            if any(i.header_offset + i.compress_size > size for i in infos.values()):
                return "truncated"
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        return f"{exc.__class__.__name__}: {exc}"[:120]
    return None


def load_maps(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(maps float32 (K', H, W), classes int (K',))``; DataError naming the file if it is missing,
    empty, truncated or without the keys above."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: map file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty or corrupt (0 bytes; delete it and rerun `wsss maps`)")
    try:
        with np.load(path) as f:
            maps = f["maps"].astype(np.float32) * f["scale"].astype(np.float32)[:, None, None]
            return maps, f["classes"].astype(np.int64)
    except Exception as exc:  # noqa: BLE001 - EOFError, BadZipFile, zlib.error, KeyError, ValueError...: a bad file
        raise DataError(f"{path}: file is empty or corrupt ({exc.__class__.__name__}; delete it and rerun "
                        "`wsss maps`)") from None
