"""Layouts found by open_dataset(format="auto"): VOC, images/+masks/, flat + labels file; image extensions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data import Dataset, FolderDataset, VOCDataset, detect_layout, open_dataset
from wsss.data.info import dataset_info
from wsss.errors import DataError
from wsss.labelio import save_label_png

H, W = 4, 6
CLASSES = "background\ncat\ndog\n"


def rgb(value: int = 90) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def save_image(path: Path, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(value)).save(path)


def mask(cls: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[1:3, 1:3] = cls
    return m


def write_list(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """images/ in four formats, masks/ for two of them, splits/train.txt, classes.txt."""
    root = tmp_path / "folder"
    for name, value in (("a.png", 10), ("b.bmp", 20), ("c.tif", 30), ("d.JPEG", 40)):
        save_image(root / "images" / name, value)
    (root / "masks").mkdir()
    save_label_png(root / "masks" / "a.png", mask(1))
    save_label_png(root / "masks" / "b.png", mask(2))
    write_list(root / "splits" / "train.txt", ["a", "b", "c", "d"])
    write_list(root / "splits" / "val.txt", ["a", "b"])
    (root / "classes.txt").write_text(CLASSES)
    return root


def test_images_and_masks_layout_with_any_extension(folder: Path) -> None:
    ds = open_dataset(folder, "val")
    assert isinstance(ds, FolderDataset) and isinstance(ds, Dataset)
    assert ds.format == "folder" and ds.layout == "images+masks"
    assert ds.mask_size("a") == (H, W) and ds.mask_size("c") is None
    assert ds.classes == ("background", "cat", "dog") and ds.ids == ["a", "b"]
    assert ds.image_path("b") == folder / "images" / "b.bmp"
    assert ds.image("b")[0, 0].tolist() == [20, 20, 20]
    assert ds[0].labels.tolist() == [1, 0] and ds[1].labels.tolist() == [0, 1]
    np.testing.assert_array_equal(ds.mask("a"), mask(1))


def test_split_with_labels_only_for_some_images(folder: Path) -> None:
    # c and d have no mask: labels come from the labels file found in the folder
    (folder / "labels.json").write_text(json.dumps({i: ["cat"] for i in "abcd"}))
    ds = open_dataset(folder, "train")
    assert ds.labels_file == folder / "labels.json"
    assert [ds.has_mask(i) for i in ds.ids] == [True, True, False, False]
    assert ds.image("c")[0, 0].tolist() == [30, 30, 30] and ds.image("d").shape == (H, W, 3)
    assert ds.labels("d").tolist() == [1, 0]
    with pytest.raises(
        DataError, match=r"masks/c\.png: mask not found \(split 'train' of the images\+masks layout\)"
    ):
        ds.mask("c")
    info = dataset_info(ds, progress=False)
    assert info["layout"] == "images+masks" and info["num_with_masks"] == 2 and info["num_labels_only"] == 2
    assert info["image_counts"] == {"cat": 4, "dog": 0} and info["pixel_counts"] == {"cat": 4, "dog": 4}


def test_images_without_masks_folder(folder: Path) -> None:
    for p in (folder / "masks").iterdir():
        p.unlink()
    (folder / "masks").rmdir()
    path = folder / "tags.csv"
    path.write_text("id,cat,dog\na,0,1\nb,1,1\n")
    ds = open_dataset(folder, "val", labels=path)
    assert ds.mask_dir is None and not ds.has_mask("a")
    assert ds.labels("b").tolist() == [1, 1]
    with pytest.raises(DataError, match=r"masks/a\.png: this split has no mask folder"):
        ds.mask("a")


def test_flat_layout(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    save_image(root / "x1.jpg")
    save_image(root / "x2.webp")
    (root / "classes.txt").write_text(CLASSES)
    write_list(root / "splits" / "train.txt", ["x1", "x2"])
    with pytest.raises(DataError, match=r"flat layout has no masks, so it needs a labels file"):
        open_dataset(root, "train")
    (root / "labels.json").write_text(json.dumps({"x1": ["dog"], "x2": []}))
    ds = open_dataset(root, "train")
    assert ds.layout == "flat" and detect_layout(root) == "flat"
    assert ds.image_path("x2") == root / "x2.webp" and ds.image("x2").shape == (H, W, 3)
    assert ds.labels("x1").tolist() == [0, 1] and not ds.has_mask("x1")
    assert ds[1].mask is None
    info = dataset_info(ds, progress=False)
    assert info["layout"] == "flat" and info["num_labels_only"] == 2


def test_detects_voc_and_coco(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    save_image(voc / "JPEGImages" / "a.jpg")
    write_list(voc / "ImageSets" / "Segmentation" / "train.txt", ["a"])
    assert detect_layout(voc) == "voc"
    ds = open_dataset(voc, "train", labels=None)
    assert isinstance(ds, VOCDataset) and isinstance(ds, Dataset) and ds.layout == "voc"
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2014.json").write_text("{}")
    assert detect_layout(coco) == "coco"


def test_voc_images_in_other_formats_and_the_old_import(tmp_path: Path) -> None:
    from wsss.data.voc import open_dataset as old_open_dataset

    root = tmp_path / "voc"
    save_image(root / "JPEGImages" / "p.png", 70)
    (root / "SegmentationClass").mkdir()
    save_label_png(root / "SegmentationClass" / "p.png", mask(3))  # VOC class 3: bird
    write_list(root / "ImageSets" / "Segmentation" / "train.txt", ["p"])
    ds = old_open_dataset(root, "train", format="voc")
    assert ds.image_path("p") == root / "JPEGImages" / "p.png"
    assert ds[0].image[0, 0].tolist() == [70, 70, 70] and ds[0].labels[2] == 1


def test_ambiguous_image_files(folder: Path) -> None:
    save_image(folder / "images" / "a.jpg")
    ds = open_dataset(folder, "val")
    with pytest.raises(DataError, match=r"images: image 'a' is ambiguous: a\.jpg, a\.png; keep one"):
        ds.image("a")


def test_image_written_after_the_folder_was_listed(folder: Path) -> None:
    write_list(folder / "splits" / "late.txt", ["e"])
    ds = open_dataset(folder, "late")
    assert "e" not in ds.images.listing()  # listed once, cached
    save_image(folder / "images" / "e.png", 60)
    assert ds.image("e")[0, 0].tolist() == [60, 60, 60]


def test_missing_split_names_every_layout_and_the_split_command(folder: Path) -> None:
    with pytest.raises(DataError) as err:
        open_dataset(folder, "tune")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"split file not found: {folder}/splits/tune.txt (images/+masks/ layout) or ")
    assert f"{folder}/ImageSets/Segmentation/tune.txt" in msg
    assert "splits found: train, val" in msg and f"`wsss data split {folder}`" in msg


def test_split_in_two_places_is_refused(folder: Path) -> None:
    write_list(folder / "ImageSets" / "Segmentation" / "val.txt", ["a"])
    with pytest.raises(
        DataError, match=r"splits/val\.txt: split 'val' is also listed in .*ImageSets/Segmentation/val\.txt"
    ):
        open_dataset(folder, "val")


def test_folder_layout_needs_classes_txt(folder: Path) -> None:
    (folder / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"classes\.txt: not found; the images/\+masks/ layout needs it"):
        open_dataset(folder, "val")


def test_nothing_recognisable(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        DataError, match=r"no dataset layout found; expected JPEGImages/.*images/.*labels file.*COCO"
    ):
        open_dataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"nope: dataset folder not found"):
        open_dataset(tmp_path / "nope", "train")
    with pytest.raises(DataError, match=r"unknown dataset format 'yolo'"):
        open_dataset(tmp_path, "train", format="yolo")
    with pytest.raises(DataError, match=r"split name '\.\./x' contains a path separator"):
        open_dataset(tmp_path, "../x", format="voc")
