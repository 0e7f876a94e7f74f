"""AMN, the activation manipulation network ("Threshold Matters in WSSS", Lee et al. CVPR 2022).

A label-conditioned segmentation network, as the official code (gaviotas/AMN, ``net/resnet50_amn.py``):
backbone feature map ``F`` (B, D, h, w) times a label embedding ``Linear(K -> D)(labels)`` channel-wise,
dropout 0.1, then a DeepLab-v2 ASPP head (sum of four dilated 3x3 convs) to K+1 logits (background
first). Here the backbone is a deep copy of a trained CAM classifier's ``features`` (normalization
inside, input in [0, 1]), so on the built-in benchmark AMN starts from our classifier, as the official
code starts from ImageNet ResNet-50.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

OFFICIAL_RATES = (6, 12, 18, 24)
"""DeepLab-v2 / AMN atrous rates, for a 32-px feature map (crop 512 at output stride 16)."""

REFERENCE_SIDE = 32
"""Feature-map side the official rates were set for; smaller maps get proportionally smaller rates."""


def aspp_rates_for(side: int, rates: tuple[int, ...] = OFFICIAL_RATES) -> tuple[int, ...]:
    """The official rates scaled to a feature map of ``side`` px: ``max(1, round(r * side / 32))``
    when ``side < 32``, the official ones otherwise (never scaled up).

    A 96-px benchmark image at stride 8 (side 12) gets ``(2, 4, 7, 9)``.
    """
    scale = min(1.0, side / REFERENCE_SIDE)
    return tuple(max(1, round(r * scale)) for r in rates)


class ASPP(nn.Module):
    """Sum of dilated 3x3 convs (DeepLab-v2), weights ~ N(0, 0.01), zero bias (as the official code)."""

    def __init__(self, in_ch: int, out_ch: int, rates: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_ch, out_ch, 3, padding=r, dilation=r) for r in rates)
        for conv in self.convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    @property
    def rates(self) -> tuple[int, ...]:
        return tuple(int(c.dilation[0]) for c in self.convs)

    def set_rates(self, rates: tuple[int, ...]) -> None:
        """Dilations are not weights: the same state_dict serves any rates of the same count."""
        if len(rates) != len(self.convs):
            raise ValueError(f"ASPP has {len(self.convs)} branches, got {len(rates)} rates")
        for conv, r in zip(self.convs, rates, strict=True):
            conv.dilation, conv.padding = (int(r), int(r)), (int(r), int(r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.convs)


class AMN(nn.Module):
    """Label-conditioned segmenter: ``forward(x, labels) -> (B, K+1, h, w)`` logits, background first.

    Args:
        backbone: image in [0, 1] ``(B, 3, H, W)`` -> feature map ``(B, D, h, w)``.
        feature_dim: D.
        num_classes: K (foreground classes).
        stride: output stride of ``backbone`` (``h = ceil(H / stride)``).
        rates: ASPP dilation rates; ``None`` picks :func:`aspp_rates_for` the feature-map side (the
            shorter one) at the first forward pass and keeps them (see :attr:`rates`).
        dropout: dropout on the conditioned feature map (0.1 as the official code).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, stride: int,
                 rates: tuple[int, ...] | None = None, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.label_enc = nn.Linear(num_classes, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.aspp = ASPP(feature_dim, num_classes + 1, rates or OFFICIAL_RATES)
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.stride = stride
        self._rates_fixed = rates is not None

    @property
    def rates(self) -> tuple[int, ...] | None:
        """The ASPP rates, or ``None`` while they are still to be picked at the first forward pass."""
        return self.aspp.rates if self._rates_fixed else None

    def fix_rates(self, rates: tuple[int, ...]) -> None:
        self.aspp.set_rates(tuple(rates))
        self._rates_fixed = True

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) in [0, 1], ``labels`` (B, K) multi-hot -> logits (B, K+1, h, w)."""
        feats = self.backbone(x)
        if not self._rates_fixed:
            self.fix_rates(aspp_rates_for(min(feats.shape[-2:])))
        cond = self.label_enc(labels.to(feats.dtype))[:, :, None, None]
        return self.aspp(self.dropout(feats * cond))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, new layers)`` trainable parameters, for their two learning rates."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        new = [p for m in (self.label_enc, self.aspp) for p in m.parameters() if p.requires_grad]
        return backbone, new


def build_amn(classifier: nn.Module, rates: tuple[int, ...] | None = None, dropout: float = 0.1) -> AMN:
    """AMN on a deep copy of ``classifier.features`` (the classifier itself is left untouched).

    ``classifier`` is a CAM classifier: ``features``, ``classifier`` (1x1 conv, K outputs), ``stride``.
    """
    head = classifier.classifier
    feature_dim = int(getattr(classifier, "feature_dim", head.in_channels))
    num_classes = int(getattr(classifier, "num_classes", head.out_channels))
    backbone = copy.deepcopy(classifier.features)
    for p in backbone.parameters():
        p.requires_grad_(True)
    return AMN(backbone, feature_dim, num_classes, int(classifier.stride), rates=rates, dropout=dropout)
