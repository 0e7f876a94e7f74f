"""The network registry: every entry is a CAM-architecture classifier with the public contract
(normalization first, a bias-free 1x1 conv head on the features, ``stride``; see ``CamClassifier``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsss.errors import ConfigError, WsssError
from wsss.models import CamClassifier, Normalize, available, create, load_state

K = 5
SIZE = 64  # a multiple of every output stride (8, 16, 32)
SMALL = "smallcnn"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create(name, K).eval() for name in available()}


def test_registry_lists_the_known_entries():
    assert {"smallcnn", "smallcnn_deep", "resnet18", "resnet50", "efficientnet_lite0"} <= set(available())
    assert available() == sorted(available())


@pytest.mark.parametrize("name", available())
def test_contract(name, models):
    model = models[name]
    assert isinstance(model, CamClassifier)
    assert isinstance(model.features[0], Normalize)  # normalization is the network's first step
    # classifier: a 1x1 conv without bias, K outputs, on the feature dimension
    clf = model.classifier
    assert isinstance(clf, nn.Conv2d) and clf.kernel_size == (1, 1) and clf.bias is None
    assert clf.out_channels == K == model.num_classes and clf.in_channels == model.feature_dim
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, model.feature_dim, SIZE // model.stride, SIZE // model.stride)
    assert logits.shape == (2, K) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # forward = features -> global average pool -> classifier
    expected = torch.einsum("kd,bd->bk", clf.weight.flatten(1), feats.mean(dim=(2, 3)))
    assert torch.allclose(logits, expected, rtol=1e-4, atol=1e-5)
    assert torch.allclose(model.forward_head(feats), logits)


@pytest.mark.parametrize("name,stride", [("smallcnn", 8), ("resnet18", 16), ("resnet50", 16),
                                         ("efficientnet_lite0", 32)])
def test_default_strides(name, stride, models):
    assert models[name].stride == stride


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("output_stride", [8, 32])
def test_resnet_output_stride_option(name, output_stride):
    model = create(name, 2, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = model.features(torch.rand(1, 3, 32, 32))
    assert model.stride == output_stride and feats.shape[-1] == 32 // output_stride


def test_train_step_reaches_every_parameter():
    model = create(SMALL, K).train()
    x = torch.rand(2, 3, 32, 32)
    loss = nn.functional.multilabel_soft_margin_loss(model(x), torch.tensor([[1.0, 0, 1, 0, 0]] * 2))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["smallcnn", "smallcnn_deep"])
def test_no_imagenet_weights_is_a_clear_error(name):
    with pytest.raises(WsssError, match="no ImageNet weights"):
        create(name, K, pretrained="imagenet")


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'nope'.*smallcnn"):
        create("nope", K)


@pytest.mark.parametrize("name", ["smallcnn", "resnet18", "efficientnet_lite0"])
def test_state_dict_round_trip(name, models, tmp_path):
    model = models[name]
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    x = torch.rand(1, 3, 32, 32)
    torch.manual_seed(123)  # a different random init, overwritten by the file
    fresh = create(name, K)
    load_state(fresh, path)
    via_create = create(name, K, pretrained=path)  # a path as `pretrained` loads the same file
    for other in (fresh, via_create):
        other.eval()
        mine, theirs = model.state_dict(), other.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        with torch.no_grad():
            assert torch.equal(other(x), model(x))
    # a checkpoint dict holding the state_dict under "model" is accepted too
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, ckpt)
    assert torch.equal(load_state(create(name, K), ckpt).classifier.weight, model.classifier.weight)


def test_wrong_weights_name_the_file(models, tmp_path):
    wrong = tmp_path / "three_classes.pt"
    torch.save(create(SMALL, 3).state_dict(), wrong)
    with pytest.raises(WsssError, match="three_classes.pt.*do not fit"):
        load_state(create(SMALL, K), wrong)
    with pytest.raises(WsssError, match="three_classes.pt"):
        create(SMALL, K, pretrained=wrong)
    # another architecture's weights
    other = tmp_path / "deep.pt"
    torch.save(models["smallcnn_deep"].state_dict(), other)
    with pytest.raises(WsssError, match="deep.pt"):
        create(SMALL, K, pretrained=other)
    missing = tmp_path / "missing.pt"
    with pytest.raises(WsssError, match="missing.pt.*not found"):
        create(SMALL, K, pretrained=missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WsssError, match="garbage.pt.*cannot read"):
        load_state(create(SMALL, K), garbage)


class _Arbitrary:  # any non-tensor object: weights_only loading must refuse to unpickle it
    pass


def test_load_state_is_weights_only(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": _Arbitrary()}, path)  # loadable with weights_only=False, refused with True
    with pytest.raises(WsssError, match="pickled.pt.*cannot read"):
        load_state(create(SMALL, K), path)


def test_freeze_stages_keeps_them_fixed_and_input_gradients_flowing(tiny_data, tmp_path):
    """IRN's conv1 freeze + stage-2 detach as ``classifier.freeze``: the frozen stages do not move in training,
    the rest does, and the trained model still has input gradients (what gradient localizers need)."""
    from wsss.config import ClassifierConfig
    from wsss.data import open_dataset
    from wsss.train.classifier import load_classifier, train_classifier

    ds = open_dataset(tiny_data, split="train_aug")
    cfg = ClassifierConfig(epochs=1, batch_size=8, freeze=("stem", "stage1", "stage2"))
    torch.manual_seed(0)
    before = create(SMALL, ds.num_classes).state_dict()
    train_classifier(ds, None, cfg, tmp_path / "c.pt", torch.device("cpu"), seed=0, progress=False)
    after = load_classifier(tmp_path / "c.pt").state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {k for k in before if k.startswith(("features.stem.", "features.stage1.", "features.stage2."))
              and "running" not in k and "num_batches" not in k}
    assert frozen and not (moved & frozen)
    assert any(k.startswith("features.stage4.") for k in moved) and "classifier.weight" in moved
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    (g,) = torch.autograd.grad(load_classifier(tmp_path / "c.pt")(x).sum(), x)
    assert g.abs().sum() > 0


def test_freeze_unknown_stage_is_a_config_error(tiny_data, tmp_path):
    from wsss.config import ClassifierConfig
    from wsss.data import open_dataset
    from wsss.train.classifier import train_classifier

    ds = open_dataset(tiny_data, split="train_aug")
    with pytest.raises(ConfigError, match="layer9"):
        train_classifier(ds, None, ClassifierConfig(epochs=1, freeze=("layer9",)), tmp_path / "c.pt",
                         torch.device("cpu"), progress=False)
