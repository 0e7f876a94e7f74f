"""The channels-last option (``channels_last`` in the config; ``wsss demo`` turns it on): models placed by
``wsss.runtime.place`` use the NHWC layout, maps agree with the default layout to float rounding, and a run
with the option trains and scores end to end."""

from __future__ import annotations

import pytest
import torch

from wsss import localize, models
from wsss.runtime import place, set_channels_last

from .conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def channels_last_off():
    yield
    set_channels_last(False)


def _conv_weights(model):
    return [p for p in model.parameters() if p.ndim == 4]


def test_place_uses_the_layout_asked_for(channels_last_off):
    torch.manual_seed(0)
    model = place(models.create("smallcnn", 3), "cpu")
    assert all(w.is_contiguous() for w in _conv_weights(model))  # off by default
    set_channels_last(True)
    model = place(models.create("smallcnn", 3), "cpu")
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(model))


@pytest.mark.parametrize("method", ["cam", "gradcam", "saliency", "jigsaw"])
def test_maps_agree_with_the_default_layout(method, channels_last_off):
    torch.manual_seed(0)
    base = models.create("smallcnn", 3).eval()
    nhwc = models.create("smallcnn", 3).eval()
    nhwc.load_state_dict(base.state_dict())
    set_channels_last(True)
    nhwc = place(nhwc, "cpu")
    x = torch.rand(2, 3, 48, 48)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    a = localize.create(method, base, seed=0).attribute(x, y)
    b = localize.create(method, nhwc, seed=0).attribute(x, y)
    assert a.abs().max() > 0
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_a_run_with_channels_last_trains_and_scores(tiny_data, tmp_path, channels_last_off):
    from wsss.run.pipeline import run_pipeline
    from wsss.run.rundir import Run

    cfg = tiny_config(tiny_data, channels_last=True, train_segmenter=False, **{"maps.methods": ["cam"]})
    run = Run.create(tmp_path / "run", cfg)
    results = run_pipeline(run, ["cam"], progress=False)
    assert 0.0 <= results["methods"]["cam"]["fixed"]["miou"] <= 1.0
    from wsss.run.stages import classifier

    model = classifier.load(Run(tmp_path / "run"))  # the run's config turns the layout on for its stages
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(model))


def test_demo_config_asks_for_channels_last(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from wsss.run import pipeline

    made = []

    def create(out, cfg, **kwargs):  # the run directory the demo would make, without the data and stages
        made.append(cfg)
        return SimpleNamespace(cfg=cfg, update_results=lambda *a, **k: None)

    monkeypatch.setattr("wsss.data.synth.write_benchmark", lambda *a, **k: None)
    monkeypatch.setattr(pipeline.Run, "create", create)
    monkeypatch.setattr(pipeline, "run_pipeline", lambda run, methods, progress=True: {})
    for quick in (True, False):
        pipeline.demo(tmp_path / f"demo_{quick}", quick=quick)
    assert [cfg.channels_last for cfg in made] == [True, True]
    assert made[1].maps.options["jigsaw"]["samples"] == 4
    for cfg in made:  # traj-cam reads the snapshots after each quarter of the classifier's training
        assert "traj-cam" in cfg.maps.methods
        assert cfg.classifier.snapshot_epochs[-1] == cfg.classifier.epochs and len(cfg.classifier.snapshot_epochs) == 4
    # the full demo: our jigsaw-consistency classifier's CAM, its masks train a segmenter; planned after the classifier
    full = made[1]
    assert "cam@jigsaw-consistency" in full.maps.methods and "cam@jigsaw-consistency" in full.seg.methods
    jc = full.classifier_config("jigsaw-consistency")
    assert (jc.recipe, jc.epochs, jc.ramp) == ("jigsaw-consistency", 10, 0.0)
    from wsss.run import plan

    ids = [j.id for j in plan.build(full)]
    assert ids.index("classifier:jigsaw-consistency") < ids.index("maps:cam@jigsaw-consistency")
    assert "cam@jigsaw-consistency" not in made[0].maps.methods  # the quick demo keeps its two-minute budget
    assert not full.seg.ground_truth and not made[0].seg.ground_truth  # the demos' budgets: no segmenter on true masks
