"""Multi-label classifier training (``wsss train-cls``): image-level labels, the loss of a training recipe
(:mod:`wsss.train.recipes`, ``ClassifierConfig.recipe``; plain BCE by default), DDP under torchrun."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from wsss import models
from wsss.config import ClassifierConfig
from wsss.data.transforms import to_tensor
from wsss.metrics import multilabel_map
from wsss.models.checkpoint import load_classifier  # noqa: F401 (re-exported)
from wsss.runtime import init_distributed, is_main, place, world_size
from wsss.train.common import TrainSet, freeze_batchnorm, run_epochs, save_checkpoint, train_crop, unwrap
from wsss.train.recipes import create_recipe, jigsaw_batch, snapshot_path  # noqa: F401 (jigsaw_batch: re-export)


def build_classifier(cfg: ClassifierConfig, num_classes: int, pretrained=None) -> torch.nn.Module:
    kwargs = {} if cfg.output_stride is None else {"output_stride": cfg.output_stride}
    return models.create(cfg.arch, num_classes, pretrained=pretrained if pretrained is not None else cfg.pretrained,
                         **kwargs)


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
    model = place(build_classifier(cfg, train_ds.num_classes), device)
    freeze_features(model, cfg.freeze)
    crop = train_crop(train_ds, cfg.crop)
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
    steps_per_epoch = len(loader)
    recipe = create_recipe(cfg, seed, total_steps=cfg.epochs * steps_per_epoch)
    recipe.setup(train_ds, out, device)
    net = recipe.wrap(model)  # what the loss sees: the classifier (plain) or a CamNet around it
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    t0 = time.time()
    step = 0

    def batch_loss(batch):
        nonlocal step
        images, labels = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        loss = recipe.loss(net, images, labels, data.epoch, step)
        step += 1
        return loss

    snapshots: list[str] = []

    def epoch_end(epoch: int) -> None:  # 0-based epoch just finished
        if epoch + 1 in cfg.snapshot_epochs:
            path = snapshot_path(out, epoch + 1)
            save_checkpoint(path, model=model.state_dict(), arch=cfg.arch, num_classes=model.num_classes,
                            output_stride=cfg.output_stride, result={"epoch": epoch + 1, "recipe": cfg.recipe})
            snapshots.append(str(path))
        recipe.epoch_end(model, epoch, last=epoch == cfg.epochs - 1)

    # run_epochs has no end-of-epoch hook: the end of epoch e-1 runs at the start of epoch e (before any step of
    # it, after model.train()), the end of the last epoch after run_epochs returns
    hooks = bool(cfg.snapshot_epochs) or recipe.has_epoch_end

    def on_train():
        if hooks and data.epoch > 0:
            epoch_end(data.epoch - 1)
        if cfg.freeze_bn:
            freeze_batchnorm(model)

    history = run_epochs(net, data, loader, opt, cfg.epochs, batch_loss, device, "train-cls", progress,
                         sampler=sampler, schedule=cfg.schedule,
                         on_train=on_train if hooks or cfg.freeze_bn else None)
    if hooks and cfg.epochs > 0:
        epoch_end(cfg.epochs - 1)
    val_map = evaluate_map(model, val_ds, device) if val_ds is not None and is_main() else None
    result = {"val_map": val_map, "loss_history": history, "seconds": time.time() - t0, "epochs": cfg.epochs,
              "arch": cfg.arch, "name": cfg.name, "jigsaw_aug": cfg.jigsaw_aug, "world_size": world_size(),
              "recipe": cfg.recipe}
    if snapshots:
        result["snapshots"] = snapshots
    save_checkpoint(out, model=model.state_dict(), arch=cfg.arch, num_classes=model.num_classes,
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
