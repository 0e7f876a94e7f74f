"""Bad input around runs (issue 13): resume with another config, kill -9 mid-`maps`, corrupt map files,
two writers at once, full disks, and valid data that used to crash or degrade (background-only and all-void
masks, the training crop, very large images, relative paths)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from wsss.errors import DataError, RunDirError
from wsss.labelio import save_label_png
from wsss.mapsio import load_maps
from wsss.run.pipeline import run_pipeline
from wsss.run.rundir import Run
from wsss.run.stages import maps, score

from .conftest import PLUGIN_DIR, tiny_config
from .test_bad_input import assert_one_error, copy_data, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
CLI_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])}
FAST = {"classifier.epochs": 1, "maps.methods": ["cam"], "train_segmenter": False, "maps.batch_size": 4}


@pytest.fixture(scope="module")
def scored_run(tiny_data, tmp_path_factory):
    """A run with a classifier, cam maps and cam scores (no segmenter): copy it before changing it."""
    run = Run.create(tmp_path_factory.mktemp("hard") / "run", tiny_config(tiny_data, **FAST))
    run_pipeline(run, ["cam"], progress=False)
    return run


def copy_run(run: Run, dst: Path) -> Run:
    shutil.copytree(run.path, dst)
    return Run(dst)


def map_arrays(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {p.stem: load_maps(p) for p in sorted(folder.glob("*.npz"))}


def assert_same_maps(a: Path, b: Path) -> None:
    ma, mb = map_arrays(a), map_arrays(b)
    assert sorted(ma) == sorted(mb)
    for k in ma:
        np.testing.assert_array_equal(ma[k][1], mb[k][1])
        np.testing.assert_array_equal(ma[k][0], mb[k][0])  # bit-identical


SCORE_KEYS = ("sweep", "best", "fixed", "per_class_iou", "ap", "oracle_miou", "robust_width", "ndr_recall")


# ---- 3. kill -9 mid-maps, then resume -------------------------------------------------------------------------
def test_kill_9_mid_maps_then_resume_is_bit_identical(scored_run, tmp_path):
    run = copy_run(scored_run, tmp_path / "run")
    shutil.rmtree(run.maps_dir("cam"))
    shutil.rmtree(run.masks_dir("cam"))
    total = len(run.split_ids(run.scored_splits))
    # slow each save down (the computation is untouched) so that the kill lands between two map files
    script = ("import time, wsss.run.stages.maps as M; save = M.save_maps\n"
              "def slow(*a, **k):\n    save(*a, **k); time.sleep(0.4)\n"
              "M.save_maps = slow\nfrom wsss.cli import main\n"
              f"main(['maps', '--run', {str(run.path)!r}, '--method', 'cam'])")
    proc = subprocess.Popen([sys.executable, "-c", script], env=CLI_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if run.maps_dir("cam").is_dir() and len(list(run.maps_dir("cam").glob("*.npz"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= len(list(run.maps_dir("cam").glob("*.npz"))) < total
    code = subprocess.run([sys.executable, "-m", "wsss", "maps", "--run", str(run.path), "--method", "cam"],
                          env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr
    assert not list(run.maps_dir("cam").glob(".*.tmp*"))  # no temp file left behind
    assert_same_maps(run.maps_dir("cam"), scored_run.maps_dir("cam"))
    p = subprocess.run([sys.executable, "-m", "wsss", "pseudo", "--run", str(run.path), "--method", "cam"],
                       env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got, want = run.results()["methods"]["cam"], scored_run.results()["methods"]["cam"]
    assert {k: got[k] for k in SCORE_KEYS} == {k: want[k] for k in SCORE_KEYS}


# ---- 4. resume: a different config is refused, finished stages are never redone --------------------------------
RUN_ARGS = ("--methods", "cam", "--device", "cpu", "--set", "classifier.epochs=1", "--set", "classifier.batch_size=8",
            "--set", "seg.epochs=1", "--set", "seg.batch_size=8", "--set", "seg.methods=[cam]",
            "--set", "seg.ground_truth=false")


def test_resume_refuses_another_config_and_redoes_nothing(monkeypatch, capsys, tmp_path, tiny_data):
    """Before: `--resume` with new --set options or --no-seg ignored them and retrained finished segmenters."""
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", tiny_data, "--out", out, *RUN_ARGS)
    assert code == 0, err
    assert (out / "segmenter" / "cam.pt").is_file()
    before = snapshot(tmp_path)
    for extra, keys in ((["--set", "classifier.epochs=2"], "classifier.epochs"), (["--no-seg"], "train_segmenter"),
                        (["--set", "pseudo.t_step=0.1", "--seed", "4"], "seed, pseudo.t_step"),
                        (["--methods", "cam,saliency"], "maps.methods")):
        args = [a for a in RUN_ARGS if a not in ("cam",)] if extra[0] == "--methods" else list(RUN_ARGS)
        if extra[0] == "--methods":
            args.remove("--methods")
        code, _, err = run_cli(monkeypatch, capsys, "run", "--data", tiny_data, "--out", out, "--resume", *args, *extra)
        assert_one_error(code, err, out / "config.yaml", "--resume with a different config", keys)
        assert snapshot(tmp_path) == before
    results = json.loads((out / "results.json").read_text())

    def stages():  # what the stages wrote (the report is rewritten on every run)
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".pt", ".npz") or "masks" in p.parts}

    done = stages()
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", tiny_data, "--out", out, "--resume", *RUN_ARGS,
                           "--device", "cpu")
    assert code == 0, err
    assert stages() == done
    after = json.loads((out / "results.json").read_text())
    assert after["methods"] == results["methods"] and after["segmentation"] == results["segmentation"]


def test_relative_data_is_stored_resolved(monkeypatch, tmp_path, tiny_data):
    """Before: a relative --data was stored as given; later stages run from another folder failed."""
    copy_data(tiny_data, tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    run = Run.create("r", tiny_config("d"))
    stored = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["data"]
    assert stored == str((tmp_path / "d").resolve())
    monkeypatch.chdir(REPO)
    assert Run(tmp_path / "r").dataset("train").ids == run.dataset("train").ids


# ---- 4. corrupt map files on resume; two writers at once --------------------------------------------------------
def test_corrupt_map_files_are_named_and_recomputed(scored_run, tmp_path, capsys):
    """Before: a truncated .npz was trusted by `maps` resume and crashed `pseudo` with BadZipFile."""
    run = copy_run(scored_run, tmp_path / "run")
    d = run.maps_dir("cam")
    files = sorted(d.glob("*.npz"))
    files[0].write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 2])  # truncated
    files[1].write_bytes(b"")  # empty
    files[2].write_bytes(b"garbage, not a zip")
    np.savez(files[3], other=np.zeros(2))  # a zip without our arrays
    capsys.readouterr()
    maps.compute(run, "cam", progress=False)
    said = capsys.readouterr().out
    for f in files[:4]:
        assert f"{f}: corrupt map file" in said
    assert_same_maps(d, scored_run.maps_dir("cam"))
    assert maps.missing(run, "cam", run.split_ids(run.scored_splits)) == []


def test_a_second_maps_writer_is_refused(monkeypatch, capsys, scored_run, tmp_path):
    """Before: two `wsss maps` of one method shared <id>.tmp.npz (FileNotFoundError) and double-counted _timing."""
    run = copy_run(scored_run, tmp_path / "run")
    d = run.maps_dir("cam")
    sorted(d.glob("*.npz"))[0].unlink()
    before = snapshot(tmp_path)
    with maps.writing(d):  # another process holds the maps folder
        before = snapshot(tmp_path)
        code, _, err = run_cli(monkeypatch, capsys, "maps", "--run", run.path, "--method", "cam")
    assert_one_error(code, err, d, "another process is writing these maps")
    assert snapshot(tmp_path) == before  # no map written, the timing not counted
    code, _, err = run_cli(monkeypatch, capsys, "maps", "--run", run.path, "--method", "cam")
    assert code == 0, err


def test_map_temp_files_are_unique_per_writer(monkeypatch, tmp_path):
    from wsss.mapsio import save_maps

    names = []
    real = np.savez_compressed

    def record(file, **arrays):
        names.append(Path(file).name)
        real(file, **arrays)

    monkeypatch.setattr(np, "savez_compressed", record)
    for _ in range(2):
        save_maps(tmp_path / "a.npz", np.ones((1, 4, 4)), np.array([1]))
    assert len(set(names)) == 2 and all(n.startswith(".a.") and n.endswith(".tmp.npz") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


# ---- 2. full disk: masks and results.json -----------------------------------------------------------------------
def test_disk_full_while_writing_a_mask(monkeypatch, tmp_path):
    from PIL import Image

    save_label_png(tmp_path / "a.png", np.ones((4, 4), np.uint8))
    old = (tmp_path / "a.png").read_bytes()

    def full_disk(self, fp, *a, **k):
        fp.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(DataError, match=r"a.png: no space left on device") as info:
        save_label_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"] and (tmp_path / "a.png").read_bytes() == old


def test_disk_full_while_writing_results_json(monkeypatch, tmp_path, tiny_data):
    run = Run.create(tmp_path / "run", tiny_config(tiny_data))
    run.update_results("timings", "a", value=1.0)
    old = run.results_path.read_bytes()
    real = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:5])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    with pytest.raises(RunDirError, match=r"results.json: no space left on device") as info:
        run.update_results("timings", "b", value=2.0)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert run.results_path.read_bytes() == old
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


# ---- 4. valid data that used to crash or degrade ----------------------------------------------------------------
def test_background_only_and_all_void_masks_are_scored(scored_run, tmp_path, tiny_data):
    """Before: an image whose mask is only background crashed scoring (`cannot reshape tensor of 0 elements`)."""
    data = copy_data(tiny_data, tmp_path / "data")
    seg = data / "ImageSets" / "Segmentation"
    train, tune = seg.joinpath("train.txt").read_text().split(), seg.joinpath("tune.txt").read_text().split()
    for image_id, fill in ((train[0], 0), (train[1], 255), (tune[0], 0), (tune[1], 255)):
        save_label_png(data / "SegmentationClass" / f"{image_id}.png", np.full((48, 48), fill, np.uint8))
    run = Run.create(tmp_path / "run", tiny_config(data, **FAST))
    shutil.copy(scored_run.classifier_path(), run.classifier_path())  # same classes: no need to train again
    maps.compute(run, "cam", progress=False)
    res = score.pseudo(run, "cam", progress=False)
    assert 0 <= res["fixed"]["miou"] <= 1
    maps_, classes = load_maps(run.maps_dir("cam") / f"{train[0]}.npz")
    assert maps_.shape == (0, 48, 48) and classes.size == 0
    assert (run.masks_dir("cam") / f"{train[0]}.png").is_file()


class _Sized:
    """A dataset of images of the given sides (no files: sizes come from decoding)."""

    def __init__(self, sides):
        self.ids = [f"i{n}" for n in range(len(sides))]
        self.sides = dict(zip(self.ids, sides, strict=True))

    def image(self, image_id):
        return np.zeros((*self.sides[image_id], 3), np.uint8)


@pytest.mark.parametrize("sides, configured, want", [
    ([(1, 1)] + [(48, 64)] * 9, None, 48),  # a 1x1 first image does not set the crop
    ([(6000, 6000)] + [(40, 40)] * 9, None, 40),  # nor does a huge one
    ([(900, 1200)] * 5, None, 512),  # large data: capped
    ([(1, 1)] * 3, 32, 32),  # the config wins
])
def test_training_crop_comes_from_the_config_and_the_typical_size(sides, configured, want):
    from wsss.train.common import train_crop

    assert train_crop(_Sized(sides), configured) == want


def test_training_crop_from_file_headers_after_max_side(tmp_path, tiny_data):
    from wsss.data import open_dataset
    from wsss.train.common import train_crop

    assert train_crop(open_dataset(tiny_data, "train_aug")) == 48
    assert train_crop(open_dataset(tiny_data, "train_aug", max_side=32)) == 32


def test_max_side_in_the_config_downscales_what_the_run_reads(tmp_path, tiny_data):
    run = Run.create(tmp_path / "run", tiny_config(tiny_data, max_side=32))
    ds = run.dataset("train")
    assert ds.image(ds.ids[0]).shape == (32, 32, 3) and ds.mask(ds.ids[0]).shape == (32, 32)


def test_out_of_memory_in_maps_names_the_image_and_its_size(scored_run, tmp_path):
    """Before: a very large image ran out of memory in maps with a generic message."""

    class Hungry:
        def attribute(self, x, y, ids=None):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes")

    run = scored_run
    ids = run.dataset("train").ids[:2]
    with pytest.raises(DataError) as info:
        maps.write_maps(Hungry(), ids, run.lookup(ids), tmp_path / "m", run.device, progress=False)
    msg = str(info.value)
    assert str(run.dataset("train").image_path(ids[0])) in msg and "48x48" in msg and "max_side" in msg
    assert "\n" not in msg and not list((tmp_path / "m").glob("*.npz"))
