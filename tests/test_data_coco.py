"""The COCO 2014 reader on a tiny hand-written instances JSON (no real data, no network)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data import open_dataset
from wsss.data.info import dataset_info
from wsss.errors import DataError, MissingDependencyError
from wsss.labelio import load_label_png, save_label_png

# pycocotools' own use of numpy 2 (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
needs_coco = pytest.mark.skipif(importlib.util.find_spec("pycocotools") is None, reason="needs pycocotools")

H, W = 10, 12
# non-contiguous ids, listed out of order: sorted ids 1, 5, 90 -> classes 1, 2, 3
CATEGORIES = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}]
PERSON, AIRPLANE, TOOTHBRUSH = 1, 2, 3
ID9, ID25, ID30 = (f"COCO_train2014_{n:012d}" for n in (9, 25, 30))


def rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A polygon that pycocotools rasterizes to pixels [y0:y1, x0:x1]."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(region: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written by hand: run lengths in column-major order, zeros first."""
    counts, prev, run = [], 0, 0
    for v in region.ravel(order="F").astype(int):
        if v != prev:
            counts.append(run)
            prev, run = v, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(region.shape)}


def crowd_region() -> np.ndarray:
    region = np.zeros((H, W), bool)
    region[3:5, 0:3] = True  # over part of the person
    region[8:10, 6:12] = True
    return region


def expected_masks() -> dict[str, np.ndarray]:
    m9 = np.zeros((H, W), np.uint8)
    m9[1:4, 1:5] = PERSON
    m9[2:6, 3:8] = TOOTHBRUSH  # painted after the person: covers it
    m9[crowd_region()] = 255  # crowd last, though listed first
    m25 = np.zeros((H, W), np.uint8)
    m25[0:2, 0:2] = AIRPLANE  # one instance in two polygons
    m25[8:10, 10:12] = AIRPLANE
    return {ID9: m9, ID25: m25, ID30: np.zeros((H, W), np.uint8)}


def instances(split: str = "train") -> dict:
    images = [
        {"id": n, "file_name": f"COCO_{split}2014_{n:012d}.jpg", "height": H, "width": W} for n in (30, 9, 25)
    ]
    annotations = [
        {"id": 101, "image_id": 9, "category_id": 5, "iscrowd": 1,
         "segmentation": uncompressed_rle(crowd_region())},
        {"id": 102, "image_id": 9, "category_id": 1, "iscrowd": 0, "segmentation": [rect(1, 1, 5, 4)]},
        {"id": 103, "image_id": 9, "category_id": 90, "iscrowd": 0, "segmentation": [rect(3, 2, 8, 6)]},
        {"id": 104, "image_id": 25, "category_id": 5, "iscrowd": 0,
         "segmentation": [rect(0, 0, 2, 2), rect(10, 8, 12, 10)]},
    ]  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_coco(root: Path, data: dict | None = None, split: str = "train") -> Path:
    data = instances(split) if data is None else data
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{split}2014").mkdir(parents=True, exist_ok=True)
    for img in data["images"]:
        rgb = np.full((img["height"], img["width"], 3), 128, np.uint8)
        Image.fromarray(rgb).save(root / f"{split}2014" / img["file_name"])
    path = root / "annotations" / f"instances_{split}2014.json"
    path.write_text(json.dumps(data))
    return root


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return write_coco(tmp_path / "coco")


@needs_coco
def test_classes_ids_and_layout(coco: Path) -> None:
    ds = open_dataset(coco, "train", format="coco")
    assert ds.format == "coco" and ds.split == "train"
    assert ds.classes == ("background", "person", "airplane", "toothbrush") and ds.num_classes == 3
    assert ds.ids == [ID9, ID25, ID30] and len(ds) == 3  # sorted file stems, the empty image kept
    assert ds.image_path(ID9) == coco / "train2014" / f"{ID9}.jpg"
    assert ds.mask_path(ID9) == coco / "wsss_masks" / "train2014" / f"{ID9}.png"


@needs_coco
def test_masks_pixel_by_pixel(coco: Path) -> None:
    ds = open_dataset(coco, "train", format="coco")
    for image_id, want in expected_masks().items():
        got = ds.mask(image_id)
        assert got.dtype == np.uint8 and got.shape == (H, W)
        np.testing.assert_array_equal(got, want, err_msg=image_id)
    sample = ds[0]
    assert sample.id == ID9 and sample.image.shape == (H, W, 3)
    np.testing.assert_array_equal(sample.mask, expected_masks()[ID9])


@needs_coco
def test_labels_from_non_crowd_annotations(coco: Path) -> None:
    ds = open_dataset(coco, "train", format="coco")
    assert ds.labels(ID9).dtype == np.float32
    assert ds.labels(ID9).tolist() == [1, 0, 1]  # airplane only as crowd: not a label
    assert ds.labels(ID25).tolist() == [0, 1, 0]
    assert ds.labels(ID30).tolist() == [0, 0, 0]
    info = dataset_info(ds, progress=False)
    assert info["num_images"] == 3
    assert info["classes"] == ["background", "person", "airplane", "toothbrush"]
    assert info["image_counts"] == {"person": 1, "airplane": 1, "toothbrush": 1}
    # person 12 - 4 under the toothbrush - 2 under the crowd; toothbrush 20; airplane 4 + 4
    assert info["pixel_counts"] == {"person": 6, "airplane": 8, "toothbrush": 20}
    assert info["labels"] == {ID9: ["person", "toothbrush"], ID25: ["airplane"], ID30: []}


@needs_coco
def test_mask_cache_is_written_and_reused(coco: Path, tmp_path: Path) -> None:
    ds = open_dataset(coco, "train", format="coco")
    cache = coco / "wsss_masks" / "train2014"
    assert not cache.exists()
    ds.mask(ID9)
    np.testing.assert_array_equal(load_label_png(cache / f"{ID9}.png"), expected_masks()[ID9])
    assert sorted(p.name for p in cache.iterdir()) == [f"{ID9}.png"]  # no temporary file left

    # reused: a fresh dataset reads the cached PNG instead of rasterizing again
    marker = np.full((H, W), TOOTHBRUSH, np.uint8)
    save_label_png(cache / f"{ID9}.png", marker)
    np.testing.assert_array_equal(open_dataset(coco, "train", format="coco").mask(ID9), marker)

    other = tmp_path / "elsewhere"
    ds = open_dataset(coco, "train", format="coco", cache_dir=other)
    np.testing.assert_array_equal(ds.mask(ID25), expected_masks()[ID25])
    assert (other / f"{ID25}.png").exists()


@needs_coco
def test_val_split(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco", split="val")
    ds = open_dataset(root, "val", format="coco")
    assert ds.ids == [f"COCO_val2014_{n:012d}" for n in (9, 25, 30)]
    np.testing.assert_array_equal(ds.mask(ds.ids[0]), expected_masks()[ID9])
    assert (root / "wsss_masks" / "val2014" / f"{ds.ids[0]}.png").exists()


# --- bad data: a DataError whose message names the file -------------------------------------------------


@needs_coco
def test_missing_annotation_json(coco: Path) -> None:
    with pytest.raises(DataError, match=r"annotations/instances_val2014\.json"):
        open_dataset(coco, "val", format="coco")


@needs_coco
def test_unknown_category_id(tmp_path: Path) -> None:
    data = instances()
    data["annotations"][2]["category_id"] = 7
    root = write_coco(tmp_path / "coco", data)
    with pytest.raises(DataError, match=r"instances_train2014\.json.*annotation 103.*category id 7"):
        open_dataset(root, "train", format="coco")


@needs_coco
def test_image_listed_but_absent(coco: Path) -> None:
    (coco / "train2014" / f"{ID25}.jpg").unlink()
    ds = open_dataset(coco, "train", format="coco")  # opening does not read images
    with pytest.raises(DataError, match=rf"train2014/{ID25}\.jpg"):
        ds[1]


@needs_coco
def test_image_of_another_size(coco: Path) -> None:
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(coco / "train2014" / f"{ID30}.jpg")
    ds = open_dataset(coco, "train", format="coco")
    with pytest.raises(DataError, match=rf"{ID30}\.jpg.*12x11.*12x10"):
        ds[2]


@needs_coco
def test_cached_mask_of_another_size(coco: Path) -> None:
    cache = coco / "wsss_masks" / "train2014"
    cache.mkdir(parents=True)
    save_label_png(cache / f"{ID9}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=rf"wsss_masks/train2014/{ID9}\.png.*4x4"):
        open_dataset(coco, "train", format="coco").mask(ID9)


@needs_coco
def test_unknown_split(coco: Path) -> None:
    with pytest.raises(DataError, match="'train' or 'val'"):
        open_dataset(coco, "test", format="coco")


def test_missing_pycocotools(coco: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'wsss\[coco\]'"):
        open_dataset(coco, "train", format="coco")


@needs_coco
def test_labels_file_and_layout(coco: Path, tmp_path: Path) -> None:
    ds = open_dataset(coco, "train")  # format="auto" finds the annotations
    assert ds.format == "coco" and ds.layout == "coco" and ds.has_mask(ID30)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({ID9: ["airplane"], ID25: [], ID30: ["person", "toothbrush"]}))
    ds = open_dataset(coco, "train", format="coco", labels=path)
    assert ds.labels(ID9).tolist() == [0, 1, 0] and ds.labels(ID30).tolist() == [1, 0, 1]
    info = dataset_info(ds, progress=False)
    assert info["layout"] == "coco" and info["num_with_masks"] == 3
    assert info["pixel_counts"] == {"person": 6, "airplane": 8, "toothbrush": 20}  # pixels still from masks
    path.write_text(json.dumps({ID9: ["unicorn"]}))
    with pytest.raises(DataError, match=r"labels\.json: unknown class 'unicorn'"):
        open_dataset(coco, "train", format="coco", labels=path)
