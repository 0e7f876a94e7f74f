"""`wsss ablate` on tiny data: variants scored, tables written, receptive field measured."""

from __future__ import annotations

from wsss.models import create
from wsss.report import write_report
from wsss.report.summary import summarize_runs
from wsss.run.pipeline import run_pipeline
from wsss.run.rundir import Run
from wsss.run.study import (
    Variant,
    amn_grid,
    effective_receptive_field,
    fusion_grid,
    normalization_grid,
    region_grid,
    run_ablation,
    same_as_run_method,
    study_groups,
)

from .conftest import tiny_config


def test_receptive_field_grows_with_depth():
    small = effective_receptive_field(create("smallcnn", 3), size=128)
    deep = effective_receptive_field(create("smallcnn_deep", 3), size=128)
    assert 0 < small["effective_radius95_px"] <= small["theoretical_radius_px"]
    assert deep["theoretical_radius_px"] > small["theoretical_radius_px"]


def test_ablation_group_scores_every_variant(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, train_segmenter=False, **{"maps.methods": ["cam"]}))
    run_pipeline(run, ["cam"], progress=False)
    group = "randomized weights (sanity)"
    abl = run_ablation(run, groups=[group], samples=2, progress=False)
    names = [v.name for v in study_groups(2)[group]]
    assert set(names) <= set(abl["variants"])
    (table,) = [t for t in abl["tables"] if t["title"] == group]
    assert table["entries"] == names and table["kind"] == "variants"
    for name in names:
        v = abl["variants"][name]
        assert 0 <= v["miou"] <= 1 and v["tune_miou"] is not None
    assert abl["receptive_field"]["stride"] == 8
    text = write_report(run).read_text()
    assert "receptive field" in text and (run.path / "figures" / "cost_quality_study.png").exists()


def test_region_grid_is_chosen_on_tune(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, train_segmenter=False))
    run_pipeline(run, ["cam", "saliency"], progress=False)
    chosen = region_grid(run, fillers=("saliency",), thresholds=(0.5, 0.7), dilations=(2, 4), progress=False)
    grid = run.results()["ablation"]["region_grid"]
    assert len(grid) == 4
    name, best = chosen["saliency"]
    assert best["tune_miou"] == max(v["tune_miou"] for v in grid.values())
    fused = fusion_grid(run, fillers=("saliency",), modes=("geo", "max"), progress=False)
    assert set(fused) == {"geo(saliency)", "max(saliency)"}
    # a study variant's stored maps can be the filler too
    run_ablation(run, groups=["randomized weights (sanity)"], samples=2, progress=False)
    fused = fusion_grid(run, fillers=("saliency@random",), modes=("geo",), progress=False)
    assert "geo(saliency@random)" in fused
    fused = fusion_grid(run, fillers=("saliency@random",), modes=("geo",), base="cam@random", progress=False)
    assert fused["geo[cam@random](saliency@random)"]["base"] == "cam@random"
    study = summarize_runs([run, run])["study"]
    assert study["region(saliency)"]["miou"]["mean"] == best["miou"] and study["region(saliency)"]["miou"]["n"] == 2
    assert study["fusion geo(CAM, saliency)"]["miou"]["mean"] == run.results()["ablation"]["fusion_grid"]["geo(saliency)"]["miou"]
    assert "variant saliency@random" in study
    assert all(0 <= v["miou"] <= 1 for v in fused.values())


def test_amn_on_other_maps_and_amn_grid(tiny_data, tmp_path):
    """``amn-<maps>`` is AMN trained on that method's maps (own checkpoint and results); the AMN study
    trains one AMN per setting and scores each like a method."""
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, train_segmenter=False))
    run_pipeline(run, ["cam", "saliency", "amn-saliency", "amn-cam"], progress=False)
    res = run.results()
    assert (run.path / "amn-saliency.pt").exists() and not (run.path / "amn.pt").exists()
    assert (run.path / "amn-cam.pt").exists() and "amn-cam" in res["methods"]  # explicit name for the default maps
    assert res["amn_variants"]["amn-saliency"]["labels_from"] == "saliency"
    assert 0 <= res["methods"]["amn-saliency"]["fixed"]["miou"] <= 1
    grid = amn_grid(run, crf=(False,), lr_mults=(1.0, 10.0), progress=False)
    assert list(grid) == ["amn<cam> crf=off lr x1", "amn<cam> crf=off lr x10"]
    assert all(0 <= v["miou"] <= 1 and v["tune_miou"] is not None for v in grid.values())
    assert len(list((run.path / "ablate").glob("amn_cam_*.pt"))) == 2


def test_variant_equal_to_a_run_method_reuses_its_maps(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, train_segmenter=False))
    run_pipeline(run, ["cam", "saliency"], progress=False)
    ids = run.dataset("train").ids + run.dataset("tune").ids
    assert same_as_run_method(run, Variant("v", "saliency", {"samples": 1}), ids)
    assert same_as_run_method(run, Variant("v", "cam"), ids)
    assert not same_as_run_method(run, Variant("v", "saliency", {"reduction": "l2"}), ids)
    assert not same_as_run_method(run, Variant("v", "saliency", {}, "random"), ids)
    assert not same_as_run_method(run, Variant("v", "jigsaw"), ids)  # no stored maps


def test_normalization_grid_scores_both(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, train_segmenter=False))
    run_pipeline(run, ["cam", "saliency"], progress=False)
    normalization_grid(run, progress=False)
    var = run.results()["ablation"]["variants"]
    for m in ("cam", "saliency"):
        assert {var[f"{m} norm=max"]["normalization"], var[f"{m} norm=p99"]["normalization"]} == {"max", "p99"}
    # the default normalization reproduces the method's own score
    assert var["saliency norm=p99"]["default"] and var["saliency norm=p99"]["miou"] == run.results()["methods"]["saliency"]["fixed"]["miou"]
