"""AMN: loss (golden values), label conditioning, inference, IR labels, a tiny training run + reload."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import wsss.train.amn as amn_train
from wsss import localize, models
from wsss.config import AMNConfig
from wsss.data.voc import VOCDataset
from wsss.errors import ConfigError
from wsss.labelio import save_label_png
from wsss.localize.amn import AMNLocalizer
from wsss.mapsio import save_maps
from wsss.models.amn import OFFICIAL_RATES, aspp_rates_for, build_amn
from wsss.train.amn import amn_loss, classifier_spec, ir_labels, load_amn, train_amn


def _amn(k: int = 3, seed: int = 0):
    """An untrained AMN whose head is scaled up, so its class probabilities are not all ~1/(K+1)."""
    torch.manual_seed(seed)
    amn = build_amn(models.create("smallcnn", k)).eval()
    with torch.no_grad():
        for conv in amn.aspp.convs:
            conv.weight.mul_(50)
    return amn


# ---- loss ------------------------------------------------------------------------------------------------
def test_amn_loss_golden():
    # C = 3 (K = 2), eps = 0.4: target 0.6 for the label class, 0.2 for each other class.
    # One image, 2x2 pixels, target [[0, 1], [255, 2]]:
    #   (0,0) bg, logits (0, 0, 0): p = 1/3 each, CE = -(0.6 + 0.2 + 0.2) ln(1/3) = ln 3
    #   (0,1) class 1, logits (0, ln2, 0): p = (1/4, 1/2, 1/4),
    #         CE = -(0.6 ln(1/2) + 0.2 ln(1/4) + 0.2 ln(1/4)) = 0.6 ln2 + 0.8 ln2 = 1.4 ln2
    #   (1,0) ignored (its logits must not matter)
    #   (1,1) class 2, logits (0, 0, ln2): by symmetry 1.4 ln2
    # bg mean = ln3, fg mean = 1.4 ln2  ->  loss = (ln3 + 1.4 ln2) / 2
    ln2 = math.log(2)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 1] = ln2
    logits[0, 2, 1, 1] = ln2
    logits[0, :, 1, 0] = torch.tensor([9.0, -5.0, 3.0])
    target = torch.tensor([[[0, 1], [255, 2]]])
    loss = amn_loss(logits, target, eps=0.4)
    assert loss.item() == pytest.approx((math.log(3) + 1.4 * ln2) / 2, rel=1e-6)
    # not PyTorch's label smoothing (eps/C on every class), nor an unbalanced mean
    ls = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, label_smoothing=0.4)
    assert abs(ls.item() - loss.item()) > 1e-3
    assert abs((math.log(3) + 2.8 * ln2) / 3 - loss.item()) > 1e-3

    # no foreground pixel: the background mean alone. Pixel (0,1) as background, p = (1/4, 1/2, 1/4):
    # CE = -(0.6 ln(1/4) + 0.2 ln(1/2) + 0.2 ln(1/4)) = 1.8 ln2  ->  loss = (ln3 + 1.8 ln2) / 2
    only_bg = torch.tensor([[[0, 0], [255, 255]]])
    assert amn_loss(logits, only_bg).item() == pytest.approx((math.log(3) + 1.8 * ln2) / 2, rel=1e-6)
    # nothing labelled: 0, and backward still works
    x = logits.clone().requires_grad_(True)
    empty = amn_loss(x, torch.full((1, 2, 2), 255))
    empty.backward()
    assert empty.item() == 0 and x.grad is not None and float(x.grad.abs().sum()) == 0


def test_amn_loss_upsamples_logits_to_label_size():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 16, 16))
    loss = amn_loss(logits, target)
    loss.backward()
    up = torch.nn.functional.interpolate(logits.detach(), size=(16, 16), mode="bilinear", align_corners=False)
    assert loss.item() == pytest.approx(amn_loss(up, target).item(), rel=1e-6)


# ---- network ---------------------------------------------------------------------------------------------
def test_aspp_rates_scale_with_feature_side():
    assert aspp_rates_for(32) == OFFICIAL_RATES == aspp_rates_for(64)
    assert aspp_rates_for(12) == (2, 4, 7, 9)
    assert aspp_rates_for(4) == (1, 2, 2, 3)


def test_label_conditioning_changes_output_and_classifier_untouched():
    torch.manual_seed(0)
    cls = models.create("smallcnn", 3)
    before = {k: v.clone() for k, v in cls.state_dict().items()}
    amn = build_amn(cls).eval()
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    with torch.no_grad():
        out = amn(x, labels)
        out_zero = amn(x, torch.zeros_like(labels))
        out_other = amn(x, labels.flip(0))
    assert out.shape == (2, 4, 4, 4)
    assert amn.rates == aspp_rates_for(4)
    scale = out.abs().max()
    assert (out - out_zero).abs().max() > 0.05 * scale
    assert (out - out_other).abs().max() > 0.05 * scale
    with torch.no_grad():
        next(amn.backbone.parameters()).add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in cls.state_dict().items())
    body, new = amn.param_groups()
    assert {id(p) for p in body} == {id(p) for p in amn.backbone.parameters()}
    assert len(new) == 2 + 2 * len(OFFICIAL_RATES)  # label encoder + 4 ASPP convs (weight, bias)


# ---- inference -------------------------------------------------------------------------------------------
def test_inference_keeps_background_and_present_classes():
    amn = _amn(k=3)
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    loc = localize.create("amn", amn)
    maps = loc.attribute(x, labels)
    assert maps.shape == (2, 3, 32, 32)
    assert float(maps[0, 1].abs().max()) == 0 and float(maps[1, 0].abs().max()) == 0
    assert float(maps[1, 2].abs().max()) == 0
    present = maps[labels.bool()]  # (3, H, W): min-max normalized everywhere without IR labels
    assert torch.allclose(present.amin(dim=(1, 2)), torch.zeros(3), atol=1e-6)
    assert torch.allclose(present.amax(dim=(1, 2)), torch.ones(3), atol=1e-3)
    assert not amn.training and all(p.requires_grad for p in amn.parameters())
    with pytest.raises(ConfigError):
        localize.create("amn", models.create("smallcnn", 3))


def test_inference_raw_probabilities_on_confident_background():
    amn = _amn(k=3)
    x = torch.rand(1, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1]])
    with torch.no_grad():  # the official read-out: flip-averaged logits, softmax over all K+1
        logits = (amn(x, labels) + amn(x.flip(-1), labels).flip(-1)) / 2
        up = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
        probs = torch.softmax(up, dim=1)[:, 1:]
    ir = np.full((32, 32), 255, np.uint8)
    ir[:, :16] = 0  # confident background on the left half
    maps = AMNLocalizer(amn, ir_labels=lambda _id: ir).attribute(x, labels, ids=["a"])
    norm = AMNLocalizer(amn).attribute(x, labels)
    for c in (0, 2):
        assert torch.allclose(maps[0, c, :, :16], probs[0, c, :, :16], atol=1e-6)
        assert torch.allclose(maps[0, c, :, 16:], norm[0, c, :, 16:], atol=1e-6)
        p = probs[0, c]
        assert float(p.max() - p.min()) > 0.05
        assert torch.allclose(norm[0, c], (p - p.min()) / (p.max() - p.min() + 1e-5), atol=1e-5)


# ---- IR labels -------------------------------------------------------------------------------------------
def test_ir_labels_hand_example():
    m3 = [[0.9, 0.2, 0.04], [0.05, 0.31, 0.05]]
    m5 = [[0.5, 0.1, 0.01], [0.02, 0.6, 0.30]]
    maps = np.array([m3, m5], np.float32)
    # (0,0) top 0.9 (class 3) > 0.30 -> 3; (0,1) top 0.2: neither -> 255; (0,2) all <= 0.05 -> 0;
    # (1,0) top 0.05 = bg threshold -> 0 (ties go to background, IRN's argmax); (1,1) top 0.6 -> 5;
    # (1,2) top 0.30 = fg threshold is not foreground, and > 0.05 -> 255
    expected = np.array([[3, 255, 0], [0, 5, 255]], np.uint8)
    out = ir_labels(maps, np.array([3, 5]), fg=0.30, bg=0.05)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    assert np.array_equal(ir_labels(np.zeros((0, 2, 3), np.float32), np.zeros(0)), np.zeros((2, 3), np.uint8))


def test_ir_labels_crf_refines_both_maps(monkeypatch):
    calls = []

    def fake_refine(image, labels, n_labels, gt_prob=0.7, iters=10, sxy_bilateral=50):
        calls.append((image.shape, labels.copy(), n_labels, sxy_bilateral))
        return labels

    monkeypatch.setitem(sys.modules, "wsss.crf", types.SimpleNamespace(crf_refine_labels=fake_refine))
    maps = np.array([[[0.9, 0.2, 0.01]]], np.float32)
    image = np.zeros((1, 3, 3), np.uint8)
    out = ir_labels(maps, np.array([2]), image=image, crf=True)
    assert np.array_equal(out, [[2, 255, 0]])
    assert [c[2] for c in calls] == [2, 2]
    assert [c[3] for c in calls] == [50, 50]  # IRN's kernel unless told
    assert np.array_equal(calls[0][1], [[1, 0, 0]]) and np.array_equal(calls[1][1], [[1, 1, 0]])
    with pytest.raises(ValueError):
        ir_labels(maps, np.array([2]), crf=True)
    calls.clear()
    ir_labels(maps, np.array([2]), image=image, crf=True, crf_sxy=None)
    assert [c[3] for c in calls] == [None, None]  # scaled to the image by the CRF


def test_ir_labels_real_crf_accepts_read_only_image():
    pytest.importorskip("pydensecrf.densecrf")
    crf = pytest.importorskip("wsss.crf")
    if not crf.crf_available():
        pytest.skip("crf extra not installed")
    image = np.full((16, 16, 3), 100, np.uint8)
    image[4:12, 4:12] = (230, 20, 20)
    image.setflags(write=False)  # as images read through PIL
    maps = np.zeros((1, 16, 16), np.float32)
    maps[0, 4:12, 4:12] = 1.0
    out = ir_labels(maps, np.array([1]), image=image, crf=True)
    assert out.shape == (16, 16) and out[8, 8] == 1 and out[0, 0] == 0


# ---- training --------------------------------------------------------------------------------------------
def _tiny_voc(root, n: int = 8, side: int = 32):
    """VOC layout, K = 2: a red square (class 1) and/or a blue square (class 2) on grey noise, with
    fake map files (the true object plus a blurred halo) in ``root/maps``."""
    rng = np.random.default_rng(0)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "maps"):
        (root / d).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nred\nblue\n")
    ids = []
    for i in range(n):
        img = rng.integers(90, 150, (side, side, 3)).astype(np.uint8)
        mask = np.zeros((side, side), np.uint8)
        for c, colour in ((1, (220, 30, 30)), (2, (30, 30, 220))):
            if i % 3 == c - 1 or i % 3 == 2:
                y, x = rng.integers(0, side - 12, 2)
                img[y : y + 12, x : x + 12] = colour
                mask[y : y + 12, x : x + 12] = c
        image_id = f"img{i}"
        ids.append(image_id)
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        classes = np.unique(mask[mask > 0])
        maps = np.stack([(mask == c).astype(np.float32) * 3.0 for c in classes])
        save_maps(root / "maps" / f"{image_id}.npz", maps, classes)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return VOCDataset(root, "train")


def test_tiny_training_lowers_loss_and_reloads(tmp_path, monkeypatch):
    ds = _tiny_voc(tmp_path)
    torch.manual_seed(0)
    classifier = models.create("smallcnn", ds.num_classes)
    captured = {}
    fit = amn_train.fit_amn

    def spy(*args, **kwargs):
        net, res = fit(*args, **kwargs)
        captured["net"] = net
        return net, res

    monkeypatch.setattr(amn_train, "fit_amn", spy)
    cfg = AMNConfig(epochs=4, batch_size=4, lr_backbone=1e-3, lr_head=1e-2, scale=(0.9, 1.1))
    out = tmp_path / "amn.pt"
    res = train_amn(ds, tmp_path / "maps", classifier, cfg, out, torch.device("cpu"), seed=0, progress=False)
    assert out.is_file() and not out.with_suffix(".pt.tmp").exists()
    # the smoothed target's entropy is the floor: -(0.6 ln 0.6 + 2 * 0.2 ln 0.2) for C = 3, eps = 0.4
    floor = -(0.6 * math.log(0.6) + 0.4 * math.log(0.2))
    hist = res["loss_history"]
    assert len(hist) == 4 and hist[-1] - floor < 0.5 * (hist[0] - floor)
    assert torch.load(out, weights_only=True)["arch"] == "smallcnn"  # found in the registry
    assert res["crf"] is False and res["labels_from"] == "cam" and res["rates"] == [1, 2, 2, 3]
    assert res["label_fractions"]["foreground"] > 0 and res["label_fractions"]["background"] > 0

    net = captured["net"]
    loaded = load_amn(out)
    assert loaded.rates == net.rates and not loaded.training
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0], [1, 1]])
    with torch.no_grad():
        assert torch.equal(net(x, labels), loaded(x, labels))


def test_classifier_spec_checks_a_given_architecture():
    cls = models.create("smallcnn", 2)
    assert classifier_spec(cls, "smallcnn") == ("smallcnn", {})
    with pytest.raises(ConfigError):
        classifier_spec(cls, "smallcnn_deep")
