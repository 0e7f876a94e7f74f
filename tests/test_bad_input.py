"""Bad input, tried as an attacker and as a careless user would (issue 13): paths that lead outside, folders
`--force` must not delete, inputs checked before anything is written, and every message one line naming the
file. Each CLI case asserts the exit code, one ``error:`` line naming the file, no traceback, and that nothing
outside the dataset root / run directory was touched (byte-identical snapshots).

Runs, resume, kill -9, concurrency and the scoring of valid-but-odd data: tests/test_bad_input_runs.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from wsss.labelio import save_label_png
from wsss.run.rundir import MARKER, Run

from .conftest import run_cli, tiny_config

# ---- helpers ---------------------------------------------------------------------------------------------------


def assert_one_error(code: int, err: str, *names, exit_code: int = 1) -> str:
    """Exit ``exit_code``, exactly one ``error: ...`` line that names each of ``names``, no traceback."""
    assert code == exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def snapshot(*folders: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folders``: equal snapshots = nothing written or deleted."""
    out: dict[str, bytes | None] = {}
    for folder in folders:
        if folder.exists():
            out[str(folder)] = None
            for p in sorted(folder.rglob("*")):
                out[str(p)] = p.read_bytes() if p.is_file() else None
    return out


def copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def marked_run(path: Path, data: Path) -> Path:
    """A run directory as `wsss run` leaves it (config.yaml + the marker), plus a result file."""
    Run.create(path, tiny_config(data))
    (path / "results.json").write_text('{"methods": {}}\n')
    return path


RUN_FAST = ("--methods", "cam", "--no-seg", "--device", "cpu")


# ---- 1. security: nothing read or written outside the dataset root and the run directory ----------------------
@pytest.mark.parametrize("attack", ["absolute", "dotdot"])
def test_split_id_that_is_a_path_fails_at_the_split_file(monkeypatch, capsys, tmp_path, tiny_data, attack):
    """Before: an id /x/outside/s made `wsss run` overwrite the outside s.png with a pseudo-mask; ../ ids wrote
    maps and masks outside the run. Now: one line naming the split file and line, nothing anywhere written."""
    data = copy_data(tiny_data, tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.full((48, 48, 3), 7, np.uint8)).save(outside / "s.jpg")
    save_label_png(outside / "s.png", np.ones((48, 48), np.uint8))
    split = data / "ImageSets" / "Segmentation" / "train.txt"
    ids = split.read_text().split()
    bad = str(outside / "s") if attack == "absolute" else "../../outside/s"
    split.write_text("\n".join([ids[0], bad, *ids[1:]]) + "\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", data, "--out", tmp_path / "run", *RUN_FAST)
    assert_one_error(code, err, split, "line 2")
    assert snapshot(tmp_path) == before  # the outside files byte-identical, no run directory created


@pytest.mark.parametrize("masks", ["../classifier", "../../outside/x", "/etc/passwd", "..", ".hidden"])
def test_predict_masks_is_a_name_not_a_path(monkeypatch, capsys, tmp_path, masks):
    """Before: `predict --masks ../classifier` loaded RUN/classifier.pt as a segmenter."""
    run_dir = tmp_path / "run"
    (run_dir / "segmenter").mkdir(parents=True)
    (run_dir / "classifier.pt").write_bytes(b"not a segmenter")
    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "predict", img, "--run", run_dir, "--masks", masks)
    assert_one_error(code, err, "--masks", repr(masks), "not a path")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args, says",
    [
        (["maps", "--method", "cam", "--classifier", "../../x"], "'cam@../../x'"),
        (["train-cls", "--name", "../evil"], "classifier name '../evil'"),
        (["pseudo", "--method", "cam@../../x"], "maps key 'cam@../../x'"),
        (["train-amn", "--from-maps", "../x"], "--from-maps ../x"),
    ],
)
def test_names_on_the_command_line_stay_inside_the_run(monkeypatch, capsys, tmp_path, tiny_data, args, says):
    run_dir = marked_run(tmp_path / "run", tiny_data)
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--run", run_dir)
    assert_one_error(code, err, says)
    assert snapshot(tmp_path) == before


def test_run_paths_refuse_names_that_leave_the_run(tmp_path, tiny_data):
    from wsss.errors import ConfigError

    run = Run.create(tmp_path / "run", tiny_config(tiny_data))
    for where in (run.maps_dir, run.masks_dir, run.segmenter_path, run.amn_path, run.classifier_path):
        for name in ("../x", "/abs", "a\\b", ".x", "a\x00b"):
            with pytest.raises(ConfigError, match="a name, not a path"):
                where(name)
    assert run.maps_dir("jigsaw grids=(8,)") == run.path / "maps" / "jigsaw grids=(8,)"  # spaces are fine


def test_pickled_labels_file_through_open_dataset_never_runs(tmp_path, tiny_data):
    """The labels file is read without pickle (a crafted .npy would run code); a wrong format is one line."""
    import pickle

    from wsss.data import open_dataset
    from wsss.errors import DataError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "labels.npy"
    with open(bad, "wb") as fh:
        np.save(fh, np.array([Payload()], dtype=object), allow_pickle=True)
    assert pickle.dumps  # the payload is a real pickle
    with pytest.raises(DataError) as info:
        open_dataset(tiny_data, "train", labels=bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    for name, text in (("labels.txt", "a b c"), ("labels.json", "[1, 2]"), ("labels.csv", "no,header\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as info:
            open_dataset(tiny_data, "train", labels=tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


# ---- 2. data loss: --force and synth never delete what the tool did not write -----------------------------------
@pytest.mark.parametrize("case", ["thesis folder", "the dataset", "holds the dataset", "current folder",
                                  "config.yaml but no marker"])
def test_force_refuses_what_is_not_a_run(monkeypatch, capsys, tmp_path, tiny_data, case):
    """Before: `wsss run --out DIR --force` deleted DIR whatever it held (even with a --data that did not exist)."""
    data = copy_data(tiny_data, tmp_path / "data")
    out, says = tmp_path / "out", "not a wsss run directory"
    if case == "thesis folder":
        (out / "figures").mkdir(parents=True)
        (out / "thesis.tex").write_text("\\chapter{Results}")
        (out / "figures" / "a.png").write_bytes(b"\x89PNG")
    elif case == "the dataset":
        out, says = data, "is or contains the dataset"
    elif case == "holds the dataset":  # a marked run with the dataset inside it
        marked_run(out, data)
        data = copy_data(tiny_data, out / "data")
        says = "is or contains the dataset"
    elif case == "current folder":
        marked_run(out, data)
        monkeypatch.chdir(out)
        out, says = Path("."), "current folder"
    else:
        out.mkdir()
        (out / "config.yaml").write_text("data: x\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", data, "--out", out, "--force", *RUN_FAST)
    assert_one_error(code, err, out, "--force refused", says)
    assert snapshot(tmp_path) == before


def test_force_replaces_a_run_and_only_a_run(tmp_path, tiny_data):
    out = marked_run(tmp_path / "run", tiny_data)
    (out / "maps").mkdir()
    (out / "maps" / "stale.npz").write_bytes(b"old")
    run = Run.create(out, tiny_config(tiny_data, seed=3), force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "config.yaml"])
    assert run.cfg.seed == 3


CHECKED_FIRST = {  # case: (options replaced (None: dropped), options added, what the error names)
    "unknown method": ({"--methods": "cam,nosuch"}, [], "nosuch"),
    "bad split": ({}, ["--train-split", "nosuch"], "nosuch"),
    "batch_size=0": ({}, ["--set", "classifier.batch_size=0"], "classifier.batch_size"),
    "t_step=0": ({}, ["--set", "pseudo.t_step=0"], "pseudo.t_step"),
    "t_start > t_stop": ({}, ["--set", "pseudo.t_start=0.9", "--set", "pseudo.t_stop=0.5"], "pseudo.t_start"),
    "epochs=0": ({}, ["--set", "seg.epochs=0"], "seg.epochs"),
    "no --data": ({"--data": None}, [], "--data"),
    "missing --data": ({"--data": "{tmp}/nope"}, [], "nope"),
    "--data is a file": ({"--data": "{tmp}/file"}, [], "not a folder"),
    "--device cuda without CUDA": ({"--device": "cuda"}, [], "--device cuda"),
    "--device gpu": ({"--device": "gpu"}, [], "device"),
}


@pytest.mark.parametrize("force", [False, True], ids=["new", "--force on a run"])
@pytest.mark.parametrize("case", list(CHECKED_FIRST))
def test_every_input_checked_before_anything_is_written(monkeypatch, capsys, tmp_path, tiny_data, case, force):
    """Before: a validation error after the run directory was made left a config.yaml and the rerun was refused;
    with --force the old run was already deleted."""
    if case.startswith("--device cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    replaced, added, says = CHECKED_FIRST[case]
    (tmp_path / "file").write_text("x")
    opts = {"--data": str(tiny_data), "--methods": "cam", "--device": "cpu"}
    opts.update({k: v if v is None else v.format(tmp=tmp_path) for k, v in replaced.items()})
    argv = [a for k, v in opts.items() if v is not None for a in (k, v)] + added
    out = marked_run(tmp_path / "run", tiny_data) if force else tmp_path / "run"
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", out, "--no-seg", *argv, *(["--force"] if force else []))
    assert_one_error(code, err, says)
    assert snapshot(tmp_path) == before  # nothing created, nothing deleted: the rerun starts clean


def test_config_file_with_bad_values_names_the_file(monkeypatch, capsys, tmp_path, tiny_data):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tiny_data), "pseudo": {"t_step": 0}}))
    code, _, err = run_cli(monkeypatch, capsys, "run", "--config", cfg, "--out", tmp_path / "run")
    assert_one_error(code, err, cfg, "pseudo.t_step")
    assert not (tmp_path / "run").exists()


def test_demo_force_refuses_what_is_not_a_run(monkeypatch, capsys, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "demo", "--out", thesis, "--force", "--quick")
    assert_one_error(code, err, thesis, "not a wsss run directory")
    assert snapshot(tmp_path) == before  # and no thesis_data written


def test_demo_refuses_a_user_folder_where_its_data_goes(monkeypatch, capsys, tmp_path):
    mine = tmp_path / "demo_data"
    mine.mkdir()
    (mine / "train.txt").write_text("my ids\n")
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        code, _, err = run_cli(monkeypatch, capsys, "demo", "--out", tmp_path / "demo", "--quick", *force)
        assert_one_error(code, err, mine, "not written by `wsss data synth`")
        assert snapshot(tmp_path) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_demo_checks_the_device_before_writing(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "demo", "--out", tmp_path / "demo", "--device", "cuda", "--quick")
    assert_one_error(code, err, "--device cuda")
    assert list(tmp_path.iterdir()) == []


SYNTH = ("--images", "4", "--size", "32", "--classes", "2")


def test_synth_refuses_a_folder_it_did_not_write(monkeypatch, capsys, tmp_path):
    """Before: `wsss data synth --out <dataset>` overwrote the user's train.txt and classes.txt."""
    mine = tmp_path / "mydata"
    (mine / "ImageSets" / "Segmentation").mkdir(parents=True)
    (mine / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (mine / "classes.txt").write_text("background\ncat\n")
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", mine, *SYNTH, *force)
        assert_one_error(code, err, mine, "not written by `wsss data synth`")
        assert snapshot(tmp_path) == before


def test_synth_with_other_settings_refuses_then_force_replaces_consistently(monkeypatch, capsys, tmp_path):
    """Before: a rerun with another --seed/--size kept the old images while synth.json claimed the new values."""
    from wsss.data.synth import MANIFEST, dataset_hash

    out = tmp_path / "synth"
    assert run_cli(monkeypatch, capsys, "data", "synth", "--out", out, *SYNTH)[0] == 0
    (out / "notes.txt").write_text("mine")  # a file synth did not write
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", out, *SYNTH, "--seed", "1", "--size", "40")
    assert_one_error(code, err, out, "seed", "size", "--force")
    assert snapshot(tmp_path) == before
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", out, *SYNTH, "--seed", "1", "--size", "40",
                           "--force")
    assert code == 0, err
    fresh = tmp_path / "fresh"
    assert run_cli(monkeypatch, capsys, "data", "synth", "--out", fresh, *SYNTH, "--seed", "1", "--size", "40")[0] == 0
    assert dataset_hash(out) == dataset_hash(fresh)
    assert json.loads((out / "synth.json").read_text()) == json.loads((fresh / "synth.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file()} | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "mine" and (out / MANIFEST).is_file()
    for p in out.rglob("*.jpg"):
        assert Image.open(p).size == (40, 40)
    # the same settings again: resumed, nothing rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert run_cli(monkeypatch, capsys, "data", "synth", "--out", out, *SYNTH, "--seed", "1", "--size", "40")[0] == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}


@pytest.mark.parametrize("args, says", [
    (["--images", "0"], "--images 0"), (["--images", "-5"], "--images -5"), (["--size", "1"], "--size 1"),
    (["--classes", "0"], "--classes 0"), (["--classes", "99"], "--classes 99"),
    (["--part-frac", "0"], "--part-frac 0"), (["--max-objects", "0"], "--max-objects 0"),
])
def test_synth_knobs_out_of_range(monkeypatch, capsys, tmp_path, args, says):
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", tmp_path / "s", *args)
    assert_one_error(code, err, says, "must be")
    assert not (tmp_path / "s").exists()


# ---- 5. messages: one line naming the file, exit 1 -------------------------------------------------------------
@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'{"methods": {"cam": 3}}'],
                         ids=["garbage", "empty", "a list", "wrong schema"])
@pytest.mark.parametrize("command", ["report", "summarize"])
def test_corrupt_results_json_names_the_file(monkeypatch, capsys, tmp_path, tiny_data, content, command):
    run_dir = marked_run(tmp_path / "run", tiny_data)
    (run_dir / "results.json").write_bytes(content)
    before = snapshot(tmp_path)
    args = ["report", "--run", run_dir] if command == "report" else ["summarize", run_dir]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_one_error(code, err, run_dir / "results.json", "corrupt results file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["--out is a file", "its parent is a file"])
def test_run_out_that_is_a_file(monkeypatch, capsys, tmp_path, tiny_data, where):
    f = tmp_path / "notes.txt"
    f.write_text("precious")
    out = f if where == "--out is a file" else f / "run"
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        code, _, err = run_cli(monkeypatch, capsys, "run", "--data", tiny_data, "--out", out, *RUN_FAST, *force)
        assert_one_error(code, err, f, "is a file")
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["--out is a file", "its parent is a file"])
def test_predict_out_that_is_a_file(monkeypatch, capsys, tmp_path, where):
    run_dir = tmp_path / "run"
    (run_dir / "segmenter").mkdir(parents=True)
    (run_dir / "segmenter" / "cam.pt").write_bytes(b"whatever")
    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    f = tmp_path / "masks.txt"
    f.write_text("precious")
    before = snapshot(tmp_path)
    out = f if where == "--out is a file" else f / "sub"
    code, _, err = run_cli(monkeypatch, capsys, "predict", img, "--run", run_dir, "--out", out)
    assert_one_error(code, err, f, "is a file")
    assert snapshot(tmp_path) == before


def _label_folders(tmp_path: Path, gt: np.ndarray, pred: np.ndarray) -> tuple[Path, Path]:
    g, p = tmp_path / "gt", tmp_path / "pred"
    g.mkdir()
    p.mkdir()
    save_label_png(g / "a.png", gt)
    save_label_png(p / "a.png", pred)
    return g, p


@pytest.mark.parametrize("as_json", [False, True])
def test_eval_on_all_void_ground_truth(monkeypatch, capsys, tmp_path, as_json):
    """Before: printed NaN (not valid JSON). Now: one line naming the ground-truth folder, exit 1."""
    gt, pred = _label_folders(tmp_path, np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8))
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--pred", pred, "--gt", gt, *(["--json"] if as_json else []))
    assert_one_error(code, err, gt, "void")
    assert "NaN" not in out


def test_eval_json_is_strict_json(monkeypatch, capsys, tmp_path):
    gt, pred = _label_folders(tmp_path, np.array([[0, 0], [255, 2]], np.uint8), np.array([[0, 0], [0, 2]], np.uint8))
    code, out, _ = run_cli(monkeypatch, capsys, "eval", "--pred", pred, "--gt", gt, "--json", "--num-classes", "3")
    assert code == 0
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert res["per_class_iou"]["1"] is None and res["miou"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", ["0", "300", "-1"])
def test_eval_num_classes_out_of_range(monkeypatch, capsys, tmp_path, k):
    gt, pred = _label_folders(tmp_path, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--pred", pred, "--gt", gt, "--num-classes", k)
    assert_one_error(code, err, f"--num-classes {k}", "1..255")
