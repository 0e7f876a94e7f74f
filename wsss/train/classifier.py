"""Multi-label classifier training (``wsss train-cls``): BCE on image-level labels, DDP under torchrun."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from wsss import models
from wsss.config import ClassifierConfig
from wsss.data.transforms import to_tensor
from wsss.metrics import multilabel_map
from wsss.runtime import init_distributed, is_main, world_size
from wsss.shuffle import apply_plan, random_plans
from wsss.train.common import TrainSet, freeze_batchnorm, load_checkpoint, run_epochs, save_checkpoint, unwrap


def build_classifier(cfg: ClassifierConfig, num_classes: int, pretrained=None) -> torch.nn.Module:
    kwargs = {} if cfg.output_stride is None else {"output_stride": cfg.output_stride}
    return models.create(cfg.arch, num_classes, pretrained=pretrained if pretrained is not None else cfg.pretrained,
                         **kwargs)


def jigsaw_batch(images: torch.Tensor, p: float, grids: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Shuffle a fraction ``p`` of the batch with the same grids/offsets as the jigsaw maps."""
    n, _, h, w = images.shape
    pick = torch.rand(n, generator=generator) < p
    if not bool(pick.any()):
        return images
    idx = random_plans(h, w, int(pick.sum()), grids, generator).to(images.device)
    out = images.clone()
    out[pick.to(images.device)] = apply_plan(images[pick.to(images.device)], idx)
    return out


def freeze_features(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Stop training the named children of ``model.features`` (``requires_grad=False``); see
    ``ClassifierConfig.freeze``. Unknown names are an error listing the children."""
    children = dict(model.features.named_children())
    unknown = [n for n in names if n not in children]
    if unknown:
        from wsss.errors import ConfigError

        raise ConfigError(f"classifier.freeze: no feature stage(s) {unknown}; the model has {list(children)}")
    for name in names:
        for p in children[name].parameters():
            p.requires_grad_(False)


def train_classifier(train_ds, val_ds, cfg: ClassifierConfig, out: Path, device: torch.device, seed: int = 0,
                     progress: bool = True) -> dict:
    """Train and save ``out`` (a checkpoint with ``model``, ``arch``, ``num_classes``, ``val_map``)."""
    distributed = init_distributed(device)
    torch.manual_seed(seed)
    model = build_classifier(cfg, train_ds.num_classes).to(device)
    freeze_features(model, cfg.freeze)
    crop = cfg.crop or int(train_ds.image(train_ds.ids[0]).shape[0])
    data = TrainSet(train_ds, crop, cfg.scale, cfg.flip, seed=seed, resize_long=cfg.resize_long)
    sampler = DistributedSampler(data, seed=seed, drop_last=True) if distributed else None
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=len(data) >= 2 * cfg.batch_size, generator=g)
    head = [p for p in unwrap(model).classifier.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    groups = [{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    t0 = time.time()
    aug_gen = torch.Generator().manual_seed(seed + 17)

    def batch_loss(batch):
        images, labels = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if cfg.jigsaw_aug > 0:
            images = jigsaw_batch(images, cfg.jigsaw_aug, tuple(cfg.jigsaw_grids), aug_gen)
        return F.binary_cross_entropy_with_logits(model(images), labels)

    history = run_epochs(model, data, loader, opt, cfg.epochs, batch_loss, device, "train-cls", progress,
                         sampler=sampler, schedule=cfg.schedule,
                         on_train=(lambda: freeze_batchnorm(model)) if cfg.freeze_bn else None)
    net = unwrap(model)
    val_map = evaluate_map(net, val_ds, device) if val_ds is not None and is_main() else None
    result = {"val_map": val_map, "loss_history": history, "seconds": time.time() - t0, "epochs": cfg.epochs,
              "arch": cfg.arch, "name": cfg.name, "jigsaw_aug": cfg.jigsaw_aug, "world_size": world_size()}
    save_checkpoint(out, model=net.state_dict(), arch=cfg.arch, num_classes=net.num_classes,
                    output_stride=cfg.output_stride, result=result)
    return result


@torch.no_grad()
def evaluate_map(model: torch.nn.Module, ds, device: torch.device, batch_size: int = 32) -> float:
    """Macro mAP of image-level predictions on a split (classes with no positives skipped)."""
    model.eval()
    scores, labels = [], []
    batch: list[torch.Tensor] = []

    def flush():
        if batch:
            scores.append(torch.sigmoid(model(torch.stack(batch).to(device))).cpu())
            batch.clear()

    for image_id in ds.ids:
        img = to_tensor(ds.image(image_id))
        if batch and img.shape != batch[0].shape:
            flush()
        batch.append(img)
        labels.append(ds.labels(image_id))
        if len(batch) == batch_size:
            flush()
    flush()
    return float(multilabel_map(torch.cat(scores).numpy(), np.stack(labels)))


def load_classifier(path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild a trained classifier from its checkpoint (``weights_only=True``)."""
    ckpt = load_checkpoint(path, "classifier", ("arch", "num_classes", "model"), command="wsss train-cls")
    kwargs = {} if ckpt.get("output_stride") is None else {"output_stride": ckpt["output_stride"]}
    model = models.create(ckpt["arch"], ckpt["num_classes"], **kwargs)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        from wsss.errors import RunDirError

        first = str(exc).strip().splitlines()[0]
        raise RunDirError(f"{path}: weights do not fit the classifier ({first})") from exc
    return model.to(device).eval()
