"""Image-level labels files: JSON and CSV read without pickle; IRN's pickled .npy only via the converter."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from wsss.data.labels import convert_irn_labels, read_labels_file
from wsss.data.voc import VOC_CLASSES
from wsss.errors import DataError

CLASSES = ("background", "cat", "dog", "person")


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_json_names_to_multi_hot(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"a": ["dog", "person"], "b": [], "c": ["cat"]}))
    out = read_labels_file(path, CLASSES, ids=["a", "b"])  # extra ids in the file are fine
    assert out["a"].dtype == np.float32 and out["a"].tolist() == [0, 1, 1]
    assert out["b"].tolist() == [0, 0, 0] and out["c"].tolist() == [1, 0, 0]


def test_json_with_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": ["dog"]}).encode())
    assert read_labels_file(path, CLASSES)["a"].tolist() == [0, 1, 0]


def test_csv_one_hot_columns_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("id,person,cat,dog\n\na,1,0,1\nb,0,0,0\n")
    out = read_labels_file(path, CLASSES, ids=["a", "b"])
    assert out["a"].tolist() == [0, 1, 1] and out["b"].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "name, text, pattern",
    [
        ("l.json", '{"a": ["dog", "unicorn"]}', r"l\.json: unknown class 'unicorn' for image 'a'"),
        ("l.json", '{"a": ["background"]}', r"l\.json: unknown class 'background'"),
        ("l.json", '{"a": ["dog"', r"l\.json: not valid JSON"),
        ("l.json", '["a", "b"]', r"l\.json: expected a JSON object"),
        ("l.json", '{"a": "dog"}', r"l\.json: labels of 'a' must be a list of class names"),
        ("l.json", '{"b": []}', r"l\.json: no labels for 1 image\(s\) of the split, e.g. 'a'"),
        ("l.csv", "id,cat,dog,person\na,1,0\n", r"l\.csv: line 2 has 3 fields, the header has 4"),
        ("l.csv", "id,cat,dog,person\na,1,0,2\n", r"l\.csv: line 2: class columns must be 0 or 1"),
        ("l.csv", "id,cat,dog\na,1,0\n", r"l\.csv: header has no column for class 'person'"),
        ("l.csv", "id,cat,dog,person,horse\na,1,0,0,0\n", r"l\.csv: header names unknown class 'horse'"),
        ("l.csv", "name,cat,dog,person\n", r"l\.csv: line 1: header must be 'id,<class>,...'"),
        ("l.csv", "id,cat,dog,person\na,1,0,0\na,0,0,0\n", r"l\.csv: line 3: id 'a' is listed twice"),
        ("l.csv", "id,cat,dog,person\nb,1,0,0\n", r"l\.csv: no labels for 1 image"),
        ("l.txt", "a dog\n", r"l\.txt: unknown labels file type '\.txt'"),
    ],
)
def test_bad_labels_file_is_one_line_naming_it(tmp_path: Path, name: str, text: str, pattern: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=pattern) as err:
        read_labels_file(path, CLASSES, ids=["a"])
    one_line(err)


def test_missing_directory_and_binary_labels_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json: labels file not found"):
        read_labels_file(tmp_path / "nope.json", CLASSES)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(DataError, match=r"dir\.json: is a directory"):
        read_labels_file(tmp_path / "dir.json", CLASSES)
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(DataError, match=r"bin\.csv: not a UTF-8 text file"):
        read_labels_file(tmp_path / "bin.csv", CLASSES)


def irn_file(path: Path) -> dict:
    vecs = {2007000032: np.eye(20, dtype=np.float32)[0], 2007000039: np.eye(20, dtype=np.float32)[14]}
    np.save(path, vecs)
    return vecs


def test_pickled_npy_is_refused_without_being_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cls_labels.npy"
    irn_file(path)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("read_labels_file unpickled the file")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(
        DataError, match=r"cls_labels\.npy: a pickled labels file .* convert_irn_labels"
    ) as err:
        read_labels_file(path, VOC_CLASSES)
    assert f"convert_irn_labels('{path}', 'labels.json', trust=True)" in one_line(err)


def test_plain_npy_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.npy"
    np.save(path, np.zeros((3, 20), np.float32))
    with pytest.raises(DataError, match=r"labels\.npy: a plain \(3, 20\) array has no image ids"):
        read_labels_file(path, VOC_CLASSES)


def test_convert_irn_labels_needs_trust_then_writes_json(tmp_path: Path) -> None:
    npy = tmp_path / "cls_labels.npy"
    irn_file(npy)
    out = tmp_path / "labels.json"
    with pytest.raises(DataError, match=r"cls_labels\.npy: .*trust=True"):
        convert_irn_labels(npy, out)
    assert not out.exists()
    assert convert_irn_labels(npy, out, trust=True) == out
    assert json.loads(out.read_text()) == {"2007_000032": ["aeroplane"], "2007_000039": ["person"]}
    got = read_labels_file(out, VOC_CLASSES, ids=["2007_000032", "2007_000039"])
    assert np.flatnonzero(got["2007_000039"]).tolist() == [14]


def test_convert_irn_labels_checks_vector_length(tmp_path: Path) -> None:
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {"x": np.ones(5, np.float32)})
    with pytest.raises(DataError, match=r"cls_labels\.npy: label vector of 'x' has 5 entries, expected 20"):
        convert_irn_labels(npy, tmp_path / "l.json", trust=True)
    assert convert_irn_labels(npy, tmp_path / "l.json", trust=True, classes=("background", *"abcde"))
    assert json.loads((tmp_path / "l.json").read_text()) == {"x": list("abcde")}
