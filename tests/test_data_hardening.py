"""Hostile or odd inputs: each a one-line DataError naming the file (and the line where there is one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data import VOCDataset, inside, open_dataset, read_image
from wsss.data.base import check_id, read_classes_file, read_split_file
from wsss.data.info import check_split, dataset_info
from wsss.errors import DataError
from wsss.labelio import load_label_png, save_label_png

H, W = 6, 8


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg
    return msg


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """VOC layout: images a, b (8x6) with masks; split 'train' = a, b."""
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in "ab":
        Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        save_label_png(root / "SegmentationClass" / f"{name}.png", np.zeros((H, W), np.uint8))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    return root


def split_file(root: Path, text: str | bytes, name: str = "s") -> Path:
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# --- split files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("../etc/passwd", "contains a path separator"),
        ("sub/a", "contains a path separator"),
        ("sub\\\\a", "contains a path separator"),
        ("a..b", "contains '..'"),
        ("..", "contains '..'"),
        (".hidden", "starts with '.'"),
        ("/abs", "contains a path separator"),
        ("C:a", "is an absolute path"),
        ("a\\x00b", "contains a control character"),
        ("2007_000032 1", "contains whitespace \\(ids with spaces are not supported"),
        ("a\\tb", "contains whitespace"),
    ],
)
def test_bad_id_names_split_file_and_line(voc: Path, bad: str, reason: str) -> None:
    bad = bad.encode().decode("unicode_escape")
    path = split_file(voc, f"a\n\n{bad}\nb\n")
    with pytest.raises(DataError, match=rf"s\.txt: line 3: id .* {reason}") as err:
        VOCDataset(voc, "s")
    assert one_line(err).startswith(str(path))


def test_check_id_accepts_ordinary_ids() -> None:
    for ok in ("2007_000032", "COCO_train2014_000000000009", "img.v2", "a-b+c", "über"):
        assert check_id(ok) is None, ok


def test_id_listed_twice_names_both_lines(voc: Path) -> None:
    split_file(voc, "a\nb\n\na\n")
    with pytest.raises(DataError, match=r"s\.txt: id 'a' is listed twice \(lines 1 and 4\)") as err:
        VOCDataset(voc, "s")
    one_line(err)


def test_utf8_bom_and_crlf_accepted(voc: Path) -> None:
    split_file(voc, b"\xef\xbb\xbfa\r\nb\r\n")
    (voc / "classes.txt").write_bytes(b"\xef\xbb\xbfbackground\r\nthing\r\n")
    ds = VOCDataset(voc, "s")
    assert ds.ids == ["a", "b"] and ds.classes == ("background", "thing")


def test_binary_or_directory_as_split_or_classes_file(voc: Path) -> None:
    split_file(voc, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    with pytest.raises(DataError, match=r"s\.txt: not a UTF-8 text file .*expected a split file") as err:
        VOCDataset(voc, "s")
    one_line(err)
    (voc / "ImageSets" / "Segmentation" / "d.txt").mkdir()
    with pytest.raises(DataError, match=r"d\.txt: is a directory, expected a split file"):
        VOCDataset(voc, "d")
    (voc / "classes.txt").mkdir()
    with pytest.raises(DataError, match=r"classes\.txt: is a directory, expected a classes file"):
        VOCDataset(voc, "train")
    (voc / "classes.txt").rmdir()
    (voc / "classes.txt").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError, match=r"classes\.txt: not a UTF-8 text file"):
        VOCDataset(voc, "train")


def test_duplicate_class_names(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("background\ncat\ndog\ncat\n")
    with pytest.raises(DataError, match=r"classes\.txt: class 'cat' is listed twice \(lines 2 and 4\)"):
        read_classes_file(path)
    path.write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"classes\.txt: must list 'background' first"):
        read_classes_file(path)
    path.write_text("background\n" + "".join(f"c{i}\n" for i in range(255)))
    with pytest.raises(DataError, match=r"classes\.txt: 256 classes; at most 255"):
        read_classes_file(path)


def test_empty_split_file(tmp_path: Path) -> None:
    path = tmp_path / "e.txt"
    path.write_bytes(b"\xef\xbb\xbf\n  \n")
    with pytest.raises(DataError, match=r"e\.txt: split 'e' is empty"):
        read_split_file(path)


# --- paths -------------------------------------------------------------------------------------------------


def test_inside_keeps_paths_in_their_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "a.jpg") == tmp_path / "a.jpg"
    assert inside(tmp_path / "x", "a..b.png") == tmp_path / "x" / "a..b.png"
    for bad in ("../a.jpg", "/etc/passwd", "x/../../a", ".", ""):
        with pytest.raises(DataError, match="leads outside this folder"):
            inside(tmp_path / "x", bad)


# --- images ------------------------------------------------------------------------------------------------


def test_16_bit_gradient_reads_as_the_matching_8_bit_image(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint16), (3, 1))  # 0..255 along x
    path = tmp_path / "g16.png"
    Image.fromarray(ramp * 257).save(path)  # 0..65535
    assert Image.open(path).mode.startswith("I")
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (3, 256, 3)
    np.testing.assert_array_equal(got, np.repeat(ramp.astype(np.uint8)[:, :, None], 3, axis=2))
    # not a multiple of 257: rounded to the nearest 8-bit value
    Image.fromarray(np.array([[0, 128, 129, 385, 65535]], np.uint16)).save(path)
    assert read_image(path)[0, :, 0].tolist() == [0, 0, 1, 1, 255]


def test_float_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.zeros((2, 2), np.float32)).save(path)
    with pytest.raises(DataError, match=r"f\.tif: 32-bit floating-point image"):
        read_image(path)


def test_max_side_downscales_keeping_aspect(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.full((300, 1200, 3), 77, np.uint8)).save(path)
    assert read_image(path, max_side=400).shape == (100, 400, 3)
    assert read_image(path, max_side=2000).shape == (300, 1200, 3)
    assert read_image(path, max_side=400)[50, 200].tolist() == [77, 77, 77]


def test_dataset_max_side_scales_image_and_mask_alike(voc: Path) -> None:
    m = np.zeros((H, W), np.uint8)
    m[:, 4:] = 3
    save_label_png(voc / "SegmentationClass" / "a.png", m)
    s = open_dataset(voc, "train", max_side=4)[0]
    assert s.image.shape == (3, 4, 3) and s.mask.shape == (3, 4)
    assert s.mask.tolist() == [[0, 0, 3, 3]] * 3


def test_image_above_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # errors above 2x this
    with pytest.raises(DataError, match=r"huge\.png: image too large to read .*2000 pixels") as err:
        read_image(path)
    one_line(err)


def test_sixteen_bit_label_png(tmp_path: Path) -> None:
    path = tmp_path / "m16.png"
    Image.fromarray(np.array([[0, 3, 255]], np.uint16)).save(path)
    assert load_label_png(path).tolist() == [[0, 3, 255]]
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(path)
    with pytest.raises(DataError, match=r"m16\.png: 16-bit label PNG holds values 0\.\.300"):
        load_label_png(path)


# --- masks -------------------------------------------------------------------------------------------------


def test_mask_of_another_size_found_from_headers(voc: Path) -> None:
    save_label_png(voc / "SegmentationClass" / "b.png", np.zeros((5, 5), np.uint8))
    ds = VOCDataset(voc, "train")
    problems = check_split(ds)
    assert len(problems) == 1
    assert problems[0].startswith(f"{voc}/SegmentationClass/b.png: mask is 5x5, image")
    assert problems[0].endswith("b.jpg is 8x6")
    with pytest.raises(DataError, match=r"SegmentationClass/b\.png: mask is 5x5"):
        dataset_info(ds, progress=False)


def test_check_split_reports_every_bad_file(voc: Path) -> None:
    (voc / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    (voc / "JPEGImages" / "c.jpg").write_bytes(b"")
    (voc / "JPEGImages" / "c.png").write_bytes(b"")
    split_file(voc, "a\nb\nc\nd\n")
    problems = check_split(VOCDataset(voc, "s"))
    assert len(problems) == 3 and all("\n" not in p for p in problems)
    assert problems[0].startswith(f"{voc}/JPEGImages/a.jpg: unreadable image")
    assert problems[1].startswith(f"{voc}/JPEGImages: image 'c' is ambiguous")
    assert problems[2] == f"{voc}/JPEGImages/d.jpg: not found"
    assert check_split(VOCDataset(voc, "train")) == [
        f"{voc}/JPEGImages/a.jpg: unreadable image (UnidentifiedImageError)"
    ]


@pytest.mark.parametrize("fill", [0, 255])
def test_all_background_or_all_void_mask_is_valid(voc: Path, fill: int) -> None:
    save_label_png(voc / "SegmentationClass" / "a.png", np.full((H, W), fill, np.uint8))
    ds = VOCDataset(voc, "train")
    s = ds[0]
    assert s.labels.sum() == 0 and (s.mask == fill).all()
    info = dataset_info(ds, progress=False)
    assert info["labels"]["a"] == [] and sum(info["pixel_counts"].values()) == 0
