"""Pseudo-masks: normalization, masks, threshold sweep, label PNG round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.errors import DataError
from wsss.metrics import ConfusionMatrix, threshold_values
from wsss.pseudo import (
    VOC_PALETTE,
    load_label_png,
    make_sweep_matrices,
    maps_to_mask,
    normalize_maps,
    save_label_png,
    summarize_sweep,
    sweep_counts,
    sweep_image,
)


def test_normalize_max_and_zero_map():
    maps = torch.stack([torch.tensor([[0.0, 2.0], [1.0, -1.0]]), torch.zeros(2, 2)])
    out = normalize_maps(maps, "max")
    assert out.tolist() == [[[0.0, 1.0], [0.5, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]
    assert not torch.isnan(normalize_maps(torch.zeros(2, 3, 4, 4), "p99")).any()
    assert not torch.isnan(normalize_maps(torch.zeros(2, 3, 4, 4), "max")).any()


def test_normalize_p99_clips_and_matches_numpy():
    m = np.arange(100, dtype=np.float64).reshape(10, 10)
    out = normalize_maps(m[None], "p99")
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    expected = np.clip(m / np.percentile(m, 99), 0, 1)
    np.testing.assert_allclose(out[0], expected)
    assert out.max() == 1.0 and (out == 1.0).sum() == 1  # only 99 > p99 = 98.01


def test_normalize_p99_falls_back_to_max_for_sparse_maps():
    m = torch.zeros(1, 20, 20)
    m[0, 0, 0] = 4.0  # 1 pixel of 400: p99 is 0
    out = normalize_maps(m, "p99")
    assert out[0, 0, 0] == 1.0 and out.sum() == 1.0


def test_normalize_batched_is_per_map_and_none_is_identity():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 3, 8, 8, generator=g) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1)
    out = normalize_maps(maps, "max")
    assert torch.allclose(out.amax(dim=(-2, -1)), torch.ones(2, 3))
    assert torch.allclose(out[1], normalize_maps(maps[1], "max"))
    assert normalize_maps(maps, "none") is maps
    with pytest.raises(ValueError):
        normalize_maps(maps, "mean")


def test_maps_to_mask_argmax_and_ties_to_background():
    maps = torch.tensor(
        [
            [[0.5, 0.9, 0.2], [0.7, 0.0, 0.6]],  # class 3
            [[0.1, 0.9, 0.8], [0.7, 0.0, 0.4]],  # class 7
        ]
    )
    mask = maps_to_mask(maps, [3, 7], t=0.5)
    # (0,0): 0.5 ties t -> background; (0,1): maps tie -> first class; (1,0) likewise.
    assert mask.dtype == torch.uint8
    assert mask.tolist() == [[0, 3, 7], [3, 0, 3]]
    np_mask = maps_to_mask(maps.numpy(), np.array([3, 7]), 0.5)
    assert isinstance(np_mask, np.ndarray) and np_mask.tolist() == mask.tolist()
    assert maps_to_mask(torch.zeros(0, 2, 3), [], 0.1).tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        maps_to_mask(maps, [3], 0.5)
    with pytest.raises(ValueError):
        maps_to_mask(maps, [0, 3], 0.5)


def test_sweep_tiny_example():
    maps = torch.tensor([[[0.2, 0.6], [0.9, 0.0]]])
    gt = torch.tensor([[0, 1], [1, 0]])
    ts = [0.1, 0.5, 0.6, 0.7]
    cms = make_sweep_matrices(2, ts)
    sweep_image(maps, [1], gt, ts, cms)
    # t=0.1: pred [[1,1],[1,0]] -> IoU0 = 1/2, IoU1 = 2/3
    # t=0.5: pred [[0,1],[1,0]] -> perfect
    # t=0.6: the 0.6 pixel ties t -> background: pred [[0,0],[1,0]] -> IoU0 = 2/3, IoU1 = 1/2
    # t=0.7: same as t=0.6
    out = summarize_sweep(cms, fixed_t=0.6)
    mious = [r["miou"] for r in out["sweep"]]
    assert mious == pytest.approx([7 / 12, 1.0, 7 / 12, 7 / 12])
    assert [r["t"] for r in out["sweep"]] == ts
    assert out["sweep"][0]["precision"] == pytest.approx(2 / 3) and out["sweep"][0]["recall"] == 1.0
    assert out["sweep"][2]["precision"] == 1.0 and out["sweep"][2]["recall"] == 0.5
    assert out["best"] == {"t": 0.5, "miou": 1.0}
    assert out["fixed"]["t"] == 0.6 and out["fixed"]["chosen_on"] == "tune"
    assert out["fixed"]["miou"] == pytest.approx(7 / 12)
    assert out["per_class_iou"] == pytest.approx({"0": 2 / 3, "1": 0.5})
    assert out["spread_0.1_0.5"] == pytest.approx(5 / 12)
    assert out["robust_width"] == 0.1  # only t=0.5 is within 95% of the best; step = 0.1
    self_chosen = summarize_sweep(cms, None)
    assert self_chosen["fixed"]["t"] == 0.5 and self_chosen["fixed"]["chosen_on"] == "self"
    with pytest.raises(ValueError):
        summarize_sweep(cms, 0.3)


def test_sweep_equals_maps_to_mask_per_threshold():
    g = torch.Generator().manual_seed(1)
    ts = threshold_values()
    cms = make_sweep_matrices(6, ts)
    ref = {t: ConfusionMatrix(6) for t in ts}
    for _ in range(3):
        maps = normalize_maps(torch.rand(2, 16, 16, generator=g) ** 2)
        maps[:, :4] = 0.3  # ties between maps and with t
        classes = torch.tensor([2, 5])
        gt = torch.randint(0, 6, (16, 16), generator=g)
        gt[0] = 255
        sweep_image(maps, classes, gt, ts, cms)
        for t in ts:
            ref[t].update(maps_to_mask(maps, classes, t), gt)
    for t in ts:
        assert torch.equal(cms[t].mat, ref[t].mat)
    out = summarize_sweep(cms)
    assert len(out["sweep"]) == 96
    for r in out["sweep"]:
        assert all(isinstance(r[k], float) and 0.0 <= r[k] <= 1.0 for k in ("miou", "precision", "recall"))


def test_sweep_counts_equal_the_per_threshold_masks():
    """The one-pass sweep against its definition, maps_to_mask + ConfusionMatrix per threshold: unsorted and
    negative thresholds, values exactly on a threshold, void, float64 maps, no maps at all."""
    g = torch.Generator().manual_seed(3)
    ts = [0.5, -0.1, 0.0, 0.01, 0.3, 0.95, 0.02]
    for dtype, n_maps in ((torch.float32, 3), (torch.float64, 2), (torch.float32, 0)):
        maps = torch.rand(n_maps, 12, 10, generator=g, dtype=dtype) ** 3
        if n_maps:
            maps[0, :3] = 0.3
            maps[:, 3, :] = 0.0
            maps[-1, 4] = 0.01
        classes = torch.tensor([4, 1, 6][:n_maps])
        gt = torch.randint(0, 7, (12, 10), generator=g)
        gt[5] = 255
        counts = sweep_counts(maps, classes, gt, ts, 7)
        assert counts.shape == (len(ts), 7, 7) and counts.dtype == torch.int64
        for t, c in zip(ts, counts, strict=True):
            assert torch.equal(c, ConfusionMatrix(7).update(maps_to_mask(maps, classes, t), gt).mat), (dtype, t)


def test_sweep_errors():
    cms = make_sweep_matrices(3, [0.5])
    with pytest.raises(DataError):
        sweep_image(torch.rand(1, 2, 2), [1], torch.zeros(3, 3, dtype=torch.long), [0.5], cms)
    with pytest.raises(DataError, match="class 4"):
        sweep_image(torch.ones(1, 2, 2), [4], torch.zeros(2, 2, dtype=torch.long), [0.5], cms)
    with pytest.raises(DataError, match="no pixel"):
        summarize_sweep(make_sweep_matrices(3, [0.5]))


def test_voc_palette():
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    assert tuple(VOC_PALETTE[0]) == (0, 0, 0)
    assert tuple(VOC_PALETTE[1]) == (128, 0, 0)
    assert tuple(VOC_PALETTE[15]) == (192, 128, 128)
    assert tuple(VOC_PALETTE[255]) == (224, 224, 192)


def test_label_png_round_trip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    mask = rng.integers(0, 21, (7, 9)).astype(np.uint8)
    mask[0, :3] = 255
    path = tmp_path / "m.png"
    save_label_png(path, torch.from_numpy(mask))
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[: 3 * 256] == VOC_PALETTE.reshape(-1).tolist()
    np.testing.assert_array_equal(load_label_png(path), mask)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temp file left behind
    with pytest.raises(ValueError):
        save_label_png(tmp_path / "bad.png", np.full((2, 2), 300))
    with pytest.raises(DataError, match="missing.png"):
        load_label_png(tmp_path / "missing.png")
