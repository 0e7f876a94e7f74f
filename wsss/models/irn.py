"""IRN's class-boundary branch (Ahn et al., "Weakly Supervised Learning of Instance Segmentation with
Inter-pixel Relations", CVPR 2019), semantic path only (no displacement field / instance branch).

The branch reads the outputs of several stages of a trained CAM classifier's ``features`` (for ResNet-50:
the stem and the four residual stages, as IRN's five levels), maps each to 32 channels with a 1x1 conv +
GroupNorm(4) + ReLU, resizes them all to the branch resolution (``stride``, 4 as IRN), concatenates them and
predicts one boundary logit per pixel with a 1x1 conv. ``sigmoid`` of it is the class-boundary map ``B``;
the inter-pixel affinity of two pixels is ``1 - max B`` along the segment between them
(:func:`wsss.train.irn.boundary_to_affinity`).

Choices:

- **Backbone frozen.** The backbone is a deep copy of the classifier's ``features``, with
  ``requires_grad=False``, always in eval mode (batch-norm statistics frozen) and run under
  ``torch.no_grad()``. IRN also trains only the branches (its backbone outputs are ``detach()``-ed and its
  backbone is kept in eval mode); ours starts from the WSSS classifier rather than ImageNet weights, as
  :mod:`wsss.models.amn` does.
- **Taps.** ``features`` must be an ``nn.Sequential`` (all our architectures are: ``normalize, stem,
  stage1..``); its named children are run in order and the outputs of the ``taps`` are kept (default:
  every child except the :class:`~wsss.models.classifier.Normalize` step, i.e. 5 levels for the
  ResNets and smallcnn, 9 for EfficientNet-Lite0). Running the children in order (rather than forward
  hooks) lets the forward stop after the last tap.
- **Resolution.** Every level is resized (bilinear, ``align_corners=False``) to ``ceil(H / stride)`` x
  ``ceil(W / stride)``: coarser levels are upsampled as IRN; levels finer than ``stride`` (smallcnn's and
  EfficientNet's stride-2 stem) are downsampled, which for a factor 2 is the 2x2 average. IRN upsamples
  by an exact factor and crops; on sizes that are not multiples of the strides the two differ by a
  fraction of a pixel.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import ConfigError
from wsss.models.classifier import Normalize

LEVEL_CHANNELS = 32
GROUPS = 4


def default_taps(features: nn.Module) -> list[str]:
    """Names of the children of ``features`` whose outputs feed the branch: all but normalization."""
    if not isinstance(features, nn.Sequential):
        raise ConfigError(f"IRN needs the classifier's features as an nn.Sequential, got {type(features).__name__}")
    return [name for name, m in features.named_children() if not isinstance(m, Normalize)]


def run_stages(features: nn.Sequential, x: torch.Tensor, taps: list[str]) -> list[torch.Tensor]:
    """Run the children of ``features`` in order and return the outputs of ``taps`` (in tap order of
    appearance); stops after the last tap."""
    wanted = set(taps)
    outs: dict[str, torch.Tensor] = {}
    for name, module in features.named_children():
        x = module(x)
        if name in wanted:
            outs[name] = x
            if len(outs) == len(wanted):
                break
    missing = [t for t in taps if t not in outs]
    if missing:
        raise ConfigError(f"IRN taps {missing} are not children of the backbone")
    return [outs[t] for t in taps]


def probe_channels(features: nn.Sequential, taps: list[str], side: int = 64) -> list[int]:
    """Channels of each tap, from one forward pass of a ``side`` x ``side`` zero image (no grad, eval)."""
    param = next(features.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = features.training
    features.eval()
    with torch.no_grad():
        outs = run_stages(features, torch.zeros(1, 3, side, side, device=device), taps)
    features.train(was_training)
    return [int(o.shape[1]) for o in outs]


class BoundaryBranch(nn.Module):
    """IRN's class-boundary detector on a frozen backbone.

    Args:
        backbone: ``nn.Sequential`` image in [0, 1] -> features (normalization inside), frozen here.
        taps: names of the backbone children whose outputs are used (see :func:`default_taps`).
        channels: their channel counts (see :func:`probe_channels`).
        stride: output stride of the boundary map (IRN: 4).
    ``forward(x)`` returns boundary **logits** ``(B, 1, ceil(H/stride), ceil(W/stride))``; see
    :meth:`boundary` for the map.
    """

    def __init__(self, backbone: nn.Sequential, taps: list[str], channels: list[int], stride: int = 4):
        super().__init__()
        if len(taps) != len(channels) or not taps:
            raise ConfigError(f"IRN: {len(taps)} taps for {len(channels)} channel counts")
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()
        self.taps = list(taps)
        self.channels = [int(c) for c in channels]
        self.stride = int(stride)
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, LEVEL_CHANNELS, 1, bias=False), nn.GroupNorm(GROUPS, LEVEL_CHANNELS),
                          nn.ReLU(inplace=True))
            for c in self.channels
        )
        self.fuse = nn.Conv2d(LEVEL_CHANNELS * len(self.channels), 1, 1, bias=True)

    def train(self, mode: bool = True) -> BoundaryBranch:
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics never update
        return self

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Boundary-map size for an input of ``size`` (H, W): ``ceil(size / stride)``."""
        return math.ceil(size[0] / self.stride), math.ceil(size[1] / self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = run_stages(self.backbone, x, self.taps)
        size = self.out_size(x.shape[-2:])
        levels = []
        for level, f in zip(self.levels, feats, strict=True):
            y = level(f.detach())
            if tuple(y.shape[-2:]) != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            levels.append(y)
        return self.fuse(torch.cat(levels, dim=1))

    @torch.no_grad()
    def boundary(self, x: torch.Tensor, flip: bool = True) -> torch.Tensor:
        """Boundary map in [0, 1], ``(B, h, w)``; ``flip``: average the logits of the image and of its
        horizontal flip (flipped back) before the sigmoid, as IRN's inference."""
        logits = self(x)
        if flip:
            logits = (logits + self(x.flip(-1)).flip(-1)) / 2
        return torch.sigmoid(logits)[:, 0]

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(per-level layers, fuse conv)`` parameters, for their two learning rates."""
        return list(self.levels.parameters()), list(self.fuse.parameters())


def build_irn(classifier: nn.Module, taps: list[str] | None = None, stride: int = 4) -> BoundaryBranch:
    """A boundary branch on a frozen deep copy of ``classifier.features`` (the classifier is untouched)."""
    backbone = copy.deepcopy(classifier.features)
    taps = list(taps) if taps is not None else default_taps(backbone)
    channels = probe_channels(backbone, taps)
    return BoundaryBranch(backbone, taps, channels, stride=stride)
