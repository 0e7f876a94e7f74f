"""Segmentation networks for the last WSSS stage: image in [0, 1] -> logits ``(B, C, H, W)`` at input size.

``create_segmenter(arch, num_classes_with_bg, pretrained=None)``; ``C = K + 1`` (background is class 0).
Normalization is the network's first step, as for the classifiers. Nothing here downloads: ImageNet
backbone weights come from the local torch hub cache (:func:`torch.hub.get_dir`) or a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import ConfigError, WsssError
from wsss.models.classifier import Normalize, ResBlock, _local_torchvision_weights, conv_bn

__all__ = ["SEGMENTERS", "Segmenter", "available_segmenters", "create_segmenter"]


class Segmenter(nn.Module):
    """Wraps a network that maps normalized images to low-resolution logits; upsamples to input size.

    Attributes:
        arch: registry name; ``num_classes``: C, background included; ``classes``: class names
            (background first) when loaded from a checkpoint that has them, else None.
    """

    def __init__(self, net: nn.Module, arch: str, num_classes: int):
        super().__init__()
        self.normalize = Normalize()
        self.net = net
        self.arch = arch
        self.num_classes = num_classes
        self.classes: tuple[str, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.normalize(x))
        if isinstance(out, dict):  # torchvision segmentation models return {"out": ...}
            out = out["out"]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


# ---------------------------------------------------------------------------------------------- torchvision


def _deeplabv3_resnet50(num_classes: int, pretrained, output_stride: int = 16) -> nn.Module:
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    if output_stride not in (8, 16):
        raise ConfigError(f"deeplabv3_resnet50: output_stride must be 8 or 16, got {output_stride}")
    replace = [False, True, True] if output_stride == 8 else [False, False, True]
    backbone = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=replace)
    if pretrained == "imagenet":
        backbone.load_state_dict(_local_torchvision_weights(torchvision.models.ResNet50_Weights.IMAGENET1K_V1))
    rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)  # DeepLabV3 paper: rates double at OS 8
    body = IntermediateLayerGetter(backbone, return_layers={"layer4": "out"})
    return DeepLabV3(body, DeepLabHead(2048, num_classes, rates), None)


def _deeplabv3_mobilenet(num_classes: int, pretrained, output_stride: int = 16) -> nn.Module:
    import torchvision
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    if output_stride != 16:
        raise ConfigError(f"deeplabv3_mobilenet: only output_stride 16 is supported, got {output_stride}")
    # weights_backbone=None explicitly: torchvision's default would download ImageNet weights.
    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes,
                                       aux_loss=False)
    if pretrained == "imagenet":
        state = _local_torchvision_weights(torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        missing, _ = net.backbone.load_state_dict(feats, strict=False)  # classifier weights are unused
        if missing:
            raise WsssError(f"MobileNetV3 ImageNet weights do not fit the backbone (missing {missing[0]})")
    return net


# ------------------------------------------------------------------------------------------- deeplab_small


class ASPPLite(nn.Module):
    """ASPP with few channels: 1x1, dilated 3x3 and image-pooling branches, concatenated and projected."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))]
            + [conv_bn(cin, cout, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True), nn.Dropout(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, 1))


class SmallDeepLab(nn.Module):
    """Small residual encoder (output stride 8, last stage dilated) + ASPP-lite + a stride-4 skip.

    For the built-in benchmark on CPU (64-160 px images): 0.5 M parameters, 87 M multiply-adds per 96 px
    image (torchvision's DeepLabV3-MobileNetV3: 347 M, most of it in its 256-channel ASPP on 960 channels).
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = (16, 24, 48, 96), aspp: int = 48,
                 rates: tuple[int, ...] = (2, 4)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = conv_bn(3, w0, stride=2)  # /2
        self.stage1 = ResBlock(w0, w1, stride=2)  # /4
        self.stage2 = nn.Sequential(ResBlock(w1, w2, stride=2), ResBlock(w2, w2))  # /8
        self.stage3 = nn.Sequential(ResBlock(w2, w3, dilation=2), ResBlock(w3, w3, dilation=2))  # /8, dilated
        self.aspp = ASPPLite(w3, aspp, rates)
        self.fuse = nn.Sequential(
            nn.Conv2d(aspp + w1, aspp, 1, bias=False), nn.BatchNorm2d(aspp), nn.ReLU(inplace=True),
            conv_bn(aspp, aspp),
        )
        self.classifier = nn.Conv2d(aspp, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.stage1(self.stem(x))
        y = self.aspp(self.stage3(self.stage2(low)))
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([y, low], 1)))


def _deeplab_small(num_classes: int, pretrained, output_stride: int = 8) -> nn.Module:
    if pretrained == "imagenet":
        raise WsssError("segmenter 'deeplab_small' has no ImageNet weights; "
                        "use pretrained=None or a state_dict path")
    if output_stride != 8:
        raise ConfigError(f"deeplab_small: only output_stride 8 is supported, got {output_stride}")
    return SmallDeepLab(num_classes)


SEGMENTERS: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3_resnet50": _deeplabv3_resnet50,
    "deeplabv3_mobilenet": _deeplabv3_mobilenet,
    "deeplab_small": _deeplab_small,
}


def available_segmenters() -> list[str]:
    return sorted(SEGMENTERS)


def create_segmenter(arch: str, num_classes_with_bg: int, pretrained: str | Path | None = None,
                     output_stride: int | None = None) -> Segmenter:
    """Build a segmenter.

    Args:
        arch: ``deeplabv3_resnet50`` (torchvision DeepLabV3, output stride 16 or 8), ``deeplabv3_mobilenet``
            (torchvision DeepLabV3 on MobileNetV3-Large, output stride 16) or ``deeplab_small`` (a small
            residual encoder + ASPP-lite, output stride 8; for the built-in benchmark on CPU).
        num_classes_with_bg: C = K + 1 output channels.
        pretrained: ``None`` (random init), ``"imagenet"`` (ImageNet *backbone* weights from the local torch
            hub cache; never downloaded) or a path to a state_dict / checkpoint of this segmenter.
        output_stride: ``None`` for the architecture's default.

    Returns:
        A :class:`Segmenter`: ``(B, 3, H, W)`` in [0, 1] -> logits ``(B, C, H, W)``.
    """
    if arch not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter {arch!r}; available: {', '.join(available_segmenters())}")
    if num_classes_with_bg < 2:
        raise ConfigError(f"a segmenter needs >= 2 classes (background + 1), got {num_classes_with_bg}")
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    imagenet = pretrained is not None and str(pretrained) == "imagenet"
    net = SEGMENTERS[arch](num_classes_with_bg, "imagenet" if imagenet else None, **kwargs)
    model = Segmenter(net, arch, num_classes_with_bg)
    if pretrained is not None and not imagenet:
        from wsss.models._registry import load_state

        load_state(model, Path(pretrained))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

