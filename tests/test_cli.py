"""The command line: one clear line for bad input, no traceback, exit code != 0, nothing lost."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsss
from wsss.cli import main
from wsss.labelio import save_label_png

from .conftest import run_cli

REPO = Path(__file__).resolve().parents[1]




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


# ---- usage errors, --version, --debug, Ctrl-C, bad files: `-m cli`, also run by CI on the base install -------
CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def one_error_line(err: str) -> bool:
    return sum(line.startswith(("Error:", "error:")) for line in err.splitlines()) == 1


@pytest.mark.cli
@pytest.mark.parametrize(
    "args, says",
    [
        (["run"], "Missing option '--out'"),
        (["run", "--out", "x", "--bogus"], "No such option: --bogus"),
        (["rnu"], "No such command 'rnu'"),
        (["data", "synth", "--out", "x", "--seed", "abc"], "Invalid value for '--seed'"),
    ],
)
def test_usage_error_is_usage_plus_one_line(monkeypatch, capsys, tmp_path, args, says):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert "Usage:" in err and says in err and one_error_line(err) and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.cli
def test_usage_errors_without_plain_click(tmp_path):
    """typer vendors its own click; the `click` package is not installed on a base install. Block it."""
    script = ("import sys; sys.modules['click'] = None; from wsss.cli import main; "
              "main(['run', '--out', 'x', '--bogus'])")
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=CLI_ENV, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert "No such option: --bogus" in p.stderr and "Traceback" not in p.stderr and one_error_line(p.stderr)
    p = subprocess.run([sys.executable, "-c", script.replace("['run', '--out', 'x', '--bogus']", "['--version']")],
                       cwd=tmp_path, env=CLI_ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"wsss {wsss.__version__}", p.stderr


@pytest.mark.cli
def test_version(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"wsss {wsss.__version__}"


@pytest.mark.cli
@pytest.mark.parametrize("where", ["first", "after the command", "last"])
def test_debug_anywhere_shows_the_traceback(monkeypatch, capsys, tmp_path, where):
    from wsss.errors import DataError

    args = ["data", "info", str(tmp_path / "nope")]
    args.insert({"first": 0, "after the command": 2, "last": len(args)}[where], "--debug")
    monkeypatch.setattr(sys, "argv", ["wsss", *args])
    with pytest.raises(DataError, match="nope"):
        main()
    # without it: one line, exit 1
    code, _, err = run_cli(monkeypatch, capsys, *[a for a in args if a != "--debug"])
    assert code == 1 and err.startswith("error: ") and err.strip().count("\n") == 0


@pytest.mark.cli
def test_debug_after_a_usage_error_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["wsss", "run", "--out", "x", "--bogus", "--debug"])
    with pytest.raises(Exception, match="--bogus"):
        main()


@pytest.mark.cli
def test_ctrl_c_exits_130_with_one_line(tiny_data, tmp_path):
    """SIGINT while a run trains: exit 130, `interrupted; rerun with --resume to continue`, no traceback."""
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsss", "run", "--data", str(tiny_data), "--out", str(out), "--methods", "cam",
         "--no-seg", "--device", "cpu", "--set", "classifier.epochs=1000"],
        env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a parent that ignores SIGINT (a background job of a script, some CI runners) passes that on, and
        # Python then installs no KeyboardInterrupt handler: give the child the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 120
        while not (out / "config.yaml").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # into the training loop
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; rerun with --resume to continue"
    assert "Traceback" not in err
    assert not list(out.rglob("*.tmp"))


def _bad_files(tmp_path, good: bytes) -> dict:
    """Empty, truncated, garbage: each a file next to ``tmp_path``."""
    files = {"empty": b"", "truncated": good[: len(good) // 2], "garbage": b"not a checkpoint at all"}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.bin"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.cli
@pytest.mark.parametrize("kind", ["classifier", "amn", "segmenter"])
def test_bad_checkpoint_names_the_file(tmp_path, kind):
    import io

    import torch

    from wsss.errors import RunDirError
    from wsss.train.amn import load_amn
    from wsss.train.classifier import load_classifier
    from wsss.train.segmenter import load_segmenter

    load = {"classifier": load_classifier, "amn": load_amn, "segmenter": load_segmenter}[kind]
    buf = io.BytesIO()
    torch.save({"arch": "smallcnn", "num_classes": 3, "rates": [1], "model": {"w": torch.zeros(64)}}, buf)
    for name, path in _bad_files(tmp_path, buf.getvalue()).items():
        with pytest.raises(RunDirError, match=f"{name}.bin: file is empty or corrupt"):
            load(path)
    wrong = tmp_path / "wrong.pt"
    torch.save({"something": torch.zeros(2)}, wrong)
    with pytest.raises(RunDirError, match=r"wrong.pt: file is empty or corrupt \(not a .* checkpoint: no .*'arch'"):
        load(wrong)
    with pytest.raises(RunDirError, match="missing.pt: .*not found"):
        load(tmp_path / "missing.pt")


@pytest.mark.cli
def test_bad_map_file_names_the_file(tmp_path):
    from wsss.errors import DataError
    from wsss.mapsio import load_maps, save_maps

    good = tmp_path / "good.npz"
    save_maps(good, np.random.default_rng(0).random((2, 16, 16)), np.array([1, 2]))
    assert load_maps(good)[0].shape == (2, 16, 16)
    for name, path in _bad_files(tmp_path, good.read_bytes()).items():
        with pytest.raises(DataError, match=f"{name}.bin: file is empty or corrupt"):
            load_maps(path)
    np.savez(tmp_path / "wrong.npz", other=np.zeros(2))
    with pytest.raises(DataError, match="wrong.npz: file is empty or corrupt"):
        load_maps(tmp_path / "wrong.npz")


@pytest.mark.cli
def test_empty_checkpoint_on_the_command_line(monkeypatch, capsys, tmp_path):
    """Today an EOFError became typer's Abort: `aborted`, exit 130. Now one line naming the file, exit 1."""
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    (tmp_path / "segmenter").mkdir()
    (tmp_path / "segmenter" / "cam.pt").write_bytes(b"")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(img), "--run", str(tmp_path))
    assert code == 1, err
    assert err.strip() == f"error: {tmp_path / 'segmenter' / 'cam.pt'}: file is empty or corrupt (0 bytes); " \
                          "rerun `wsss train-seg` to write it again"


@pytest.mark.cli
def test_eof_error_anywhere_is_one_line_exit_1(monkeypatch, capsys, tmp_path):
    import wsss.metrics

    def ended_early(*_a, **_k):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(wsss.metrics, "evaluate_folders", ended_early)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--pred", str(tmp_path), "--gt", str(tmp_path))
    assert code == 1 and "EOFError: Ran out of input" in err and err.strip().count("\n") == 0


@pytest.mark.cli
def test_disk_full_while_saving_a_checkpoint(monkeypatch, tmp_path):
    import torch

    from wsss.errors import RunDirError
    from wsss.train.common import save_checkpoint

    path = tmp_path / "ckpt" / "classifier.pt"
    save_checkpoint(path, arch="old")

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RunDirError, match=r"classifier.pt: no space left on device") as info:
        save_checkpoint(path, arch="new")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["classifier.pt"]  # temp file removed
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["arch"] == "old"  # the previous checkpoint untouched


@pytest.mark.cli
def test_disk_full_while_saving_maps(monkeypatch, tmp_path):
    from wsss.errors import DataError
    from wsss.mapsio import save_maps

    def full_disk(file, **arrays):
        Path(file).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(DataError, match=r"a.npz: no space left on device"):
        save_maps(tmp_path / "a.npz", np.ones((1, 4, 4)), np.array([1]))
    assert list(tmp_path.iterdir()) == []


# ---- help texts and progress bars ----------------------------------------------------------------------------
COMMANDS = [["run"], ["demo"], ["train-cls"], ["maps"], ["pseudo"], ["train-amn"], ["train-seg"], ["predict"],
            ["eval"], ["report"], ["ablate"], ["bench"], ["summarize"], ["methods"], ["data", "synth"],
            ["data", "info"], ["data", "make-tune"], []]


def help_of(monkeypatch, capsys, *cmd) -> str:
    code, out, err = run_cli(monkeypatch, capsys, *cmd, "--help")
    assert code == 0, err
    return out


@pytest.mark.cli
def test_help_texts(monkeypatch, capsys):
    from wsss.run.study import study_groups

    helps = {" ".join(c): help_of(monkeypatch, capsys, *c) for c in COMMANDS}
    for name, text in helps.items():
        assert "<bool>" not in text, name  # flags render as plain flags
        assert "--run-path" not in text or name in ("", "maps"), name  # the torchrun note: once
    assert "--run-path" in helps[""] and "--run-path" in helps["maps"]
    assert "(extra [crf])" in helps["pseudo"]
    run_help = " ".join(helps["run"].split())
    for flag in ("--train-split", "--score-split", "--tune-split", "--val-split"):
        assert re.search(re.escape(flag) + r" <str> \w", run_help), flag  # has a help text
    assert re.search(r"--epochs <int> \w", " ".join(helps["train-cls"].split()))
    ablate_help = " ".join(helps["ablate"].split())
    for group in study_groups():
        assert f"'{group}'" in ablate_help, group
    assert "OUT_data" in helps["demo"] and "--version" in helps[""] and "--debug" in helps[""]


@pytest.mark.cli
def test_progress_bar_only_on_a_terminal(monkeypatch):
    import io

    from wsss.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(range(3)).disable
    assert not progress_bar(range(3), force=True).disable
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not progress_bar(range(3)).disable
    assert progress_bar(range(3), disable=True).disable
    assert progress_bar(range(3), force=False).disable


@pytest.mark.cli
def test_no_progress_bars_in_a_pipe(tmp_path):
    p = subprocess.run([sys.executable, "-m", "wsss", "data", "synth", "--out", str(tmp_path / "d"), "--images", "4",
                        "--size", "32"], env=CLI_ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "synth:" not in p.stderr and "\r" not in p.stderr
