"""IRN as a run stage: the config section and presets, the plan with --post, M+irn through the pipeline and
the command line on tiny data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from wsss.cli import main
from wsss.config import IRNConfig, RunConfig, irn_settings
from wsss.errors import ConfigError
from wsss.irn import irn_mask, irn_scores
from wsss.labelio import load_label_png
from wsss.mapsio import load_maps
from wsss.pseudo import maps_to_mask
from wsss.run import plan
from wsss.run.rundir import Run
from wsss.run.stages import irn as irn_stage
from wsss.run.stages import score

from .conftest import run_cli, tiny_config

TINY_IRN = {"irn.epochs": 1, "irn.batch_size": 8, "irn.crf": False, "irn.exp_times": 5}




# ---- config ----------------------------------------------------------------------------------------------
def test_irn_section_presets_and_one_definition():
    from wsss.train import irn as train_irn

    assert train_irn.IRNConfig is IRNConfig  # the train code takes the run config's section
    cfg = RunConfig().irn
    assert (cfg.fg_threshold, cfg.bg_threshold, cfg.power) == (0.30, 0.05, 1.0)
    amn = irn_settings(cfg, "amn")
    assert (amn.fg_threshold, amn.bg_threshold, amn.power) == (0.45, 0.15, 1.3)
    assert irn_settings(cfg, "amn-jigsaw-cam").fg_threshold == 0.45  # every AMN method
    assert irn_settings(cfg, "cam") == cfg and irn_settings(cfg, "jigsaw-cam").fg_threshold == 0.30
    with pytest.raises(ConfigError, match="presets"):
        RunConfig().with_updates(**{"irn.presets": {"cam": {"epochs": 3}}})
    with pytest.raises(ConfigError):
        RunConfig().with_updates(**{"pseudo.post": ["dcrf"]})


def test_paper_config_has_the_irn_stage():
    cfg = RunConfig.load("configs/voc12_resnet50.yaml")
    assert (cfg.irn.radius, cfg.irn.epochs, cfg.irn.batch_size, cfg.irn.crop, cfg.irn.lr) == (10, 3, 32, 512, 0.1)
    assert (cfg.irn.sem_seg_bg, cfg.irn.beta, cfg.irn.exp_times, cfg.irn.walk_radius) == (0.25, 10, 8, 5)
    assert cfg.irn.from_maps == "self" and cfg.irn.crf is True
    jobs = {j.id: j for j in plan.build(cfg, ["cam", "amn"], post=("irn",))}
    assert jobs["irn:cam"].after == ("classifier", "maps:cam") and jobs["irn:amn"].after == ("classifier", "maps:amn")
    assert "train_aug" in jobs["maps:amn"].splits  # IRN from AMN trains on AMN's maps of train_aug


# ---- plan ------------------------------------------------------------------------------------------------
def test_plan_with_post_crf_irn():
    cfg = RunConfig(train_segmenter=False)
    jobs = plan.build(cfg, ["cam", "jigsaw-cam", "amn"], post=("crf", "irn"))
    ids = [j.id for j in jobs]
    by_id = {j.id: j for j in jobs}
    for m in ("cam", "jigsaw-cam", "amn"):
        assert by_id[f"score:{m}+crf"].after == (f"score:{m}",)
        src = "fuse" if m == "jigsaw-cam" else "maps"
        assert by_id[f"irn:{m}"].after == ("classifier", f"{src}:{m}") and by_id[f"irn:{m}"].splits == ("train_aug",)
        assert by_id[f"score:{m}+irn"].after == (f"{src}:{m}", f"irn:{m}")
        assert "train_aug" in by_id[f"{src}:{m}"].splits  # each IRN trains on its own method's train maps
    assert ids.index("irn:amn") > ids.index("maps:amn")
    assert set(by_id["report"].after) >= {"score:cam+irn", "score:amn+crf"}
    plan.check(jobs)
    # the config's pseudo.post is the default; none: no post jobs
    assert not [j for j in plan.build(cfg, ["cam"]) if j.kind == "irn" or "+" in j.target]
    assert "irn:cam" in {j.id for j in plan.build(cfg.with_updates(**{"pseudo.post": ["irn"]}), ["cam"])}
    # one IRN from CAM for every method
    one = plan.build(cfg.with_updates(**{"irn.from_maps": "cam"}), ["cam", "jigsaw-cam"], post=("irn",))
    one_ids = {j.id: j for j in one}
    assert [j.id for j in one if j.kind == "irn"] == ["irn:cam"]
    assert one_ids["score:jigsaw-cam+irn"].after == ("fuse:jigsaw-cam", "irn:cam")
    assert "train_aug" not in one_ids["fuse:jigsaw-cam"].splits
    with pytest.raises(ConfigError, match="--post"):
        plan.build(cfg, ["cam"], post=("bogus",))


def test_plan_segmenter_on_irn_masks():
    cfg = RunConfig(seg={"methods": ["cam+irn"], "ground_truth": False})
    jobs = {j.id: j for j in plan.build(cfg, ["cam"], post=("irn",))}
    assert jobs["seg:cam+irn"].after == ("score:cam+irn",)
    assert "seg:cam+irn" not in {j.id for j in plan.build(cfg, ["cam"])}  # without --post irn: not scored


# ---- scores of the walk ----------------------------------------------------------------------------------
def test_irn_scores_threshold_to_irn_mask():
    rng = np.random.default_rng(2)
    h, w = 29, 35
    maps = rng.random((2, h, w)).astype(np.float32) ** 2
    bd = torch.from_numpy(rng.random((8, 9)).astype(np.float32) ** 4)
    for power, max_bytes in ((1.0, None), (1.3, 20_000)):
        cfg = IRNConfig(exp_times=3, power=power, max_bytes=max_bytes)
        scores = irn_scores(maps, np.array([2, 5]), bd, (h, w), cfg)
        assert scores.shape == (2, h, w) and scores.dtype == np.float32 and scores.max() == pytest.approx(1.0)
        for t in (0.1, 0.25, 0.5):
            assert np.array_equal(maps_to_mask(scores, np.array([2, 5]), t),
                                  irn_mask(maps, np.array([2, 5]), bd, (h, w), cfg, threshold=t))
    with pytest.raises(ValueError, match="threshold"):
        irn_mask(maps, np.array([2, 5]), bd, (h, w), IRNConfig())


# ---- the stage through the pipeline and the command line -------------------------------------------------
@pytest.fixture(scope="module")
def irn_run(tiny_data, tmp_path_factory):
    """`wsss run --post crf,irn` on tiny data (CAM and jigsaw-cam; CRF only where the extra is installed)."""
    from wsss.crf import crf_available

    out = tmp_path_factory.mktemp("irn_runs") / "r"
    post = "crf,irn" if crf_available() else "irn"
    mp = pytest.MonkeyPatch()
    sets = [f"--set={k}={v}" for k, v in {**TINY_IRN, "classifier.epochs": 2, "classifier.batch_size": 8}.items()]
    mp.setattr(sys, "argv", ["wsss", "run", "--data", str(tiny_data), "--out", str(out), "--device", "cpu",
                             "--no-seg", "--methods", "cam,jigsaw-cam", "--post", post, *sets])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        mp.undo()
    return Run(out), post


def test_run_post_scores_every_method_plus_irn(irn_run):
    run, post = irn_run
    res = run.results()
    assert run.cfg.pseudo.post == tuple(post.split(","))
    for m in ("cam", "jigsaw-cam"):
        r = res["methods"][f"{m}+irn"]
        assert r["split"] == "train" and r["fixed"]["chosen_on"] == "tune" and r["normalization"] == "none"
        assert len(r["sweep"]) == 96 and 0 <= r["fixed"]["miou"] <= 1
        assert r["irn_from"] == m and r["walk_seconds_per_image"] > 0 and r["training_seconds_per_image"] > 0
        assert r["seconds_per_image"] == pytest.approx(res["methods"][m]["seconds_per_image"]
                                                       + r["walk_seconds_per_image"])
        assert (run.path / f"irn-{m}.pt").is_file()
        assert res["irn"][m]["labels_from"] == m and res["irn"][m]["seconds"] > 0
        assert f"train-irn/{m}" in res["timings"] and f"pseudo/{m}+irn" in res["timings"]
        if "crf" in post:
            assert res["methods"][f"{m}+crf"]["fixed"]["t"] == res["methods"][m]["fixed"]["t"]
        for image_id in run.dataset("train").ids:
            mask = load_label_png(run.masks_dir(f"{m}+irn") / f"{image_id}.png")
            scores, classes = load_maps(run.maps_dir(f"{m}+irn") / f"{image_id}.npz")
            t = r["fixed"]["t"]
            assert np.array_equal(mask, maps_to_mask(scores, classes, t))  # the masks are the stored scores at t
            assert set(np.unique(mask)) <= {0, *classes.tolist()}
    assert (run.path / "report.md").exists()


def test_train_irn_and_pseudo_irn_on_the_command_line(irn_run, monkeypatch, capsys):
    run, _ = irn_run
    before = run.results()["methods"]["cam+irn"]
    (run.path / "irn-cam.pt").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "train-irn", "--run", str(run.path), "--from-maps", "cam")
    assert code == 0 and "irn-cam.pt" in out, err
    for p in run.maps_dir("cam+irn").glob("*"):
        p.unlink()
    code, out, err = run_cli(monkeypatch, capsys, "pseudo", "--run", str(run.path), "--method", "cam", "--irn")
    assert code == 0, err
    after = run.results()["methods"]["cam+irn"]
    assert after["fixed"] == before["fixed"]  # retrained with the same seed: the same masks
    code, _, err = run_cli(monkeypatch, capsys, "pseudo", "--run", str(run.path), "--method", "cam", "--irn", "--crf")
    assert code == 2 and "--irn" in err
    code, _, err = run_cli(monkeypatch, capsys, "train-irn", "--run", str(run.path), "--from-maps", "bogus")
    assert code == 1 and "bogus" in err and err.strip().count("\n") == 0


def test_pseudo_irn_without_a_trained_irn_names_the_command(irn_run, tmp_path):
    run, _ = irn_run
    with pytest.raises(Exception, match="wsss train-irn"):
        score.pseudo(run, "gradcam+irn", progress=False)


def test_one_irn_for_every_method(irn_run):
    run, _ = irn_run
    run.cfg = run.cfg.with_updates(**{"irn.from_maps": "cam"})
    assert irn_stage.source(run, "jigsaw-cam+irn") == "cam"
    rec = score.pseudo(run, "jigsaw-cam", irn=True, progress=False)  # the walk of jigsaw-cam's own IRN is redone
    assert rec["irn_from"] == "cam"
    timing = json.loads(next(run.maps_dir("jigsaw-cam+irn").glob("_timing.rank*.json")).read_text())
    assert timing["irn"] == "cam"


def test_run_post_unknown_step_is_a_usage_error(monkeypatch, capsys, tiny_data, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", str(tiny_data), "--out", str(tmp_path / "x"),
                           "--post", "crf,dcrf")
    assert code == 2 and "dcrf" in err


def test_tiny_config_with_irn_post(tiny_data):
    cfg = tiny_config(tiny_data, **TINY_IRN, **{"pseudo.post": ["irn"]})
    assert cfg.irn.epochs == 1 and cfg.pseudo.post == ("irn",)
