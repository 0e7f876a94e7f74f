"""Metrics: golden values on hand examples, and agreement with torchmetrics / brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss.errors import DataError
from wsss.labelio import save_label_png
from wsss.metrics import (
    APAccumulator,
    ConfusionMatrix,
    NDRAccumulator,
    average_precision,
    evaluate_folders,
    multilabel_map,
    ndr_region,
    robust_width,
    threshold_values,
)

# Hand example, K = 3. (gt, pred) pairs, row by row, void skipped:
#   (0,0) (0,1) (1,1) | (1,1) (1,2) (2,2) | (2,0) (void) (0,1)
# Confusion matrix (rows gt, cols pred):
#   gt0: [1, 2, 0]   gt1: [0, 2, 1]   gt2: [1, 0, 1]     col sums: [2, 4, 2], 8 pixels
# IoU0 = 1 / (3 + 2 - 1) = 1/4;  IoU1 = 2 / (3 + 4 - 2) = 2/5;  IoU2 = 1 / (2 + 2 - 1) = 1/3
# mIoU = (1/4 + 2/5 + 1/3) / 3 = 59/180;  pixel accuracy = 4/8
# fg precision = (2 + 1) / pred fg (4 + 2) = 1/2;  fg recall = 3 / gt fg (3 + 2) = 3/5
GT = [[0, 0, 1], [1, 1, 2], [2, 255, 0]]
PRED = [[0, 1, 1], [1, 2, 2], [0, 0, 1]]


def hand_cm() -> ConfusionMatrix:
    return ConfusionMatrix(3).update(torch.tensor(PRED), torch.tensor(GT))


def test_confusion_matrix_hand_example():
    cm = hand_cm()
    assert cm.mat.dtype == torch.int64
    assert cm.mat.tolist() == [[1, 2, 0], [0, 2, 1], [1, 0, 1]]
    assert cm.total == 8
    assert cm.iou().tolist() == pytest.approx([1 / 4, 2 / 5, 1 / 3])
    assert cm.miou() == pytest.approx(59 / 180)
    assert cm.pixel_accuracy() == pytest.approx(0.5)
    assert cm.fg_precision_recall() == pytest.approx((0.5, 0.6))
    assert cm.per_class_iou() == pytest.approx({"0": 0.25, "1": 0.4, "2": 1 / 3})


def test_numpy_input_and_merge():
    a = ConfusionMatrix(3).update(np.array(PRED, np.uint8), np.array(GT, np.uint8))
    assert torch.equal(a.mat, hand_cm().mat)
    a.merge(hand_cm())
    assert torch.equal(a.mat, 2 * hand_cm().mat)
    assert a.miou() == pytest.approx(59 / 180)
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(4))


def test_absent_class_is_none_and_not_averaged():
    cm = ConfusionMatrix(4).update(torch.tensor(PRED), torch.tensor(GT))
    per_class = cm.per_class_iou()
    assert per_class["3"] is None
    assert math.isnan(cm.iou()[3].item())
    assert cm.miou() == pytest.approx(59 / 180)


def test_void_ignored_whatever_the_prediction():
    gt = torch.tensor([[1, 255], [255, 0]])
    pred = torch.tensor([[1, 200], [-3, 0]])  # out-of-range predictions on void pixels are fine
    cm = ConfusionMatrix(2).update(pred, gt)
    assert cm.mat.tolist() == [[1, 0], [0, 1]]
    assert cm.miou() == 1.0


def test_prediction_out_of_range_raises():
    gt = torch.tensor([0, 1, 2])
    with pytest.raises(DataError, match="prediction contains class 3"):
        ConfusionMatrix(3).update(torch.tensor([0, 1, 3]), gt)
    with pytest.raises(DataError, match="prediction contains class -1"):
        ConfusionMatrix(3).update(torch.tensor([0, -1, 2]), gt)
    with pytest.raises(DataError, match="ground truth contains label 7"):
        ConfusionMatrix(3).update(torch.tensor([0, 1, 2]), torch.tensor([0, 7, 2]))
    with pytest.raises(DataError, match="shape"):
        ConfusionMatrix(3).update(torch.tensor([0, 1]), gt)
    with pytest.raises(DataError, match="integers"):
        ConfusionMatrix(3).update(torch.tensor([0.0, 1.0, 2.0]), gt)


def test_empty_matrix_guards():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou())
    assert cm.pixel_accuracy() == 0.0
    assert cm.fg_precision_recall() == (0.0, 0.0)
    assert cm.per_class_iou() == {"0": None, "1": None, "2": None}


def test_iou_matches_torchmetrics():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    k = 6
    gt = torch.randint(0, k, (4, 32, 32), generator=g)
    gt[torch.rand(gt.shape, generator=g) < 0.1] = 255
    pred = torch.where(
        torch.rand(gt.shape, generator=g) < 0.6, gt, torch.randint(0, k, gt.shape, generator=g)
    )
    pred[gt == 255] = torch.randint(0, k, pred[gt == 255].shape, generator=g)
    cm = ConfusionMatrix(k)
    for p, t in zip(pred, gt, strict=True):
        cm.update(p, t)
    ref = MulticlassJaccardIndex(num_classes=k, ignore_index=255, average="none")(pred, gt)
    assert torch.allclose(cm.iou().float(), ref, atol=1e-6)
    assert cm.miou() == pytest.approx(float(ref.mean()), abs=1e-6)


def test_threshold_values():
    ts = threshold_values()
    assert len(ts) == 96 and ts[0] == 0.0 and ts[-1] == 0.95 and ts[1] == 0.01 and ts[37] == 0.37
    assert threshold_values(0.1, 0.5, 0.1) == [0.1, 0.2, 0.3, 0.4, 0.5]
    with pytest.raises(ValueError):
        threshold_values(0.5, 0.1, 0.1)


def test_robust_width():
    # best 0.6, bar 0.95 * 0.6 = 0.57: 0.6, 0.58 and 0.571 pass -> 3 * 0.1
    mious = {0.1: 0.5, 0.2: 0.6, 0.3: 0.58, 0.4: 0.571, 0.5: 0.569}
    assert robust_width(mious, 0.1) == 0.3
    assert robust_width({0.05: 0.4}, 0.05) == 0.05
    assert robust_width({}, 0.05) == 0.0


def brute_force_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    # Each positive contributes 1/P times the precision at the threshold equal to its score.
    precisions = [positives[scores >= s].mean() for s in scores[positives]]
    return float(np.mean(precisions))


def test_average_precision_hand_and_brute_force():
    # Ranked: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        scores = np.round(rng.random(n), 1)  # many ties
        positives = rng.random(n) < 0.4
        if not positives.any():
            assert math.isnan(average_precision(scores, positives))
            continue
        assert average_precision(scores, positives) == pytest.approx(brute_force_ap(scores, positives))
    with pytest.raises(ValueError):
        average_precision(np.array([np.nan, 1.0]), np.array([True, False]))


def test_average_precision_matches_torchmetrics():
    from torchmetrics.functional.classification import binary_average_precision

    g = torch.Generator().manual_seed(1)
    scores = torch.rand(500, generator=g)
    target = (torch.rand(500, generator=g) < scores).long()
    ours = average_precision(scores.numpy(), target.numpy().astype(bool))
    assert ours == pytest.approx(float(binary_average_precision(scores, target)), abs=1e-6)


def test_ap_accumulator_exact_on_bin_quantized_scores():
    rng = np.random.default_rng(2)
    nb = 10
    acc = APAccumulator(num_bins=nb)
    all_scores, all_pos = [], []
    for _ in range(3):  # streamed in chunks
        scores = (rng.integers(0, nb, 200) + 0.5) / nb  # bin centres: binning loses nothing
        positives = rng.random(200) < scores
        acc.update(1, scores, positives)
        all_scores.append(scores)
        all_pos.append(positives)
    exact = average_precision(np.concatenate(all_scores), np.concatenate(all_pos))
    assert acc.ap()[1] == pytest.approx(exact)
    assert acc.mean_ap() == pytest.approx(exact)


def test_ap_accumulator_update_maps_and_approximation():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 3, (40, 40))
    gt[:2] = 255
    maps = np.stack([np.clip((gt == c) * 0.5 + rng.random(gt.shape) * 0.6, 0, 1) for c in (1, 2)])
    acc = APAccumulator()
    acc.update_maps(maps, [1, 2], gt)
    keep = gt != 255
    for i, c in enumerate((1, 2)):
        assert acc.ap()[c] == pytest.approx(average_precision(maps[i][keep], gt[keep] == c), abs=0.01)
    acc.update(5, np.zeros(4), np.zeros(4, bool))  # a class with no positive is left out
    assert set(acc.ap()) == {1, 2}


def test_multilabel_map_matches_torchmetrics():
    from torchmetrics.classification import MultilabelAveragePrecision

    g = torch.Generator().manual_seed(4)
    scores = torch.rand(64, 5, generator=g)
    labels = (torch.rand(64, 5, generator=g) < 0.3).long()
    labels[0] = 1  # every class has a positive
    ref = MultilabelAveragePrecision(num_labels=5, average="macro")(scores, labels)
    assert multilabel_map(scores, labels) == pytest.approx(float(ref), abs=1e-6)
    # A class with no positive is skipped, not counted as 0.
    labels[:, 4] = 0
    expected = np.mean([average_precision(scores[:, k].numpy(), labels[:, k].numpy()) for k in range(4)])
    assert multilabel_map(scores, labels) == pytest.approx(expected)


def test_ndr_region_and_accumulator():
    ref = np.array([[0.9, 0.6, 0.2], [0.5, 0.1, 0.0], [0.0, 0.0, 0.0]])
    obj = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], bool)
    dr, ndr = ndr_region(ref, obj, thr=0.5)
    assert dr.tolist() == [[True, True, False], [True, False, False], [False, False, False]]
    assert ndr.tolist() == [[False, False, True], [False, True, False], [False, False, False]]
    gt = np.where(obj, 3, 0)
    gt[2, 2] = 255
    pred = np.array([[3, 3, 3], [0, 0, 0], [0, 0, 0]])  # labels one of the two NDR pixels
    acc = NDRAccumulator()
    acc.update(ref[None], [3], gt, pred)
    assert acc.recall() == 0.5
    assert acc.per_class_recall() == {"3": 0.5}
    assert NDRAccumulator().recall() == 0.0


def write_pair(tmp_path, name, gt, pred):
    (tmp_path / "gt").mkdir(exist_ok=True)
    (tmp_path / "pred").mkdir(exist_ok=True)
    save_label_png(tmp_path / "gt" / name, np.array(gt, np.uint8))
    if pred is not None:
        save_label_png(tmp_path / "pred" / name, np.array(pred, np.uint8))


def test_evaluate_folders(tmp_path):
    from PIL import Image

    write_pair(tmp_path, "a.png", GT, PRED)
    # A grayscale ('L') ground truth is read as values; a perfect prediction.
    (tmp_path / "gt").mkdir(exist_ok=True)
    Image.fromarray(np.array([[1, 2], [0, 0]], np.uint8)).save(tmp_path / "gt" / "b.png")
    save_label_png(tmp_path / "pred" / "b.png", np.array([[1, 2], [0, 0]], np.uint8))
    out = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    # Hand matrix plus diag (2, 1, 1): [[3,2,0],[0,3,1],[1,0,2]]; rows [5,4,3], cols [4,5,3]
    # IoU0 = 3/(5+4-3), IoU1 = 3/(4+5-3), IoU2 = 2/(3+3-2): all 1/2
    assert out["num_images"] == 2 and out["num_classes"] == 3
    assert out["per_class_iou"] == pytest.approx({"0": 0.5, "1": 0.5, "2": 0.5})
    assert out["miou"] == pytest.approx(0.5)
    assert out["pixel_accuracy"] == pytest.approx(8 / 12)
    out4 = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_classes=4)
    assert out4["per_class_iou"]["3"] is None and out4["miou"] == pytest.approx(out["miou"])


def test_evaluate_folders_errors(tmp_path):
    from PIL import Image

    write_pair(tmp_path, "a.png", GT, PRED)
    with pytest.raises(DataError, match=r"b\.png"):
        write_pair(tmp_path, "b.png", GT, None)
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    (tmp_path / "gt" / "b.png").unlink()

    with pytest.raises(DataError, match=r"a\.png.*class 5"):
        save_label_png(tmp_path / "pred" / "a.png", np.full((3, 3), 5, np.uint8))
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_classes=3)
    with pytest.raises(DataError, match=r"a\.png.*void"):  # 255 predicted on a labelled pixel
        save_label_png(tmp_path / "pred" / "a.png", np.full((3, 3), 255, np.uint8))
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(DataError, match=r"a\.png.*size"):
        save_label_png(tmp_path / "pred" / "a.png", np.zeros((3, 4), np.uint8))
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(DataError, match=r"a\.png.*mode 'RGB'"):
        Image.new("RGB", (3, 3)).save(tmp_path / "pred" / "a.png")
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(DataError, match=r"a\.png.*cannot read"):
        (tmp_path / "pred" / "a.png").write_bytes(b"not a png")
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(DataError, match=r"no \*\.png"):
        evaluate_folders(tmp_path / "pred", tmp_path / "pred" / "..")  # tmp_path holds no png
