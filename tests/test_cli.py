"""The command line: one clear line for bad input, no traceback, exit code != 0, nothing lost."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from wsss.cli import main
from wsss.labelio import save_label_png


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["wsss", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--help")
    assert code == 0
    for cmd in ("demo", "data", "run", "train-cls", "maps", "pseudo", "train-amn", "train-seg", "predict", "eval",
                "report", "methods"):
        assert cmd in out


def test_missing_dataset_folder_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "data", "info", str(tmp_path / "nope"))
    assert code == 1
    assert err.strip().count("\n") == 0 and "nope" in err and "Traceback" not in err


def test_data_info_json_on_the_benchmark(monkeypatch, capsys, tiny_data):
    code, out, _ = run_cli(monkeypatch, capsys, "data", "info", str(tiny_data), "--split", "train", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["classes"][0] == "background" and info["num_images"] == 8
    assert sum(info["image_counts"].values()) == sum(len(v) for v in info["labels"].values())


def test_unreadable_image_names_the_file(monkeypatch, capsys, tmp_path):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    save_label_png(root / "SegmentationClass" / "a.png", np.zeros((4, 4), np.uint8))
    (root / "classes.txt").write_text("background\nthing\n")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", str(root), "--out", str(run_dir),
                           "--train-split", "train", "--score-split", "train", "--tune-split", "train",
                           "--val-split", "train", "--no-seg", "--methods", "cam")
    assert code == 1 and "a.jpg" in err and "Traceback" not in err
    assert (run_dir / "config.yaml").exists()  # what was written before the failure is kept


def test_eval_scores_two_folders_and_names_missing_file(monkeypatch, capsys, tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    a = np.array([[0, 1], [1, 255]], np.uint8)
    save_label_png(gt / "x.png", a)
    save_label_png(pred / "x.png", np.array([[0, 1], [0, 0]], np.uint8))
    code, out, _ = run_cli(monkeypatch, capsys, "eval", "--pred", str(pred), "--gt", str(gt), "--json")
    assert code == 0
    res = json.loads(out)
    # class 0: TP 1, FP 1, FN 0 -> 1/2; class 1: TP 1, FN 1 -> 1/2
    assert res["miou"] == pytest.approx(0.5) and res["per_class_iou"] == {"0": 0.5, "1": 0.5}
    save_label_png(gt / "y.png", a)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--pred", str(pred), "--gt", str(gt))
    assert code == 1 and "y.png" in err


def test_existing_run_dir_refused(monkeypatch, capsys, tmp_path, tiny_data):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", str(tiny_data), "--out", str(out))
    assert code == 1 and "--force" in err
    assert (out / "keep.txt").read_text() == "precious"


def test_predict_without_segmenter_is_clear(monkeypatch, capsys, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(img), "--run", str(tmp_path))
    assert code == 1 and "segmenter" in err


def test_unknown_method_is_clear(monkeypatch, capsys, tmp_path, tiny_data):
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", str(tiny_data), "--out", str(tmp_path / "r2"),
                           "--methods", "cam,nosuch")
    assert code == 1 and "nosuch" in err


def test_run_set_overrides_the_config(monkeypatch, capsys, tiny_data, tmp_path):
    import yaml

    out = tmp_path / "r"
    code, stdout, err = run_cli(monkeypatch, capsys, "run", "--data", str(tiny_data), "--out", str(out),
                                "--methods", "cam", "--no-seg", "--device", "cpu", "--set", "classifier.epochs=1",
                                "--set", "amn.crf=auto", "--set", "maps.multiscale=[1.0]")
    assert code == 0, err
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["classifier"]["epochs"] == 1 and cfg["amn"]["crf"] == "auto"
    for bad, msg in (("classifier.nope=1", "nope"), ("nosection.x=1", "nosection"), ("novalue", "KEY=VALUE")):
        code, _, err = run_cli(monkeypatch, capsys, "run", "--data", str(tiny_data), "--out",
                               str(tmp_path / "x"), "--set", bad)
        assert code != 0 and msg in err and "Traceback" not in err
        assert err.strip().count("\n") == 0


def test_data_synth_benchmark_version(monkeypatch, capsys, tmp_path):
    code, _, _ = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "v1"), "--benchmark", "v1",
                         "--images", "8")
    assert code == 0
    knobs = json.loads((tmp_path / "v1" / "synth.json").read_text())
    assert knobs["size"] == 128 and knobs["images"] == 8  # v1's frozen side, the override on top
    assert Image.open(tmp_path / "v1" / "JPEGImages" / "trainaug_00000.jpg").size == (128, 128)
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "v0"), "--benchmark", "v0")
    assert code != 0 and "v0" in err and "Traceback" not in err
    assert not (tmp_path / "v0").exists()


def test_data_synth_knobs(monkeypatch, capsys, tmp_path):
    code, _, _ = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "d"), "--images", "4",
                         "--size", "48", "--part-offset", "0.8", "--body-radius", "0.3,0.4", "--distractors", "1")
    assert code == 0
    knobs = json.loads((tmp_path / "d" / "synth.json").read_text())
    assert knobs["part_offset"] == 0.8 and knobs["body_radius"] == [0.3, 0.4] and knobs["distractors"] == 1
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "e"), "--body-radius", "0.5")
    assert code != 0 and "--body-radius" in err and "Traceback" not in err
