"""Image-level labels files: JSON and CSV, read without pickle; IRN's pickled ``cls_labels.npy`` only
through an explicit, one-time :func:`convert_irn_labels`.

Formats (chosen by the file extension; ids as in the split lists, class names as in ``classes``):

* ``.json``: an object ``{"<id>": ["dog", "person"], "<id2>": [], ...}``: the foreground classes
  present in each image (``background`` is not a label).
* ``.csv``: a header ``id,<class>,<class>,...`` naming every foreground class exactly once (any
  order), then one row per image with 0 or 1 in each class column::

      id,aeroplane,bicycle,...,tvmonitor
      2007_000032,1,0,...,0

* ``.npy``: never unpickled when read. IRN's ``cls_labels.npy`` (a pickled dict id -> K-vector) is
  refused with the command that converts it once to JSON: :func:`convert_irn_labels`.

A labels file may list more images than a split (one file for ``train_aug`` serves ``train``); every
id of the split must be in it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from wsss.data.common import VOC_CLASSES, read_text
from wsss.errors import DataError

__all__ = ["LABEL_SUFFIXES", "convert_irn_labels", "read_labels_file", "write_labels_json"]

LABEL_SUFFIXES = (".json", ".csv", ".npy")


def read_labels_file(path: str | os.PathLike[str], classes: Sequence[str],
                     ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Read a labels file (format from its extension, see the module docstring).

    Args:
        path: ``.json``, ``.csv`` (or ``.npy``, refused with a conversion hint).
        classes: background first, then the K foreground names.
        ids: ids that must all have labels (a split), or None.

    Returns:
        id -> float32 (K,) multi-hot vector.

    Raises:
        DataError: one line naming the file and what is wrong (not found, bad JSON/CSV, unknown class
        name, wrong number of columns or values, an id without labels).
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a labels file (.json or .csv)")
    if not path.exists():
        raise DataError(f"{path}: labels file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        out = _read_json(path, classes)
    elif suffix == ".csv":
        out = _read_csv(path, classes)
    elif suffix == ".npy":
        _refuse_npy(path)
    else:
        raise DataError(f"{path}: unknown labels file type {path.suffix!r}; use .json or .csv")
    if ids is not None:
        missing = [i for i in ids if i not in out]
        if missing:
            raise DataError(
                f"{path}: no labels for {len(missing)} image(s) of the split, e.g. {missing[0]!r}"
            )
    return out


def _read_json(path: Path, classes: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        raw = json.loads(read_text(path, "labels file (JSON)"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise DataError(
            f'{path}: expected a JSON object {{"<id>": ["<class>", ...]}}, got {type(raw).__name__}'
        )
    index = {name: i for i, name in enumerate(classes[1:])}
    out: dict[str, np.ndarray] = {}
    for key, present in raw.items():
        if not isinstance(present, list) or not all(isinstance(n, str) for n in present):
            raise DataError(f"{path}: labels of {key!r} must be a list of class names, got {present!r:.60}")
        vec = np.zeros(len(index), np.float32)
        for name in present:
            if name not in index:
                raise DataError(f"{path}: unknown class {name!r} for image {key!r}{_known(classes)}")
            vec[index[name]] = 1
        out[key] = vec
    return out


def _read_csv(path: Path, classes: Sequence[str]) -> dict[str, np.ndarray]:
    reader = csv.reader(io.StringIO(read_text(path, "labels file (CSV)"), newline=""))
    try:
        rows = [(reader.line_num, [f.strip() for f in row]) for row in reader if any(f.strip() for f in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV (line {reader.line_num}: {exc})") from None
    if not rows:
        raise DataError(f"{path}: empty labels file")
    (n, header), fg = rows[0], list(classes[1:])
    if header[0] != "id":
        raise DataError(f"{path}: line {n}: header must be 'id,<class>,...' with one 0/1 column per class")
    cols = header[1:]
    for name in cols:
        if name not in fg:
            raise DataError(f"{path}: header names unknown class {name!r}{_known(classes)}")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DataError(f"{path}: header lists class {dup[0]!r} twice")
    absent = [c for c in fg if c not in cols]
    if absent:
        raise DataError(
            f"{path}: header has no column for class {absent[0]!r} (every class needs one, 0 or 1)"
        )
    where = [fg.index(c) for c in cols]
    out: dict[str, np.ndarray] = {}
    for n, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}: line {n} has {len(row)} fields, the header has {len(header)}")
        image_id, values = row[0], row[1:]
        if any(v not in ("0", "1") for v in values):
            raise DataError(f"{path}: line {n}: class columns must be 0 or 1")
        if image_id in out:
            raise DataError(f"{path}: line {n}: id {image_id!r} is listed twice")
        vec = np.zeros(len(fg), np.float32)
        vec[where] = np.asarray(values, dtype=np.float32)
        out[image_id] = vec
    return out


def _refuse_npy(path: Path) -> None:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: a pickled labels file (IRN's cls_labels.npy) is never loaded; convert it once, if you "
                f'trust it: python -c "from wsss.data.labels import convert_irn_labels; '
                f"convert_irn_labels('{path}', 'labels.json', trust=True)\""
            ) from None
        raise DataError(f"{path}: not a numpy .npy file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    raise DataError(
        f"{path}: a plain {arr.shape} array has no image ids; write labels as JSON or CSV (one row per id)"
    )


def _known(classes: Sequence[str]) -> str:
    names = list(classes[1:])
    return f" (classes: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"


def write_labels_json(
    path: str | os.PathLike[str], labels: dict[str, np.ndarray], classes: Sequence[str]
) -> Path:
    """Write id -> (K,) multi-hot vectors as a JSON labels file (class names, sorted ids)."""
    path = Path(path)
    fg = list(classes[1:])
    data = {}
    for image_id in sorted(labels):
        vec = np.asarray(labels[image_id]).reshape(-1)
        if vec.shape[0] != len(fg):
            raise DataError(f"{path}: labels of {image_id!r} have {vec.shape[0]} entries, expected {len(fg)}")
        data[image_id] = [fg[c] for c in np.flatnonzero(vec > 0)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=0) + "\n")
    os.replace(tmp, path)
    return path


def _irn_key(key: object) -> str:
    """IRN's id: VOC ids as integers (2007_000032 -> 2007000032); strings are kept."""
    if isinstance(key, (int, np.integer)):
        s = str(int(key))
        return f"{s[:4]}_{s[4:]}" if len(s) == 10 else s
    return str(key)


def convert_irn_labels(npy: str | os.PathLike[str], out_json: str | os.PathLike[str], *, trust: bool = False,
                       classes: Sequence[str] | None = None) -> Path:  # fmt: skip
    """Convert IRN's ``cls_labels.npy`` (a pickled dict id -> K-vector) to a JSON labels file.

    This is the only place wsss unpickles anything: unpickling runs code from the file, so use it
    only on a file you trust, and say so with ``trust=True``. IRN's integer keys become VOC ids
    (2007000032 -> ``"2007_000032"``).

    Args:
        npy: the pickled ``.npy`` file.
        out_json: the JSON file to write (replaced if it exists).
        trust: must be True.
        classes: background first, then the K foreground names (default: the 20 VOC classes).

    Returns:
        ``out_json`` as a Path.
    """

    npy = Path(npy)
    if not trust:
        raise DataError(
            f"{npy}: unpickling runs code from the file; pass trust=True only for a file you trust"
        )
    classes = tuple(classes) if classes is not None else VOC_CLASSES
    try:
        raw = np.load(npy, allow_pickle=True)
        raw = raw.item() if raw.dtype == object and raw.shape == () else raw
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{npy}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{npy}: expected a pickled dict id -> label vector (IRN's cls_labels.npy)")
    k = len(classes) - 1
    labels: dict[str, np.ndarray] = {}
    for key, vec in raw.items():
        vec = np.asarray(vec, np.float32).reshape(-1)
        if vec.shape[0] != k:
            raise DataError(f"{npy}: label vector of {key!r} has {vec.shape[0]} entries, expected {k}")
        labels[_irn_key(key)] = vec
    return write_labels_json(out_json, labels, classes)
