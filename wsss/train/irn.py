"""IRN's class-boundary training (Ahn et al. CVPR 2019, ``step/train_irn.py``), semantic path only.

Labels: IRN's ``cam_to_ir_label`` (:func:`wsss.train.amn.ir_labels`: confident foreground / background /
ignored) of a method's maps, downsampled (nearest, the centre pixel of each ``stride x stride`` cell, as
IRN's ``pil_rescale(label, 0.25, order=0)``) to the boundary map's resolution. From it, over the half-disk
pairs within ``radius`` (10 at stride 4, :func:`wsss.irn.half_disk`): positive background pairs (both 0),
positive foreground pairs (the same class), negative pairs (different labels); a pair with an ignored
pixel (or a pixel outside the crop) is no label (:func:`affinity_labels`).

Loss (IRN's affinity terms, the displacement terms dropped), with the path-max affinity ``a``
(:func:`wsss.irn.boundary_to_affinity`) and ``eps = 1e-5``::

    L_bg  = sum(-log(a + eps) over bg-pos pairs) / (n_bg + eps)
    L_fg  = sum(-log(a + eps) over fg-pos pairs) / (n_fg + eps)
    L_neg = sum(-log(1 + eps - a) over negative pairs) / (n_neg + eps)
    L     = ((L_bg / 2 + L_fg / 2) + L_neg) / 2

IRN's total is ``(pos + neg) / 2 + (dp_fg + dp_bg) / 2`` with ``pos = L_bg / 2 + L_fg / 2``; we keep its
first half. Sums run over the whole batch (not per image), as IRN.

Optimization as IRN: SGD, learning rate 0.1 with the poly schedule ``(1 - step / total) ** 0.9``, weight
decay 1e-4, only the branch trained (backbone frozen, :mod:`wsss.models.irn`). IRN's ``PolyOptimizer``
passes its weight decay as SGD's third positional argument, which is the momentum, so IRN runs with a
momentum of 1e-4; we use none. IRN trains its whole edge branch at the base rate (the x10 group is the
displacement branch); ``head_lr_mult`` (default 1) multiplies the rate of the final 1x1 fuse conv only.
Augmentation: random rescale (0.5, 1.5), flip, random crop (IRN: 512 px), via :class:`TrainSet`.

The hyper-parameters are :class:`wsss.config.IRNConfig` (the run config's ``irn:`` section).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wsss import models
from wsss.config import IRNConfig
from wsss.errors import RunDirError
from wsss.irn import boundary_to_affinity, half_disk
from wsss.models.irn import BoundaryBranch, build_irn
from wsss.runtime import init_distributed, place, world_size
from wsss.train.amn import IGNORE, IRLabels, classifier_spec, ir_labels, use_crf
from wsss.train.common import (
    TrainSet,
    ddp,
    label_fractions,
    loader,
    maps_folder,
    run_epochs,
    save_checkpoint,
    train_crop,
)

__all__ = [
    "IRNConfig", "affinity_labels", "boundary_to_affinity", "fit_irn", "ir_labels", "irn_loss",
    "labels_at_stride", "load_irn", "train_irn",
]

EPS = 1e-5


# ---- labels ----------------------------------------------------------------------------------------------
def labels_at_stride(label: torch.Tensor | np.ndarray, stride: int) -> torch.Tensor:
    """``(..., H, W)`` label map -> ``(..., ceil(H/stride), ceil(W/stride))``: the pixel at
    ``stride * i + stride // 2`` (clipped to the last row/column), i.e. nearest-neighbour downsampling."""
    lab = torch.as_tensor(np.asarray(label) if not isinstance(label, torch.Tensor) else label)
    h, w = lab.shape[-2:]
    rows = torch.arange(0, h, stride, device=lab.device).add_(stride // 2).clamp_(max=h - 1)
    cols = torch.arange(0, w, stride, device=lab.device).add_(stride // 2).clamp_(max=w - 1)
    return lab[..., rows, :][..., cols]


def affinity_labels(label: torch.Tensor | np.ndarray, radius: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IRN's pair labels of a label map at the boundary stride.

    Args:
        label: ``(h, w)`` or ``(B, h, w)`` integer labels, 0 background, class ids, 255 ignored.
        radius: the half-disk pairs of :func:`wsss.irn.half_disk`.
    Returns:
        ``(bg_pos, fg_pos, neg)`` boolean ``([B,] offsets, h, w)``: entry ``[i, y, x]`` labels the pair
        ``(y, x)``-``(y + dy_i, x + dx_i)``; all False when either pixel is ignored or outside the map.
    """
    lab = torch.as_tensor(np.asarray(label) if not isinstance(label, torch.Tensor) else label).long()
    squeeze = lab.ndim == 2
    if squeeze:
        lab = lab[None]
    if lab.ndim != 3:
        raise ValueError(f"label must be (h, w) or (B, h, w), got {tuple(lab.shape)}")
    offsets, _ = half_disk(radius)
    pad = radius - 1
    h, w = lab.shape[-2:]
    lp = torch.nn.functional.pad(lab, (pad, pad, pad, pad), value=IGNORE)
    dst = torch.stack([lp[:, pad + dy: pad + dy + h, pad + dx: pad + dx + w] for dy, dx in offsets], 1)
    src = lab[:, None]
    valid = (src != IGNORE) & (dst != IGNORE)
    same = src == dst
    bg_pos = valid & same & (src == 0)
    fg_pos = valid & same & (src != 0)
    neg = valid & ~same
    if squeeze:
        return bg_pos[0], fg_pos[0], neg[0]
    return bg_pos, fg_pos, neg


# ---- loss ------------------------------------------------------------------------------------------------
def irn_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IRN's balanced affinity loss (module docstring); returns ``(loss, {"bg", "fg", "neg"} terms)``.
    An empty pair set contributes 0 (IRN's ``+ eps`` denominators)."""
    aff = aff.float()
    zero = aff.new_zeros(())
    pos_nll = -torch.log(aff + EPS)
    neg_nll = -torch.log(1.0 + EPS - aff)
    l_bg = torch.where(bg_pos, pos_nll, zero).sum() / (bg_pos.sum() + EPS)
    l_fg = torch.where(fg_pos, pos_nll, zero).sum() / (fg_pos.sum() + EPS)
    l_neg = torch.where(neg, neg_nll, zero).sum() / (neg.sum() + EPS)
    loss = (l_bg / 2 + l_fg / 2 + l_neg) / 2
    return loss, {"bg": l_bg.detach(), "fg": l_fg.detach(), "neg": l_neg.detach()}


def batch_irn_loss(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, radius: int,
                   stride: int) -> torch.Tensor:
    """Loss of a batch: boundary -> path-max affinity vs the pair labels of ``masks`` (B, H, W)."""
    boundary = torch.sigmoid(model(images))[:, 0]
    lab = labels_at_stride(masks, stride)
    if tuple(lab.shape[-2:]) != tuple(boundary.shape[-2:]):
        raise ValueError(f"labels at stride {stride} are {tuple(lab.shape[-2:])}, "
                         f"the boundary map {tuple(boundary.shape[-2:])}")
    bg_pos, fg_pos, neg = affinity_labels(lab, radius)
    aff = boundary_to_affinity(boundary, radius)
    return irn_loss(aff, bg_pos, fg_pos, neg)[0]


# ---- training --------------------------------------------------------------------------------------------
def fit_irn(train_ds, maps_dir: Path, classifier: nn.Module, cfg: IRNConfig, device: torch.device,
            seed: int = 0, progress: bool = True) -> tuple[BoundaryBranch, dict]:
    """Train the boundary branch on IR labels from ``maps_dir``; return ``(branch in eval mode, result)``.
    Nothing is saved (see :func:`train_irn`)."""
    distributed = init_distributed(device)
    maps_dir = maps_folder(maps_dir, cfg.from_maps)
    t0 = time.time()
    crf = use_crf(cfg)
    labels = IRLabels(maps_dir, cfg.fg_threshold, cfg.bg_threshold, cfg.normalization, crf=crf, dataset=train_ds,
                      crf_sxy=cfg.crf_sxy)
    fractions, t_labels = label_fractions(train_ds, labels, "irn labels", progress)

    torch.manual_seed(seed)
    model = place(build_irn(classifier, list(cfg.taps) if cfg.taps else None, cfg.stride), device)
    crop = train_crop(train_ds, cfg.crop)
    data = TrainSet(train_ds, crop, cfg.scale, cfg.flip, seed=seed, mask_fn=labels, where=labels.path)
    batches, sampler = loader(data, cfg.batch_size, cfg.num_workers, seed, distributed)
    levels, fuse = model.param_groups()
    opt = torch.optim.SGD([{"params": levels, "lr": cfg.lr},
                           {"params": fuse, "lr": cfg.lr * cfg.head_lr_mult}],
                          lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay)
    net, model = model, ddp(model, device, distributed)

    def batch_loss(batch):
        images, _, masks = (t.to(device, non_blocking=True) for t in batch)
        return batch_irn_loss(model, images, masks, cfg.radius, net.stride)

    history = run_epochs(model, data, batches, opt, cfg.epochs, batch_loss, device, "train-irn", progress,
                         sampler=sampler, schedule="poly")
    net.eval()
    result = {
        "loss_history": history, "seconds": time.time() - t0, "seconds_labels": t_labels,
        "epochs": cfg.epochs, "crf": crf, "crf_sxy": cfg.crf_sxy, "labels_from": cfg.from_maps, "normalization": cfg.normalization,
        "fg_threshold": cfg.fg_threshold, "bg_threshold": cfg.bg_threshold, "radius": cfg.radius,
        "label_fractions": fractions,
        "taps": list(net.taps), "stride": net.stride, "crop": crop, "images": len(train_ds.ids),
        "world_size": world_size(), "config": cfg.model_dump(mode="json"),
    }
    return net, result


def train_irn(train_ds, maps_dir: Path, classifier: nn.Module, cfg: IRNConfig, out: Path,
              device: torch.device, seed: int = 0, progress: bool = True, arch: str | None = None,
              arch_kwargs: dict | None = None) -> dict:
    """Train the boundary branch (:func:`fit_irn`) and save ``out`` atomically; return the result dict.

    The checkpoint holds ``model`` (the branch's state_dict, frozen backbone included), ``num_classes``,
    ``arch`` + ``arch_kwargs`` (the classifier architecture the backbone is rebuilt from, see
    :func:`wsss.train.amn.classifier_spec`), ``taps``, ``channels``, ``stride`` and ``result``.
    """
    arch, arch_kwargs = classifier_spec(classifier, arch, arch_kwargs)
    net, result = fit_irn(train_ds, maps_dir, classifier, cfg, device, seed=seed, progress=progress)
    result["arch"] = arch
    save_checkpoint(Path(out), model=net.state_dict(), num_classes=int(classifier.num_classes), arch=arch,
                    arch_kwargs=arch_kwargs, taps=list(net.taps), channels=list(net.channels),
                    stride=int(net.stride), result=result)
    return result


def load_irn(path: str | Path, device: torch.device | str = "cpu") -> BoundaryBranch:
    """Rebuild a trained boundary branch from its checkpoint (``weights_only=True``), eval mode, on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: IRN checkpoint not found (train it first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        arch, num_classes = ckpt["arch"], int(ckpt["num_classes"])
        taps, channels, stride = list(ckpt["taps"]), [int(c) for c in ckpt["channels"]], int(ckpt["stride"])
    except Exception as exc:  # noqa: BLE001 - any unpickling failure or missing key is a bad file
        raise RunDirError(f"{path}: not an IRN checkpoint ({exc.__class__.__name__}: {exc})") from exc
    classifier = models.create(arch, num_classes, **(ckpt.get("arch_kwargs") or {}))
    branch = BoundaryBranch(classifier.features, taps, channels, stride=stride)
    try:
        branch.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise RunDirError(f"{path}: weights do not fit the IRN branch ({str(exc).strip().splitlines()[0]})") from exc
    return place(branch, device).eval()
