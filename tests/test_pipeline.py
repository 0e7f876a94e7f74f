"""The pipeline end to end on tiny data, resume, the plan, and the run-directory contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsss.errors import RunDirError
from wsss.labelio import load_label_png
from wsss.mapsio import load_maps
from wsss.run.pipeline import run_pipeline
from wsss.run.rundir import Run
from wsss.run.stages import maps, score

from .conftest import run_cli, tiny_config

METHODS = ["cam", "gradcam", "saliency", "jigsaw", "jigsaw-cam", "amn"]


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r1"
    cfg = tiny_config(tiny_data, **{"maps.methods": METHODS, "seg.methods": ["cam"]})
    run = Run.create(out, cfg)
    run_pipeline(run, METHODS, progress=False)
    return run


def test_pipeline_writes_every_artefact(finished_run):
    run = finished_run
    res = json.loads((run.path / "results.json").read_text())
    assert set(METHODS) <= set(res["methods"])
    score_ids = run.dataset("train").ids
    for m in METHODS:
        r = res["methods"][m]
        assert r["split"] == "train"
        assert r["fixed"]["chosen_on"] == "tune"
        assert 0.0 <= r["fixed"]["miou"] <= r["best"]["miou"] + 1e-9 <= 1.0 + 1e-9
        assert len(r["sweep"]) == 96 and r["sweep"][0]["t"] == 0.0 and r["sweep"][-1]["t"] == 0.95
        assert r["seconds_per_image"] > 0
        assert r["robust_width"] >= 0.01
        for image_id in score_ids:
            mask = load_label_png(run.masks_dir(m) / f"{image_id}.png")
            assert mask.shape == (48, 48) and mask.max() <= 3
            maps, classes = load_maps(run.maps_dir(m) / f"{image_id}.npz")
            assert maps.shape[1:] == (48, 48) and maps.min() >= 0
            np.testing.assert_array_equal(classes, np.nonzero(run.dataset("train").labels(image_id))[0] + 1)
    assert res["methods"]["cam"]["ndr_recall"] is not None
    assert set(res["segmentation"]) == {"cam", "gt"}
    assert 0 <= res["segmentation"]["gt"]["val_miou"] <= 1
    assert res["classifiers"]["plain"]["val_map"] is not None
    assert (run.path / "report.md").exists() and (run.path / "config.yaml").exists()


def test_jigsaw_cam_fused_from_stored_maps_equals_computing_it(finished_run, tmp_path):
    """The run fuses jigsaw-cam from the stored cam and jigsaw maps (its spec's inputs); the in-memory fusion
    (``wsss.localize.create("jigsaw-cam", ...)``) with the run's jigsaw options gives the same maps."""
    from wsss import localize
    from wsss.run.stages import classifier

    run = finished_run
    timing = json.loads((run.maps_dir("jigsaw-cam") / "_timing.rank0.json").read_text())
    assert timing["fused_from"] == ["cam", "jigsaw"]
    ids = sorted(p.stem for p in run.maps_dir("jigsaw-cam").glob("*.npz"))
    loc = localize.create("jigsaw-cam", classifier.load(run), **maps.method_options(run, "jigsaw"))
    maps.write_maps(loc, ids, run.lookup(ids), tmp_path / "direct", run.device, progress=False)
    assert ids == sorted(p.stem for p in (tmp_path / "direct").glob("*.npz"))
    for image_id in ids:
        a, ca = load_maps(tmp_path / "direct" / f"{image_id}.npz")
        b, cb = load_maps(run.maps_dir("jigsaw-cam") / f"{image_id}.npz")
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_allclose(a, b, atol=2e-3)  # both in [0, 1]; float16 storage of the inputs


def test_maps_resume_skips_finished_images(finished_run):
    run = finished_run
    d = run.maps_dir("saliency")
    victim = sorted(d.glob("*.npz"))[0]
    before = {p.name: p.stat().st_mtime_ns for p in d.glob("*.npz") if p != victim}
    victim.unlink()
    maps.compute(run, "saliency", progress=False)
    assert victim.exists()
    after = {p.name: p.stat().st_mtime_ns for p in d.glob("*.npz") if p != victim}
    assert before == after  # nothing already written was touched


def test_rescoring_is_deterministic(finished_run):
    run = finished_run
    first = run.results()["methods"]["jigsaw"]
    second = score.pseudo(run, "jigsaw", progress=False)
    assert first["fixed"] == second["fixed"] and first["sweep"] == second["sweep"]


def test_existing_run_dir_is_refused_without_force(finished_run):
    with pytest.raises(RunDirError, match="--resume"):
        Run.create(finished_run.path, finished_run.cfg)
    assert (finished_run.path / "results.json").exists()


def test_pseudo_with_crf_writes_its_own_key(finished_run):
    pytest.importorskip("pydensecrf.densecrf", reason="dense CRF needs the [crf] extra")
    res = score.pseudo(finished_run, "cam", crf=True, progress=False)
    results = finished_run.results()["methods"]
    assert "cam+crf" in results and results["cam"]["fixed"] != {}
    assert res["seconds_per_image"] > results["cam"]["seconds_per_image"]  # the CRF time is added
    assert len(list(finished_run.masks_dir("cam+crf").glob("*.png"))) == len(finished_run.dataset("train").ids)
    assert res["fixed"]["t"] == results["cam"]["fixed"]["t"] and len(res["sweep"]) == 1  # at CAM's tune-chosen t
    swept = score.pseudo(finished_run, "cam", crf=True, crf_sweep=True, progress=False)  # t chosen with the CRF
    assert [r["t"] for r in swept["sweep"]] == [round(0.05 * i, 2) for i in range(20)]
    assert swept["fixed"]["chosen_on"] == "tune" and swept["tune"]["best"]["t"] == swept["fixed"]["t"]


def test_summarize_runs_mean_and_sd(finished_run):
    from wsss.report.summary import summarize_runs

    table = summarize_runs([finished_run, finished_run])
    cam = table["methods"]["cam"]["miou"]
    assert cam["n"] == 2 and cam["sd"] == 0.0
    assert cam["mean"] == finished_run.results()["methods"]["cam"]["fixed"]["miou"]
    assert table["segmentation"]["gt"]["n"] == 2


def test_results_updates_from_concurrent_processes_are_all_kept(tiny_data, tmp_path):
    """Two commands on one run directory at once (e.g. two `wsss maps` on two GPUs) must not lose updates."""
    import multiprocessing as mp

    run = Run.create(tmp_path / "r", tiny_config(tiny_data))
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(str(run.path), f"w{i}", start)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    got = run.results()["concurrency"]
    assert {k for k in got} == {f"w{i}-{j}" for i in range(2) for j in range(100)}


def _write_many(path: str, tag: str, start) -> None:
    r = Run(path)
    start.wait()
    for j in range(100):
        r.update_results("concurrency", f"{tag}-{j}", value=j)


def test_training_split_with_image_level_labels_only(tiny_data, tmp_path, monkeypatch, capsys):
    """The core WSSS case: train_aug images outside the scored/tuned splits have no mask, only a labels file
    (`wsss run --labels FILE`); the whole pipeline runs, and no segmenter is trained on true masks."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    split = data / "ImageSets" / "Segmentation"
    read = lambda name: (split / f"{name}.txt").read_text().split()  # noqa: E731
    keep = set(read("train")) | set(read("tune"))
    classes = (data / "classes.txt").read_text().split()[1:]
    labels = {}
    for image_id in read("train_aug"):
        mask = load_label_png(data / "SegmentationClass" / f"{image_id}.png")
        labels[image_id] = [classes[c - 1] for c in np.unique(mask) if 0 < c < 255]
        if image_id not in keep:
            (data / "SegmentationClass" / f"{image_id}.png").unlink()
    assert len(labels) > len(keep)  # some training images really have no mask
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", data, "--out", out, "--labels",
                           tmp_path / "labels.json", "--methods", "cam,amn", "--device", "cpu", "--set",
                           "classifier.epochs=1", "--set", "amn.epochs=1", "--set", "seg.epochs=1", "--set",
                           "seg.methods=[amn]")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert {"cam", "amn"} <= set(res["methods"]) and set(res["segmentation"]) == {"amn"}
    assert len(list((out / "maps" / "cam").glob("*.npz"))) == len(labels)  # maps of every training image
