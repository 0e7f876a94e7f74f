"""Segmenter stage: a tiny training run, checkpoint round trip, ``predict_paths`` on odd image modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.config import SegConfig
from wsss.data.voc import VOCDataset
from wsss.errors import ConfigError, DataError, WsssError
from wsss.labelio import load_label_png, save_label_png
from wsss.models.segmenter import available_segmenters, create_segmenter
from wsss.train.segmenter import load_segmenter, predict, predict_paths, train_segmenter

SIDE = 32
COLOURS = {1: (220, 40, 40), 2: (40, 40, 220)}


def _sample(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey noisy background with one coloured square (class 1) or disc (class 2)."""
    image = rng.integers(90, 140, (SIDE, SIDE, 3)).astype(np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    y0, x0 = rng.integers(2, SIDE - 16, 2)
    if cls == 1:
        mask[y0 : y0 + 13, x0 : x0 + 13] = 1
    else:
        yy, xx = np.mgrid[:SIDE, :SIDE]
        mask[(yy - y0 - 7) ** 2 + (xx - x0 - 7) ** 2 <= 36] = 2
    image[mask > 0] = COLOURS[cls]
    return image, mask


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tinyvoc")
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nsquare\ndisc\n")
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(8)]
    for i, image_id in enumerate(ids):
        image, mask = _sample(rng, 1 + i % 2)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:6]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[6:]) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(voc_root, tmp_path_factory):
    torch.set_num_threads(1)
    train, val = VOCDataset(voc_root, "train"), VOCDataset(voc_root, "val")
    cfg = SegConfig(arch="deeplab_small", epochs=12, batch_size=3, lr=5e-3, scale=(0.9, 1.1))
    ckpt = tmp_path_factory.mktemp("run") / "seg.pt"
    result = train_segmenter(train, train.mask, val, cfg, ckpt, torch.device("cpu"), seed=0, progress=False)
    return ckpt, result


def test_training_lowers_loss_and_saves_checkpoint(trained):
    ckpt, result = trained
    hist = result["loss_history"]
    assert len(hist) == result["epochs"] == 12
    assert hist[-1] < 0.7 * hist[0]
    assert 0.0 <= result["val_miou"] <= 1.0
    assert set(result["per_class_iou"]) == {"0", "1", "2"}
    assert result["seconds"] > 0
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["arch"] == "deeplab_small" and saved["num_classes"] == 3
    assert list(saved["classes"]) == ["background", "square", "disc"]
    model = load_segmenter(ckpt)
    assert not model.training and model.classes == ("background", "square", "disc")


def test_same_seed_same_numbers(voc_root, tmp_path, trained):
    _, result = trained
    train = VOCDataset(voc_root, "train")
    cfg = SegConfig(arch="deeplab_small", epochs=2, batch_size=3, lr=5e-3, scale=(0.9, 1.1))
    a = train_segmenter(train, train.mask, None, cfg, tmp_path / "a.pt", torch.device("cpu"), progress=False)
    b = train_segmenter(train, train.mask, None, cfg, tmp_path / "b.pt", torch.device("cpu"), progress=False)
    assert a["loss_history"] == b["loss_history"]
    assert a["val_miou"] is None


def test_bad_training_mask_is_a_data_error(voc_root, tmp_path):
    train = VOCDataset(voc_root, "train")
    cfg = SegConfig(arch="deeplab_small", epochs=1, batch_size=3)
    with pytest.raises(DataError, match=r"img\d is 16x16, its image is 32x32"):
        train_segmenter(train, lambda i: np.zeros((16, 16), np.uint8), None, cfg, tmp_path / "x.pt",
                        torch.device("cpu"), progress=False)
    with pytest.raises(DataError, match="class id 7 out of range"):
        train_segmenter(train, lambda i: np.full((SIDE, SIDE), 7, np.uint8), None, cfg, tmp_path / "x.pt",
                        torch.device("cpu"), progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_predict_paths_grayscale_rgba_and_folders(trained, tmp_path):
    ckpt, _ = trained
    rng = np.random.default_rng(1)
    image, _ = _sample(rng, 1)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(image).convert("L").save(src / "gray.png")
    Image.fromarray(image).convert("RGBA").save(src / "rgba.png")
    Image.fromarray(image).save(tmp_path / "single.jpg")
    out = predict_paths(ckpt, [src, tmp_path / "single.jpg"], tmp_path / "out", flip=True, overlay=True)
    assert [p.name for p in out] == ["gray.png", "rgba.png", "single.png"]
    for p in out:
        with Image.open(p) as im:
            assert im.mode == "P" and im.size == (SIDE, SIDE)
        assert load_label_png(p).max() < 3
        assert (p.parent / f"{p.stem}_overlay.jpg").is_file()


def test_predict_paths_unreadable_image_names_the_file(trained, tmp_path):
    ckpt, _ = trained
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        predict_paths(ckpt, [bad], tmp_path / "out")
    with pytest.raises(DataError, match="missing.png: image not found"):
        predict_paths(ckpt, [tmp_path / "missing.png"], tmp_path / "out")


def test_predict_multiscale_flip_shapes(trained):
    ckpt, _ = trained
    model = load_segmenter(ckpt)
    image = np.random.default_rng(2).integers(0, 255, (20, 27, 3)).astype(np.uint8)
    mask = predict(model, image, scales=(0.75, 1.0, 1.5), flip=True)
    assert mask.shape == (20, 27) and mask.dtype == np.uint8 and mask.max() < 3
    assert not model.training


@pytest.mark.parametrize("arch", available_segmenters())
def test_segmenters_give_logits_at_input_size(arch):
    torch.manual_seed(0)
    model = create_segmenter(arch, 4).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 45))
    assert out.shape == (1, 4, 33, 45)


def test_unknown_segmenter_and_missing_imagenet_weights(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown segmenter"):
        create_segmenter("nope", 3)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: nothing may be downloaded
    with pytest.raises(WsssError, match="not found at .*resnet50-.*pth"):
        create_segmenter("deeplabv3_resnet50", 3, pretrained="imagenet")
    with pytest.raises(WsssError, match="no ImageNet weights"):
        create_segmenter("deeplab_small", 3, pretrained="imagenet")


def test_imagenet_backbone_comes_from_the_local_cache(monkeypatch, tmp_path):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    torch.manual_seed(3)
    src = torchvision.models.mobilenet_v3_large()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(src.state_dict(), tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1])
    model = create_segmenter("deeplabv3_mobilenet", 3, pretrained="imagenet")
    assert torch.equal(model.net.backbone["16"][0].weight, src.features[16][0].weight)


def test_batches_of_one_are_refused(voc_root, tmp_path):
    train = VOCDataset(voc_root, "train")
    with pytest.raises(ConfigError, match="batches of >= 2"):
        train_segmenter(train, train.mask, None, SegConfig(batch_size=1), tmp_path / "x.pt", "cpu")
