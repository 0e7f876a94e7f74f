"""CAM-architecture classifiers: ``features`` (image in [0, 1] -> feature map; normalization inside),
``classifier`` (1x1 conv, K outputs, no bias), ``forward`` = features -> global average pool -> classifier.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import WsssError
from wsss.models._registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` as the network's first step, so gradients are w.r.t. real pixels in [0, 1]."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CamClassifier(nn.Module):
    """Multi-label classifier with the CAM architecture.

    Attributes:
        features: ``(B, 3, H, W)`` in [0, 1] -> ``(B, D, h, w)``.
        classifier: ``nn.Conv2d(D, K, 1, bias=False)``.
        stride: output stride of ``features``.
    """

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, stride: int):
        super().__init__()
        self.features = features
        self.classifier = nn.Conv2d(feature_dim, num_classes, 1, bias=False)
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.stride = stride

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_cam(self, feats: torch.Tensor) -> torch.Tensor:
        """Class activation maps ``(B, K, h, w)`` of a feature map ``(B, D, h, w)``: the 1x1 classifier applied
        at every position, before pooling (pooling and the linear classifier commute)."""
        return torch.einsum("kd,bdhw->bkhw", self.classifier.weight.flatten(1), feats)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = feats.mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(x))


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs), optional stride/dilation."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout)
        )
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.skip is None else self.skip(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


def _small_features(widths: tuple[int, ...], blocks: tuple[int, ...], strides: tuple[int, ...]) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [("normalize", Normalize()), ("stem", conv_bn(3, widths[0], strides[0]))]
    cin = widths[0]
    for i, (w, n, s) in enumerate(zip(widths[1:], blocks, strides[1:], strict=True), start=1):
        stage = [ResBlock(cin, w, s)] + [ResBlock(w, w) for _ in range(n - 1)]
        layers.append((f"stage{i}", nn.Sequential(*stage)))
        cin = w
    return nn.Sequential(OrderedDict(layers))


def _no_imagenet(name: str, pretrained) -> None:
    if pretrained == "imagenet":
        raise WsssError(f"model {name!r} has no ImageNet weights; use pretrained=None or a state_dict path")


@register_model
def smallcnn(num_classes: int, pretrained=None) -> CamClassifier:
    """Small residual CNN for the built-in benchmark: output stride 8, ~0.9 M parameters."""
    _no_imagenet("smallcnn", pretrained)
    feats = _small_features((24, 32, 64, 128, 192), (1, 1, 1, 1), (2, 1, 2, 2, 1))
    return CamClassifier(feats, 192, num_classes, stride=8)


@register_model
def smallcnn_deep(num_classes: int, pretrained=None) -> CamClassifier:
    """Deeper variant of :func:`smallcnn` (two blocks per stage): a larger receptive field, same stride."""
    _no_imagenet("smallcnn_deep", pretrained)
    feats = _small_features((24, 32, 64, 128, 192), (2, 2, 2, 2), (2, 1, 2, 2, 1))
    return CamClassifier(feats, 192, num_classes, stride=8)


def _torchvision_resnet(arch: str, num_classes: int, pretrained, output_stride: int) -> CamClassifier:
    import torchvision

    builder = getattr(torchvision.models, arch)
    weights = None
    if pretrained == "imagenet":
        weights_enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        weights = _local_torchvision_weights(weights_enum)
    replace = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    if arch in ("resnet18", "resnet34"):
        net = builder(weights=None)
        if output_stride != 32:
            _dilate_basic(net, replace)
    else:
        net = builder(weights=None, replace_stride_with_dilation=replace)
    if weights is not None:
        net.load_state_dict(weights)
    body = nn.Sequential(
        OrderedDict(
            normalize=Normalize(),
            stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
            stage1=net.layer1,
            stage2=net.layer2,
            stage3=net.layer3,
            stage4=net.layer4,
        )
    )
    return CamClassifier(body, net.fc.in_features, num_classes, stride=output_stride)


def _dilate_basic(net: nn.Module, replace: list[bool]) -> None:
    """Output-stride reduction for BasicBlock ResNets (torchvision only supports it for Bottleneck)."""
    dilation = 1
    for flag, layer in zip(replace, [net.layer2, net.layer3, net.layer4], strict=True):
        if not flag:
            continue
        prev = dilation
        dilation *= 2
        for bi, block in enumerate(layer):
            d_first = prev if bi == 0 else dilation
            block.conv1.stride = (1, 1)
            block.conv1.dilation, block.conv1.padding = (d_first, d_first), (d_first, d_first)
            block.conv2.dilation, block.conv2.padding = (dilation, dilation), (dilation, dilation)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)


def _local_torchvision_weights(weights_enum) -> dict:
    """ImageNet weights from the local torch hub cache only; never downloads."""
    from pathlib import Path

    filename = weights_enum.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise WsssError(
            f"ImageNet weights {filename} not found at {path}; download them once on a machine with network "
            f"(python -c \"import torchvision; torchvision.models.get_weight('{weights_enum}').get_state_dict()\") "
            f"and copy the file there, or pass pretrained=<path to a state_dict>"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


@register_model
def resnet18(num_classes: int, pretrained=None, output_stride: int = 16) -> CamClassifier:
    """torchvision ResNet-18, last stage dilated to output stride 16 (CAM convention)."""
    return _torchvision_resnet("resnet18", num_classes, pretrained, output_stride)


@register_model
def resnet50(num_classes: int, pretrained=None, output_stride: int = 16) -> CamClassifier:
    """torchvision ResNet-50, last stage dilated to output stride 16 (IRN / AMN protocol)."""
    return _torchvision_resnet("resnet50", num_classes, pretrained, output_stride)
