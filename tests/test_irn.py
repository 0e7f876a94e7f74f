"""IRN (semantic path): pair labels, path-max affinity, loss, the bounded-memory random walk, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_amn import _tiny_voc
from wsss import models
from wsss.irn import (
    _upsampled_rows,
    boundary_to_affinity,
    half_disk,
    irn_mask,
    maps_at_stride,
    random_walk,
    walk_band_rows,
)
from wsss.models.irn import build_irn, default_taps
from wsss.train.irn import IRNConfig, affinity_labels, irn_loss, labels_at_stride, load_irn, train_irn


# ---- geometry --------------------------------------------------------------------------------------------
def test_half_disk_counts_each_pair_once():
    offsets, paths = half_disk(2)
    assert offsets == ((0, 1), (1, -1), (1, 0), (1, 1))
    assert len(half_disk(5)[0]) == 34 and len(half_disk(10)[0]) == 152
    for r in (3, 5, 10):
        offs = set(half_disk(r)[0])
        full = {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if 0 < dy * dy + dx * dx < r * r}
        assert offs | {(-dy, -dx) for dy, dx in offs} == full and not offs & {(-dy, -dx) for dy, dx in offs}
    for (dy, dx), path in zip(*half_disk(5), strict=True):
        assert (0, 0) in path and (dy, dx) in path
    assert set(half_disk(3)[1][half_disk(3)[0].index((2, 0))]) == {(0, 0), (1, 0), (2, 0)}
    with pytest.raises(ValueError):
        half_disk(1)


# ---- pair labels -----------------------------------------------------------------------------------------
def test_affinity_labels_hand_count():
    label = np.array([[0, 0, 1], [2, 255, 1]], np.uint8)
    # radius 2: offsets right (0,1), down-left (1,-1), down (1,0), down-right (1,1)
    # right:      (0,0)-(0,1) 0/0 bg+, (0,1)-(0,2) 0/1 neg, (1,0)-(1,1) and (1,1)-(1,2) ignored
    # down-left:  (0,1)-(1,0) 0/2 neg, (0,2)-(1,1) ignored
    # down:       (0,0)-(1,0) 0/2 neg, (0,1)-(1,1) ignored, (0,2)-(1,2) 1/1 fg+
    # down-right: (0,0)-(1,1) ignored, (0,1)-(1,2) 0/1 neg
    bg, fg, neg = affinity_labels(label, 2)
    assert bg.shape == fg.shape == neg.shape == (4, 2, 3) and bg.dtype == torch.bool
    assert [(int(i), int(y), int(x)) for i, y, x in bg.nonzero()] == [(0, 0, 0)]
    assert [(int(i), int(y), int(x)) for i, y, x in fg.nonzero()] == [(2, 0, 2)]
    assert sorted((int(i), int(y), int(x)) for i, y, x in neg.nonzero()) == [(0, 0, 1), (1, 0, 1), (2, 0, 0),
                                                                           (3, 0, 1)]
    assert not (bg & fg).any() and not (bg & neg).any() and not (fg & neg).any()


def test_affinity_labels_match_brute_force_and_batch():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1, 2, 255], size=(7, 9), p=[0.4, 0.25, 0.2, 0.15]).astype(np.uint8)
    r = 3
    counts = {"bg": 0, "fg": 0, "neg": 0}
    for y in range(7):
        for x in range(9):
            for y2 in range(7):
                for x2 in range(9):
                    if not 0 < (y2 - y) ** 2 + (x2 - x) ** 2 < r * r or (y2, x2) < (y, x):
                        continue
                    a, b = label[y, x], label[y2, x2]
                    if 255 in (a, b):
                        continue
                    counts["neg" if a != b else ("bg" if a == 0 else "fg")] += 1
    bg, fg, neg = affinity_labels(label, r)
    assert (int(bg.sum()), int(fg.sum()), int(neg.sum())) == (counts["bg"], counts["fg"], counts["neg"])
    batch = affinity_labels(torch.from_numpy(np.stack([label, label[::-1].copy()])), r)
    assert batch[0].shape == (2, len(half_disk(r)[0]), 7, 9) and torch.equal(batch[0][0], bg)


def test_labels_at_stride_takes_cell_centres():
    lab = torch.arange(10 * 9).view(10, 9)
    out = labels_at_stride(lab, 4)
    assert out.shape == (3, 3)
    assert out[0, 0] == lab[2, 2] and out[1, 2] == lab[6, 8] and out[2, 1] == lab[9, 6]  # clipped at the end


# ---- path-max affinity -----------------------------------------------------------------------------------
def _brute_affinity(b: np.ndarray, r: int) -> np.ndarray:
    h, w = b.shape
    offsets, paths = half_disk(r)
    out = np.zeros((len(offsets), h, w), np.float32)
    for i, ((dy, dx), path) in enumerate(zip(offsets, paths, strict=True)):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    out[i, y, x] = 1 - max(b[y + ty, x + tx] for ty, tx in path)
    return out


def test_path_max_affinity_toy_and_brute_force():
    b = torch.zeros(5, 6)
    b[:, 3] = 1.0  # a vertical wall
    b[0, 1] = 0.3
    offsets, _ = half_disk(3)
    aff = boundary_to_affinity(b, 3)
    right, right2 = offsets.index((0, 1)), offsets.index((0, 2))
    assert aff.shape == (len(offsets), 5, 6)
    assert aff[right, 2, 0] == 1 and aff[right, 2, 2] == 0 and aff[right2, 2, 2] == 0  # across the wall
    assert aff[right, 2, 4] == 1 and aff[right, 2, 5] == 0  # (2,5)-(2,6) leaves the image
    assert aff[right, 0, 0] == pytest.approx(0.7) and aff[right2, 0, 0] == pytest.approx(0.7)
    rng = np.random.default_rng(1)
    rb = rng.random((6, 7)).astype(np.float32)
    assert np.allclose(boundary_to_affinity(torch.from_numpy(rb), 3).numpy(), _brute_affinity(rb, 3))
    batch = boundary_to_affinity(torch.from_numpy(np.stack([rb, rb]))[:, None], 3)
    assert batch.shape == (2, len(offsets), 6, 7)


def test_path_max_affinity_gradient_reaches_the_max_only():
    b = torch.zeros(1, 3, 3)
    b[0, 1, 1] = 0.8
    b[0, 0, 1] = 0.2
    b.requires_grad_(True)
    offsets, _ = half_disk(2)
    aff = boundary_to_affinity(b, 2)
    aff[0, offsets.index((1, 0)), 0, 1].backward()  # pair (0,1)-(1,1): max 0.8 at (1,1)
    expected = torch.zeros(1, 3, 3)
    expected[0, 1, 1] = -1
    assert torch.equal(b.grad, expected)


# ---- loss ------------------------------------------------------------------------------------------------
def test_irn_loss_combination():
    aff = torch.tensor([0.5, 0.25, 0.9, 0.2])
    bg = torch.tensor([True, False, False, False])
    fg = torch.tensor([False, True, False, False])
    neg = torch.tensor([False, False, True, True])
    loss, terms = irn_loss(aff, bg, fg, neg)
    eps = 1e-5
    l_bg = -np.log(0.5 + eps) / (1 + eps)
    l_fg = -np.log(0.25 + eps) / (1 + eps)
    l_neg = -(np.log(1 + eps - 0.9) + np.log(1 + eps - 0.2)) / (2 + eps)
    assert loss.item() == pytest.approx((l_bg / 2 + l_fg / 2 + l_neg) / 2, rel=1e-5)
    assert terms["neg"].item() == pytest.approx(l_neg, rel=1e-5)
    none = torch.zeros(4, dtype=torch.bool)
    assert irn_loss(aff, none, none, none)[0].item() == 0


# ---- random walk -----------------------------------------------------------------------------------------
def test_walk_matches_dense_transition_matrix():
    torch.manual_seed(0)
    h, w, r, beta, exp_times = 5, 6, 3, 2.0, 3
    bd = torch.rand(h, w) * 0.6
    cams = torch.rand(2, h, w)
    aff = boundary_to_affinity(bd, r) ** beta
    n = h * w
    dense = torch.eye(n)
    for i, (dy, dx) in enumerate(half_disk(r)[0]):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    p, q = y * w + x, (y + dy) * w + x + dx
                    dense[p, q] = dense[q, p] = aff[i, y, x]
    trans = dense / dense.sum(0, keepdim=True)  # IRN: column-normalized, x @ T^(2^exp_times)
    x = (cams * (1 - bd)).reshape(2, n)
    ref = (x.double() @ torch.linalg.matrix_power(trans.double(), 2 ** exp_times)).float().reshape(2, h, w)
    out = random_walk(cams, bd, r, beta, exp_times)
    assert torch.allclose(out, ref, atol=1e-5)


def test_walk_fills_the_seeded_region_only():
    bd = torch.zeros(12, 14)
    bd[:, 7] = 1.0  # a wall between columns 0..6 and 8..13
    cams = torch.zeros(2, 12, 14)
    cams[0, 5, 2] = 1.0  # a seed of class A on the left
    cams[1, 3, 11] = 1.0  # a seed of class B on the right
    out = random_walk(cams, bd, radius=5, beta=10, exp_times=8)
    left, right = out[:, :, :7], out[:, :, 8:]
    assert float(left[1].abs().max()) == 0 and float(right[0].abs().max()) == 0  # nothing crosses the wall
    for region in (left[0], right[1]):  # each seed spreads evenly over its region
        assert float(region.min()) > 0 and float((region.max() - region.min()) / region.max()) < 0.05
    assert float(out[:, :, 7].abs().max()) == 0


def test_chunked_walk_equals_unchunked():
    torch.manual_seed(1)
    cams = torch.rand(3, 23, 17)
    bd = torch.rand(23, 17) ** 3
    rows = walk_band_rows(23, 17, 3, 5, 60_000)
    assert 1 < rows < 23  # several bands
    full = random_walk(cams, bd, 5, 10, 4)
    chunked = random_walk(cams, bd, 5, 10, 4, max_bytes=60_000)
    assert torch.allclose(full, chunked, atol=1e-6)
    tiny = random_walk(cams, bd, 5, 10, 2, max_bytes=1)  # one row per band
    assert torch.allclose(random_walk(cams, bd, 5, 10, 2), tiny, atol=1e-6)


# ---- label map -------------------------------------------------------------------------------------------
def test_irn_mask_valid_label_map():
    cfg = IRNConfig(exp_times=4, sem_seg_bg=0.25)
    h, w = 30, 34
    maps = np.zeros((2, h, w), np.float32)
    maps[0, 5:25, 2:12] = 2.0  # class 3 on the left
    maps[1, 5:25, 20:32] = 0.5  # class 5 on the right
    classes = np.array([3, 5])
    bd = torch.zeros(8, 9)  # ceil(30/4) x ceil(34/4)
    bd[:, 4] = 1.0  # a boundary over pixel columns 16..19
    mask = irn_mask(maps, classes, bd, (h, w), cfg)
    assert mask.dtype == np.uint8 and mask.shape == (h, w)
    assert set(np.unique(mask)) <= {0, 3, 5}
    # each class fills its side of the boundary (its seed's region), the boundary itself is background
    assert (mask[:, :15] == 3).all() and (mask[:, 21:] == 5).all() and (mask[:, 17:19] == 0).all()
    rng = np.random.default_rng(0)
    noisy = irn_mask(rng.random((2, h, w)).astype(np.float32), classes, torch.rand(8, 9), (h, w), cfg)
    assert set(np.unique(noisy)) <= {0, 3, 5}
    per_class = irn_mask(maps, classes, bd, (h, w), IRNConfig(exp_times=4, walk_norm="class", sem_seg_bg=0.25))
    assert per_class[15, 26] == 5
    assert np.array_equal(irn_mask(np.zeros((0, h, w), np.float32), np.zeros(0), bd, (h, w), cfg),
                          np.zeros((h, w), np.uint8))
    with pytest.raises(ValueError):
        irn_mask(maps, classes, torch.zeros(7, 9), (h, w), cfg)


def test_banded_mask_equals_whole_and_upsampled_rows():
    rng = np.random.default_rng(3)
    h, w = 37, 29
    maps = rng.random((3, h, w)).astype(np.float32) ** 3
    bd = torch.from_numpy(rng.random((10, 8)).astype(np.float32) ** 4)
    for norm in ("global", "class"):
        whole = irn_mask(maps, np.array([1, 4, 7]), bd, (h, w), IRNConfig(exp_times=3, walk_norm=norm, sem_seg_bg=0.25,
                                                                           max_bytes=None))
        banded = irn_mask(maps, np.array([1, 4, 7]), bd, (h, w), IRNConfig(exp_times=3, walk_norm=norm, sem_seg_bg=0.25,
                                                                            max_bytes=20_000))
        assert np.array_equal(whole, banded) and len(np.unique(whole)) > 2
    rw = torch.rand(2, 10, 8)
    full = torch.nn.functional.interpolate(rw[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    for r0, r1 in ((0, 1), (0, 3), (3, 7), (9, 10), (6, 10)):
        part = _upsampled_rows(rw, r0, r1, 4, (h, w))
        assert torch.allclose(part, full[:, 4 * r0: min(4 * r1, h), :w], atol=1e-6)


def test_maps_at_stride_pools_and_normalizes():
    maps = np.zeros((1, 9, 8), np.float32)
    maps[0, :4, :4] = 2.0
    maps[0, 8, 0] = 4.0  # the last (partial) row of cells averages its one row: 4 / 4 = 1
    out = maps_at_stride(maps, 4)
    assert out.shape == (1, 3, 2)
    assert out[0, 0, 0] == pytest.approx(1.0) and out[0, 2, 0] == pytest.approx(0.5) and out[0, 1, 1] == 0


# ---- network and training --------------------------------------------------------------------------------
def test_branch_shapes_frozen_backbone(one_thread):
    torch.manual_seed(0)
    cls = models.create("smallcnn", 3)
    before = {k: v.clone() for k, v in cls.state_dict().items()}
    branch = build_irn(cls)
    assert branch.taps == default_taps(cls.features) == ["stem", "stage1", "stage2", "stage3", "stage4"]
    x = torch.rand(2, 3, 37, 30)
    branch.train()
    out = branch(x)
    assert out.shape == (2, 1, 10, 8) and not branch.backbone.training
    out.mean().backward()
    assert all(p.grad is None for p in branch.backbone.parameters())
    assert all(p.grad is not None for p in branch.levels.parameters())
    assert all(torch.equal(before[k], v) for k, v in cls.state_dict().items())
    b = branch.boundary(x)
    assert b.shape == (2, 10, 8) and float(b.min()) >= 0 and float(b.max()) <= 1


def test_tiny_training_lowers_loss_and_reloads(tmp_path, one_thread):
    ds = _tiny_voc(tmp_path)
    torch.manual_seed(0)
    classifier = models.create("smallcnn", ds.num_classes)
    cfg = IRNConfig(epochs=6, batch_size=4, lr=0.1, radius=3, scale=(0.9, 1.1), crf=False, sem_seg_bg=0.25)
    out = tmp_path / "irn.pt"
    res = train_irn(ds, tmp_path / "maps", classifier, cfg, out, torch.device("cpu"), seed=0, progress=False)
    hist = res["loss_history"]
    assert out.is_file() and len(hist) == 6 and all(np.isfinite(hist))
    assert hist[-1] < 0.9 * hist[0]
    assert res["arch"] == "smallcnn" and res["stride"] == 4 and res["label_fractions"]["foreground"] > 0
    branch = load_irn(out)
    assert not branch.training
    x = torch.rand(1, 3, 32, 32)
    trained = torch.load(out, weights_only=True)["model"]
    assert torch.equal(branch.fuse.weight, trained["fuse.weight"])
    # the backbone was not trained: it is the classifier's features
    assert torch.equal(branch.backbone.stem[0].weight, classifier.features.stem[0].weight)
    bd = branch.boundary(x)[0]
    assert bd.shape == (8, 8)
    maps = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    mask = irn_mask(maps, np.array([1, 2]), bd, (32, 32), cfg)
    assert set(np.unique(mask)) <= {0, 1, 2}
