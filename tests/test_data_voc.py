"""The VOC-layout reader and dataset_info on tiny hand-written fixtures (no real data, no network)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from wsss.data import VOC_CLASSES, VOCDataset, open_dataset
from wsss.data.info import dataset_info, format_info
from wsss.data.labels import convert_irn_labels
from wsss.errors import DataError
from wsss.labelio import save_label_png

H, W = 6, 8
AERO, CAT, DOG, PERSON = 1, 8, 12, 15  # VOC class indices
FG = VOC_CLASSES[1:]


def write_image(root: Path, image_id: str, h: int = H, w: int = W) -> None:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rgb = np.full((h, w, 3), (40, 120, 200), np.uint8)
    Image.fromarray(rgb).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)


def write_mask(
    root: Path, image_id: str, mask: np.ndarray, folder: str = "SegmentationClass", grayscale: bool = False
) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    path = root / folder / f"{image_id}.png"
    if grayscale:
        Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    else:
        save_label_png(path, mask)


def write_split(root: Path, name: str, ids: list[str], text: str | None = None) -> Path:
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else "".join(f"{i}\n" for i in ids))
    return path


def masks() -> dict[str, np.ndarray]:
    m32 = np.zeros((H, W), np.uint8)
    m32[0, :] = 255  # void row: 8 px
    m32[1:4, 1:5] = AERO  # 12 px
    m39 = np.zeros((H, W), np.uint8)
    m39[2:6, 0:3] = PERSON  # 12 px
    m39[0:2, 5:8] = DOG  # 6 px
    m39[:, 3] = 255  # void column: 6 px
    m01 = np.zeros((H, W), np.uint8)
    m01[5, :] = 255  # background and void only
    m02 = np.zeros((H, W), np.uint8)
    m02[:, 7] = PERSON  # 6 px
    return {"2007_000032": m32, "2007_000039": m39, "2008_000001": m01, "2008_000002": m02}


TRAIN = ["2007_000032", "2007_000039"]
VAL = ["2008_000001", "2008_000002"]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """4 images; palette masks (one grayscale) with void; train/val splits; no classes.txt."""
    root = tmp_path / "voc"
    for image_id, mask in masks().items():
        write_image(root, image_id)
        write_mask(root, image_id, mask, grayscale=image_id == "2008_000002")
    write_split(root, "train", TRAIN)
    write_split(root, "val", VAL)
    return root


def counts(**nonzero: int) -> dict[str, int]:
    out = dict.fromkeys(FG, 0)
    out.update(nonzero)
    return out


def test_reads_split_masks_and_default_classes(voc: Path) -> None:
    ds = VOCDataset(voc, "train")
    assert ds.format == "voc" and ds.layout == "voc"
    assert ds.classes == VOC_CLASSES and ds.classes[0] == "background" and ds.num_classes == 20
    assert ds.ids == TRAIN and len(ds) == 2
    assert ds.image_path("2007_000032") == voc / "JPEGImages" / "2007_000032.jpg"
    assert ds.mask_path("2007_000032") == voc / "SegmentationClass" / "2007_000032.png"
    sample = ds[1]
    assert sample.id == "2007_000039"
    assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.mask, masks()["2007_000039"])
    assert sample.labels.dtype == np.float32 and sample.labels.shape == (20,)
    assert np.flatnonzero(sample.labels).tolist() == [DOG - 1, PERSON - 1]
    # the grayscale mask reads the same as a palette one
    np.testing.assert_array_equal(VOCDataset(voc, "val").mask("2008_000002"), masks()["2008_000002"])
    assert open_dataset(voc, "val").ids == VAL
    assert open_dataset(voc, "val", format="voc").layout == "voc"
    assert ds.has_mask("2007_000032") and not ds.has_mask("2099_000000")


def test_dataset_info_counts_exactly(voc: Path) -> None:
    info = dataset_info(VOCDataset(voc, "train"), progress=False)
    assert info["num_images"] == 2
    assert info["layout"] == "voc" and info["num_with_masks"] == 2 and info["num_labels_only"] == 0
    assert info["classes"] == list(VOC_CLASSES)
    assert info["image_counts"] == counts(aeroplane=1, dog=1, person=1)
    assert info["pixel_counts"] == counts(aeroplane=12, dog=6, person=12)
    assert info["labels"] == {"2007_000032": ["aeroplane"], "2007_000039": ["dog", "person"]}

    info = dataset_info(VOCDataset(voc, "val"), progress=False)
    assert info["num_images"] == 2
    assert info["image_counts"] == counts(person=1)
    assert info["pixel_counts"] == counts(person=6)
    assert info["labels"] == {"2008_000001": [], "2008_000002": ["person"]}


def test_format_info_renders_counts_and_shares(voc: Path) -> None:
    info = dataset_info(VOCDataset(voc, "train"), progress=False)
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(format_info(info))
    text = console.export_text()
    assert "2 images, 20 classes" in text

    def cells(name: str) -> list[str]:
        row = next(line for line in text.splitlines() if f" {name} " in line)
        return [c.strip() for c in row.split("│")[2:6]]

    # person: 1 image of 2 (50.0 %), 12 of 30 foreground pixels (40.0 %)
    assert cells("person") == ["1", "50.0", "12", "40.0"]
    assert cells("dog") == ["1", "50.0", "6", "20.0"]
    assert cells("tvmonitor") == ["0", "0.0", "0", "0.0"]


def test_train_aug_reads_segmentation_class_aug(voc: Path) -> None:
    ids = TRAIN + VAL
    for image_id in ids:
        aug = np.zeros((H, W), np.uint8)
        aug[0:2, 0:2] = CAT  # 4 px each
        aug[5, 7] = 255
        write_mask(voc, image_id, aug, folder="SegmentationClassAug")
    write_split(voc, "train_aug", ids)
    ds = VOCDataset(voc, "train_aug")
    assert ds.mask_path("2007_000032") == voc / "SegmentationClassAug" / "2007_000032.png"
    info = dataset_info(ds, progress=False)
    assert info["num_images"] == 4
    assert info["image_counts"] == counts(cat=4)
    assert info["pixel_counts"] == counts(cat=16)
    assert info["labels"] == {i: ["cat"] for i in ids}
    # other splits keep SegmentationClass
    assert VOCDataset(voc, "train").mask_path("2007_000032").parent.name == "SegmentationClass"


def test_irn_cls_labels_npy_converted_once_then_read_as_json(voc: Path, tmp_path: Path) -> None:
    vec32 = np.zeros(20, np.float32)
    vec32[[1, 6]] = 1  # bicycle, car: not what the mask says, so we see which source is used
    vec39 = np.zeros(20, np.float32)
    vec39[PERSON - 1] = 1
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {2007000032: vec32, 2007000039: vec39, 2008000001: np.zeros(20, np.float32)})
    # the pickled file is never loaded by a dataset: one line naming it and the converter
    with pytest.raises(DataError, match=r"cls_labels\.npy.*pickled.*convert_irn_labels") as err:
        VOCDataset(voc, "train", labels=npy)
    assert "\n" not in str(err.value)
    path = convert_irn_labels(npy, tmp_path / "labels.json", trust=True)
    assert json.loads(path.read_text())["2007_000032"] == ["bicycle", "car"]
    ds = VOCDataset(voc, "train", labels=path)
    np.testing.assert_array_equal(ds.labels("2007_000032"), vec32)
    info = dataset_info(ds, progress=False)
    assert info["labels"] == {"2007_000032": ["bicycle", "car"], "2007_000039": ["person"]}
    assert info["image_counts"] == counts(bicycle=1, car=1, person=1)
    assert info["pixel_counts"] == counts(aeroplane=12, dog=6, person=12)  # pixels still from masks


def test_json_labels_without_masks(voc: Path, tmp_path: Path) -> None:
    ids = ["2009_000001", "2009_000002", "2009_000003"]
    for image_id in ids:
        write_image(voc, image_id)
    write_split(voc, "unlabelled", ids)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"2009_000001": ["dog", "cat"], "2009_000002": [], "2009_000003": ["dog"]}))
    ds = VOCDataset(voc, "unlabelled", labels=path)
    assert ds[0].mask is None and not ds.has_mask("2009_000001")
    assert ds.image("2009_000001").shape == (H, W, 3)
    with pytest.raises(DataError, match=r"SegmentationClass/2009_000001\.png: mask not found"):
        ds.mask("2009_000001")
    info = dataset_info(ds, progress=False)
    assert info["num_images"] == 3
    assert info["num_with_masks"] == 0 and info["num_labels_only"] == 3
    assert info["labels"] == {"2009_000001": ["cat", "dog"], "2009_000002": [], "2009_000003": ["dog"]}
    assert info["image_counts"] == counts(cat=1, dog=2)
    assert info["pixel_counts"] == counts()
    # without a labels file there is nothing to take labels from
    with pytest.raises(DataError, match="2009_000001.png"):
        dataset_info(VOCDataset(voc, "unlabelled"), progress=False)


def test_classes_txt(voc: Path) -> None:
    (voc / "classes.txt").write_text("background\nplane\ncar\n")
    write_split(voc, "small", ["2008_000001"])
    ds = VOCDataset(voc, "small")
    assert ds.classes == ("background", "plane", "car") and ds.num_classes == 2
    info = dataset_info(ds, progress=False)
    assert info["image_counts"] == {"plane": 0, "car": 0} and info["pixel_counts"] == {"plane": 0, "car": 0}


# --- bad data: a DataError whose message names the file -------------------------------------------------


def test_missing_split_file(voc: Path) -> None:
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/nope\.txt"):
        VOCDataset(voc, "nope")


def test_empty_split(voc: Path) -> None:
    write_split(voc, "empty", [], text="\n  \n")
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/empty\.txt.*empty"):
        VOCDataset(voc, "empty")


def test_image_listed_but_absent(voc: Path) -> None:
    write_mask(voc, "2010_000404", np.zeros((H, W), np.uint8))
    write_split(voc, "broken", ["2010_000404"])
    ds = VOCDataset(voc, "broken")  # opening is cheap and lazy; reading fails
    with pytest.raises(DataError, match=r"JPEGImages/2010_000404\.jpg"):
        ds[0]


def test_mask_of_another_size(voc: Path) -> None:
    write_image(voc, "2010_000505")
    write_mask(voc, "2010_000505", np.zeros((5, 5), np.uint8))
    write_split(voc, "resized", ["2010_000505"])
    with pytest.raises(DataError, match=r"SegmentationClass/2010_000505\.png.*5x5.*8x6"):
        VOCDataset(voc, "resized")[0]


def test_class_id_out_of_range(voc: Path) -> None:
    bad = np.zeros((H, W), np.uint8)
    bad[2, 2] = 21  # K = 20
    write_image(voc, "2010_000606")
    write_mask(voc, "2010_000606", bad)
    write_split(voc, "outofrange", ["2010_000606"])
    ds = VOCDataset(voc, "outofrange")
    with pytest.raises(DataError, match=r"SegmentationClass/2010_000606\.png.*class id 21"):
        ds.mask("2010_000606")
    with pytest.raises(DataError, match=r"2010_000606\.png"):
        dataset_info(ds, progress=False)


def test_labels_file_missing_an_image(voc: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"2007_000032": ["aeroplane"]}))
    assert VOCDataset(voc, "train", labels=path).labels("2007_000039").sum() > 0  # it has a mask: labels from it
    next((voc / "SegmentationClass").glob("2007_000039.png")).unlink()  # neither a mask nor labels: refused
    with pytest.raises(DataError, match=r"labels\.json.*2007_000039"):
        VOCDataset(voc, "train", labels=path)
    path.write_text(json.dumps({"2007_000032": ["unicorn"], "2007_000039": []}))
    with pytest.raises(DataError, match=r"labels\.json.*unicorn"):
        VOCDataset(voc, "train", labels=path)
