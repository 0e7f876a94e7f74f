"""write_splits and make_tune: split lists for the user, VOC-style relations, never overwriting by accident."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data import open_dataset
from wsss.data.splits import make_tune, write_splits
from wsss.errors import DataError
from wsss.labelio import save_label_png


def image_folder(root: Path, n: int, masks: int = 0) -> Path:
    """images/ with n PNGs i000.., the first ``masks`` of them with a mask; classes.txt; labels.json."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / f"i{i:03d}.png")
        if i < masks:
            save_label_png(root / "masks" / f"i{i:03d}.png", np.zeros((2, 3), np.uint8))
    (root / "classes.txt").write_text("background\nthing\n")
    (root / "labels.json").write_text(json.dumps({f"i{i:03d}": ["thing"] for i in range(n)}))
    return root


def read(path: Path) -> list[str]:
    return path.read_text().split()


def test_write_splits_relations_and_sizes(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", 40)
    written = write_splits(root, tune=0.1, val=0.2, seed=3)
    assert set(written) == {"train_aug", "train", "tune", "val"}
    assert all(p.parent == root / "splits" for p in written.values())
    s = {k: read(p) for k, p in written.items()}
    assert all(v == sorted(v) for v in s.values())
    assert len(s["val"]) == 8 and len(s["tune"]) == 4 and len(s["train"]) == 28 and len(s["train_aug"]) == 32
    assert set(s["train"]) | set(s["tune"]) == set(s["train_aug"]) and not set(s["train"]) & set(s["tune"])
    assert not set(s["val"]) & set(s["train_aug"])
    assert set(s["val"]) | set(s["train_aug"]) == {f"i{i:03d}" for i in range(40)}
    # the same seed gives the same lists; each list opens as a split
    again = write_splits(root, tune=0.1, val=0.2, seed=3, force=True)
    assert {k: read(p) for k, p in again.items()} == s
    assert open_dataset(root, "tune").ids == s["tune"]
    other = write_splits(root, tune=0.1, val=0.2, seed=4, force=True)
    assert read(other["val"]) != s["val"]


def test_write_splits_refuses_to_overwrite(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", 10)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("i000\n")
    with pytest.raises(DataError, match=r"splits/val\.txt: split list exists; pass force=True"):
        write_splits(root)
    assert read(root / "splits" / "val.txt") == ["i000"] and not (root / "splits" / "train.txt").exists()
    write_splits(root, force=True)
    assert (root / "splits" / "train.txt").exists()


def test_val_and_tune_come_from_images_with_masks(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", 30, masks=8)
    s = {k: read(p) for k, p in write_splits(root, tune=0.1, val=0.1).items()}
    with_masks = {f"i{i:03d}" for i in range(8)}
    assert set(s["val"]) <= with_masks and set(s["tune"]) <= with_masks
    assert len(s["val"]) == 3 and len(s["tune"]) == 3
    with pytest.raises(DataError, match=r"masks: only 8 images have masks, val and tune need 12"):
        write_splits(root, tune=0.2, val=0.2, force=True)


def test_write_splits_voc_layout_and_zero_fraction(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "JPEGImages" / f"x{i}.jpg")
    written = write_splits(root, tune=0, val=0.2)
    assert set(written) == {"train_aug", "train", "val"}
    assert written["val"] == root / "ImageSets" / "Segmentation" / "val.txt"
    assert read(written["train"]) == read(written["train_aug"]) and len(read(written["val"])) == 1


def test_write_splits_bad_arguments_and_folders(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "d", 3)
    with pytest.raises(DataError, match=r"3 images are too few"):
        write_splits(root, tune=0.1, val=0.1)
    with pytest.raises(DataError, match=r"must be fractions"):
        write_splits(root, tune=0.6, val=0.5)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / "i000.jpg")
    with pytest.raises(DataError, match=r"images: image 'i000' is ambiguous"):
        write_splits(root, tune=0, val=0)
    (root / "images" / "i000.jpg").unlink()
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / "bad name.png")
    with pytest.raises(DataError, match=r"bad name\.png: file name 'bad name' contains whitespace"):
        write_splits(root, tune=0, val=0)


def voc_with_aug(root: Path, n_aug: int = 20, n_train: int = 6) -> tuple[list[str], list[str]]:
    (root / "JPEGImages").mkdir(parents=True)
    aug = [f"2007_{i:06d}" for i in range(n_aug)]
    train = aug[:n_train]
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train_aug.txt").write_text("\n".join(aug) + "\n")
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    return aug, train


def test_make_tune_matches_the_previous_cli(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    aug, train = voc_with_aug(root)
    path = make_tune(root, size=5, seed=7)
    assert path == root / "ImageSets" / "Segmentation" / "tune.txt"
    pool = sorted(set(aug) - set(train))
    expected = sorted(random.Random(7).sample(pool, 5))  # what `wsss data make-tune` wrote
    assert path.read_text() == "\n".join(expected) + "\n"
    path.write_text("mine\n")  # a list the user edited is kept unless they ask
    with pytest.raises(DataError, match=r"tune\.txt: split list exists; pass force=True \(--force\)"):
        make_tune(root, size=5, seed=7)
    assert path.read_text() == "mine\n"
    assert make_tune(root, size=5, seed=7, force=True) == path
    assert path.read_text() == "\n".join(expected) + "\n"
    with pytest.raises(
        DataError, match=r"train_aug\.txt: only 14 train_aug images outside train, asked for 15"
    ):
        make_tune(root, size=15, force=True)


def test_make_tune_cli_refuses_to_overwrite(tmp_path: Path, monkeypatch, capsys) -> None:
    from .conftest import run_cli

    root = tmp_path / "voc"
    voc_with_aug(root)
    assert run_cli(monkeypatch, capsys, "data", "make-tune", root, "--size", "5")[0] == 0
    tune = root / "ImageSets" / "Segmentation" / "tune.txt"
    before = tune.read_text()
    code, out, err = run_cli(monkeypatch, capsys, "data", "make-tune", root, "--size", "5", "--seed", "1")
    assert code != 0 and "tune.txt: split list exists" in err and "Traceback" not in err + out
    assert tune.read_text() == before
    code, _, _ = run_cli(monkeypatch, capsys, "data", "make-tune", root, "--size", "5", "--seed", "1", "--force")
    assert code == 0 and tune.read_text() != before


def test_make_tune_needs_both_splits(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    voc_with_aug(root)
    (root / "ImageSets" / "Segmentation" / "train.txt").unlink()
    with pytest.raises(
        DataError, match=r"split file not found: .*ImageSets/Segmentation/train\.txt \(VOC layout\)"
    ):
        make_tune(root, size=2)
