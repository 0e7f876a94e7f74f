"""Low-level pieces the dataset readers share and that import nothing else of ``wsss.data``: reading a
small UTF-8 text file (split lists, classes.txt, labels files) and the PASCAL VOC class names."""

from __future__ import annotations

import os
from pathlib import Path

from wsss.errors import DataError

MAX_TEXT_BYTES = 64 << 20  # a split list or classes.txt larger than this is not one

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of a UTF-8 file (a byte-order mark is accepted and dropped).

    A missing file, a directory, a non-UTF-8 (binary) file or one over 64 MiB is a DataError naming
    the file; ``what`` says what it should be (e.g. "split file").
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a {what}")
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise DataError(f"{path}: larger than {MAX_TEXT_BYTES >> 20} MiB, not a {what}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 text file (binary data at byte {exc.start}); expected a {what}"
        ) from None


def read_text_lines(path: str | os.PathLike[str], what: str) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file as ``(line number from 1, stripped line)`` (see
    :func:`read_text` for the checks)."""
    text = read_text(path, what)
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
