"""Segmenter training and inference (``wsss train-seg``, ``wsss predict``): the last WSSS stage.

Trains a segmentation network on pseudo-masks (or ground truth, the fully supervised bound) with
cross-entropy (255 ignored), flip/scale/crop and a poly learning-rate schedule, then scores it on the
ground truth of a validation split with one confusion matrix over the split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from wsss.config import SegConfig
from wsss.data.base import image_files
from wsss.data.transforms import to_tensor
from wsss.errors import ConfigError, DataError
from wsss.metrics import VOID, ConfusionMatrix
from wsss.models.segmenter import Segmenter, create_segmenter
from wsss.progress import progress_bar
from wsss.runtime import init_distributed, is_main, place, resolve_device, world_size
from wsss.train.common import TrainSet, load_checkpoint, run_epochs, save_checkpoint, train_crop, unwrap

__all__ = ["evaluate_segmenter", "load_segmenter", "predict", "predict_paths", "predict_probs",
           "train_segmenter"]

OVERLAY_ALPHA = 0.5


class _RememberShape:
    """Dataset proxy that remembers the size of the image it read last, so the mask that
    ``TrainSet`` asks for right after can be checked against it without decoding the image twice."""

    def __init__(self, ds):
        self._ds = ds
        self.last: tuple[str, tuple[int, int]] | None = None

    def __getattr__(self, name):
        if name == "_ds":  # not set yet (unpickling in a worker): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._ds, name)

    def image(self, image_id: str) -> np.ndarray:
        img = self._ds.image(image_id)
        self.last = (image_id, img.shape[:2])
        return img


def _checked_mask_fn(mask_fn: Callable[[str], np.ndarray], proxy: _RememberShape, num_classes: int):
    def fn(image_id: str) -> np.ndarray:
        mask = np.asarray(mask_fn(image_id))
        if mask.ndim != 2:
            raise DataError(f"training mask of {image_id}: expected (H, W), got shape {mask.shape}")
        if proxy.last is not None and proxy.last[0] == image_id and tuple(mask.shape) != tuple(proxy.last[1]):
            h, w = proxy.last[1]
            raise DataError(f"training mask of {image_id} is {mask.shape[1]}x{mask.shape[0]}, "
                            f"its image is {w}x{h}")
        bad = (mask >= num_classes) & (mask != VOID)
        if bad.any():
            raise DataError(f"training mask of {image_id}: class id {int(mask[bad].max())} out of range "
                            f"(0..{num_classes - 1} or {VOID})")
        return mask.astype(np.uint8)

    return fn


def _param_groups(model: Segmenter, cfg: SegConfig) -> list[dict]:
    """Backbone at ``lr``; everything after it (ASPP, decoder, classifier) at ``lr * head_lr_mult``."""
    backbone = getattr(model.net, "backbone", None)
    body = list(backbone.parameters()) if backbone is not None else []
    body_ids = {id(p) for p in body}
    head = [p for p in model.parameters() if id(p) not in body_ids]
    groups = [{"params": body, "lr": cfg.lr}] if body else []
    return groups + [{"params": head, "lr": cfg.lr * (cfg.head_lr_mult if body else 1.0)}]


def train_segmenter(train_ds, mask_fn: Callable[[str], np.ndarray], val_ds, cfg: SegConfig, out: Path,
                    device: torch.device, seed: int = 0, progress: bool = True) -> dict:
    """Train a segmenter on ``mask_fn``'s masks and save the checkpoint ``out``.

    Args:
        train_ds: dataset (``ids``, ``image(id)``, ``labels(id)``, ``classes``, ``num_classes`` = K).
        mask_fn: ``image_id -> uint8 (H, W)`` training mask (pseudo-mask or ground truth), 255 ignored.
        val_ds: dataset scored on its ground-truth masks (``None``: no evaluation).
        cfg: :class:`~wsss.config.SegConfig`.
        out: checkpoint path (``model``, ``arch``, ``num_classes`` = K + 1, ``classes``, ``output_stride``,
            ``result``), written atomically by rank 0.

    Returns:
        ``{"val_miou", "per_class_iou", "seconds", "epochs", "loss_history", ...}``; scores are fractions.
    """
    if min(cfg.batch_size, len(train_ds.ids)) < 2:
        raise ConfigError("segmenter training needs batches of >= 2 images (batch norm): "
                          f"batch_size {cfg.batch_size}, {len(train_ds.ids)} training image(s)")
    distributed = init_distributed(device)
    torch.manual_seed(seed)
    num_classes = train_ds.num_classes + 1
    model = place(create_segmenter(cfg.arch, num_classes, pretrained=cfg.pretrained,
                                   output_stride=cfg.output_stride), device)
    crop = train_crop(train_ds, cfg.crop)
    proxy = _RememberShape(train_ds)
    data = TrainSet(proxy, crop, cfg.scale, cfg.flip, seed=seed,
                    mask_fn=_checked_mask_fn(mask_fn, proxy, num_classes))
    sampler = DistributedSampler(data, seed=seed, drop_last=True) if distributed else None
    g = torch.Generator().manual_seed(seed)
    # drop_last keeps batch-norm away from a last batch of one image (torchvision's ASPP pooling needs two).
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=len(data) > cfg.batch_size, generator=g)
    groups = _param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    t0 = time.time()

    def batch_loss(batch):
        images, masks = batch[0].to(device, non_blocking=True), batch[2].to(device, non_blocking=True)
        # Sum over labelled pixels / their count: a batch with no labelled pixel gives 0, not NaN.
        loss = F.cross_entropy(model(images), masks, ignore_index=VOID, reduction="sum")
        return loss / (masks != VOID).sum().clamp_min(1)

    history = run_epochs(model, data, loader, opt, cfg.epochs, batch_loss, device, "train-seg", progress,
                         sampler=sampler, schedule="poly")
    net = unwrap(model)
    train_seconds = time.time() - t0
    scores = {"val_miou": None, "per_class_iou": None}
    if val_ds is not None and is_main():
        scores = evaluate_segmenter(net, val_ds, scales=cfg.eval_scales, flip=cfg.eval_flip,
                                    progress=progress)
    result = {**scores, "seconds": time.time() - t0, "train_seconds": train_seconds, "epochs": cfg.epochs,
              "loss_history": history, "arch": cfg.arch, "world_size": world_size()}
    save_checkpoint(out, model=net.state_dict(), arch=cfg.arch, num_classes=num_classes,
                    classes=list(train_ds.classes), output_stride=cfg.output_stride, result=result)
    return result


def evaluate_segmenter(model: torch.nn.Module, ds, scales: Sequence[float] = (1.0,), flip: bool = False,
                       progress: bool = False) -> dict:
    """mIoU of ``model``'s predictions against ``ds``'s ground-truth masks (void 255 ignored).

    Returns ``{"val_miou": float, "per_class_iou": {"0": iou or None, ...}}``.
    """
    cm = ConfusionMatrix(ds.num_classes + 1)
    for image_id in progress_bar(ds.ids, desc="eval-seg", disable=not progress, leave=False):
        image, gt = ds.image(image_id), ds.mask(image_id)
        if gt.shape != image.shape[:2]:
            raise DataError(f"mask of {image_id} is {gt.shape[1]}x{gt.shape[0]}, "
                            f"its image is {image.shape[1]}x{image.shape[0]}")
        cm.update(predict(model, image, scales, flip), gt)
    return {"val_miou": cm.miou(), "per_class_iou": cm.per_class_iou()}


def load_segmenter(path: Path, device: torch.device | str = "cpu") -> Segmenter:
    """Rebuild a trained segmenter from its checkpoint (``weights_only=True``), in eval mode.

    The model carries ``classes`` (names, background first) when the checkpoint has them.
    """
    ckpt = load_checkpoint(path, "segmenter", ("model", "arch", "num_classes"), command="wsss train-seg")
    model = create_segmenter(ckpt["arch"], ckpt["num_classes"], output_stride=ckpt.get("output_stride"))
    model.load_state_dict(ckpt["model"])
    model.classes = tuple(ckpt["classes"]) if ckpt.get("classes") else None
    return place(model, device).eval()


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,),
                  flip: bool = False) -> torch.Tensor:
    """Softmax ``(C, H, W)`` float32 on the model's device, averaged over ``scales`` (and horizontal flips).

    ``image``: uint8 ``(H, W, 3)``. The model runs in eval mode and is left in the mode it was given.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = to_tensor(image)[None].to(device)
        h, w = x.shape[-2:]
        total = None
        for s in scales:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            if flip:
                xs = torch.cat([xs, xs.flip(-1)])
            probs = model(xs).softmax(1)
            if flip:
                probs = probs[:1] + probs[1:].flip(-1)
            if probs.shape[-2:] != (h, w):
                probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
        return total[0] / (len(scales) * (2 if flip else 1))
    finally:
        model.train(was_training)


def predict(model: torch.nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,),
            flip: bool = False) -> np.ndarray:
    """uint8 ``(H, W)`` class ids: argmax of :func:`predict_probs`."""
    return predict_probs(model, image, scales, flip).argmax(0).to(torch.uint8).cpu().numpy()


def overlay_image(image: np.ndarray, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 ``(H, W, 3)``: the image with foreground pixels blended with their VOC palette colour."""
    from wsss.labelio import VOC_PALETTE

    colours = VOC_PALETTE[mask].astype(np.float32)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours
    out = np.where((mask > 0)[..., None], blend, image.astype(np.float32))
    return out.round().clip(0, 255).astype(np.uint8)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    import os

    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, path)


def predict_paths(ckpt_path: Path, inputs: Sequence[str | Path], out_dir: Path,
                  scales: Sequence[float] = (1.0,), flip: bool = False, overlay: bool = False,
                  device: torch.device | str = "cpu", progress: bool = False) -> list[Path]:
    """Segment image files (or folders of images) with a trained segmenter.

    Writes ``<out_dir>/<stem>.png`` (palette PNG of class ids) and, with ``overlay``,
    ``<out_dir>/<stem>_overlay.jpg``. Grayscale, palette and RGBA images are converted to RGB; an unreadable
    image raises :class:`DataError` naming the file (masks already written stay). Returns the mask paths.
    """
    from wsss.data.voc import read_image
    from wsss.labelio import save_label_png

    if isinstance(device, str):
        device = resolve_device(device)
    out_dir = Path(out_dir)
    for p in (out_dir, *out_dir.parents):
        if p.exists() and not p.is_dir():
            raise DataError(f"{p}: is a file, not a folder (--out must name the folder the masks go to)")
    files = image_files(inputs)
    model = load_segmenter(Path(ckpt_path), device)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for f in progress_bar(files, desc="predict", disable=not progress, leave=False):
        image = read_image(f)
        mask = predict(model, image, scales, flip)
        dest = out_dir / f"{f.stem}.png"
        save_label_png(dest, mask)
        if overlay:
            _save_jpeg(out_dir / f"{f.stem}_overlay.jpg", overlay_image(image, mask))
        written.append(dest)
    return written
