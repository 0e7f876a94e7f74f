"""Pieces the training loops share: the dataset wrapper, schedules, checkpoints."""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wsss.data.transforms import random_scale_crop, to_tensor
from wsss.errors import DataError, RunDirError
from wsss.models.checkpoint import load_checkpoint  # noqa: F401 (re-exported)
from wsss.progress import progress_bar
from wsss.runtime import is_main


class TrainSet(Dataset):
    """Images (+ masks from ``mask_fn`` when given) with flip/scale/crop; randomness from (seed, epoch, index).

    Items are ``(image (3, crop, crop) in [0,1], labels (K,), mask (crop, crop) long or -1 tensor)``; mask
    pixels outside the image after scaling are 255 (ignored). ``where(image_id)`` names the mask's file in
    the error when a mask and its image differ in size.
    """

    def __init__(
        self,
        ds,
        crop: int,
        scale,
        flip: bool,
        seed: int = 0,
        mask_fn=None,
        resize_long: tuple[int, int] | None = None,
        where=None,
    ):
        self.ds, self.crop, self.scale, self.flip, self.seed = ds, crop, scale, flip, seed
        self.mask_fn, self.resize_long = mask_fn, resize_long
        self.where = where or (lambda image_id: f"mask of {image_id}")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ds.ids)

    def __getitem__(self, i: int):
        image_id = self.ds.ids[i]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 100_003 + i)
        image = to_tensor(self.ds.image(image_id))
        mask = None
        if self.mask_fn is not None:
            mask = torch.from_numpy(self.mask_fn(image_id).astype(np.int64))
            if tuple(mask.shape) != tuple(image.shape[1:]):
                raise DataError(f"{self.where(image_id)}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                                f"image is {image.shape[2]}x{image.shape[1]}")
        if self.resize_long is not None:
            lo, hi = self.resize_long
            target = int(torch.randint(lo, hi + 1, (1,), generator=g))
            s = target / max(image.shape[-2:])
            size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[2] * s)))
            image = torch.nn.functional.interpolate(
                image[None], size=size, mode="bilinear", align_corners=False
            )[0]
            if mask is not None:
                mask = torch.nn.functional.interpolate(mask[None, None].float(), size=size, mode="nearest")[
                    0, 0
                ].long()
        image, mask = random_scale_crop(image, mask, self.crop, self.scale, self.flip, g)
        labels = torch.from_numpy(self.ds.labels(image_id))
        return image, labels, (mask if mask is not None else torch.tensor(-1))


CROP_CAP = 512
"""The largest crop side inferred from the data (IRN and DeepLab train on 512 px crops); a configured crop is
used as given."""


def train_crop(ds, crop: int | None = None, sample: int = 32) -> int:
    """The training crop side: ``crop`` when configured, else the median short side of up to ``sample`` images
    spread over the split (sizes from the file headers, after ``max_side``), at most :data:`CROP_CAP`: never the
    size of one image (a 1x1 or a 6000x6000 first image must not set it)."""
    if crop:
        return int(crop)
    from statistics import median_low

    ids = list(ds.ids)
    picked = ids[:: max(1, len(ids) // sample)][:sample]
    sides = [min(_image_hw(ds, i)) for i in picked]
    return int(min(CROP_CAP, median_low(sides)))


def _image_hw(ds, image_id: str) -> tuple[int, int]:
    """(height, width) of an image as the dataset serves it, from its header when the dataset names its file."""
    from wsss.data.base import _scaled_size, image_size

    try:
        h, w = image_size(ds.image_path(image_id))
    except Exception:  # noqa: BLE001 - a dataset without files (tests, in-memory): decode it
        return tuple(ds.image(image_id).shape[:2])
    max_side = getattr(ds, "max_side", None)
    if max_side is not None and max(h, w) > max_side:
        w, h = _scaled_size(w, h, max_side)
    return h, w


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` (cosine, or IRN's poly 0.9)."""
    p = min(step / max(total, 1), 1.0)
    if schedule == "poly":
        return (1 - p) ** 0.9
    return 0.5 * (1 + math.cos(math.pi * p))


def save_checkpoint(path: Path, **payload) -> None:
    """Atomic ``torch.save`` (temp file + rename), rank 0 only. On failure the temp file is removed and the
    previous checkpoint, if any, is left as it was; a full disk is a :class:`RunDirError` naming the file."""
    if not is_main():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as f:  # a Python file: a full disk raises OSError(ENOSPC), not torch's RuntimeError
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _disk_full(exc):
            raise RunDirError(f"{path}: no space left on device while saving the checkpoint (nothing written; "
                              "free some space and rerun)") from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Put every batch-norm layer of ``module`` in eval mode (statistics frozen), after ``model.train()``."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def run_epochs(
    model: torch.nn.Module,
    data: TrainSet,
    loader,
    opt: torch.optim.Optimizer,
    epochs: int,
    batch_loss: Callable[[tuple], torch.Tensor],
    device: torch.device,
    desc: str,
    progress: bool = True,
    sampler=None,
    schedule: str | None = None,
    on_train: Callable[[], None] | None = None,
) -> list[float]:
    """The epoch loop the training commands share: per epoch, reseed the augmentation (``data.epoch``) and
    the distributed sampler, ``model.train()`` then ``on_train()`` (e.g. freeze batch norm); per batch, the
    learning rate of every parameter group set to its initial value x :func:`lr_factor` (``schedule`` None:
    constant), ``batch_loss(batch)``, backward, step. A progress bar on rank 0; returns the mean loss of
    every epoch."""
    base_lrs = [grp["lr"] for grp in opt.param_groups]
    total, step = epochs * len(loader), 0
    history: list[float] = []
    bar = progress_bar(total=total, desc=desc, disable=not (progress and is_main()), leave=False)
    for epoch in range(epochs):
        data.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        if on_train is not None:
            on_train()
        running = torch.zeros((), device=device)
        for batch in loader:
            if schedule is not None:
                for grp, base in zip(opt.param_groups, base_lrs, strict=True):
                    grp["lr"] = base * lr_factor(schedule, step, total)
            loss = batch_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach()
            step += 1
            bar.update(1)
        history.append(float(running) / max(len(loader), 1))
        bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.3f}")
    bar.close()
    return history


def label_fractions(train_ds, labels: Callable[[str], np.ndarray], desc: str, progress: bool) -> tuple[dict, float]:
    """Make every training image's IR label once (``labels``: id -> uint8 map, 0 background, 255 ignored) and
    return the shares of background / foreground / ignored pixels (rounded to 4 decimals) and the seconds."""
    t0 = time.time()
    counts = np.zeros(3, np.int64)
    for image_id in progress_bar(train_ds.ids, desc=desc, disable=not (progress and is_main()), leave=False):
        lab = labels(image_id)
        counts += [(lab == 0).sum(), ((lab != 0) & (lab != 255)).sum(), (lab == 255).sum()]
    total = max(int(counts.sum()), 1)
    shares = {k: round(float(v / total), 4) for k, v in zip(("background", "foreground", "ignored"), counts, strict=True)}
    return shares, time.time() - t0


def loader(data: TrainSet, batch_size: int, num_workers: int, seed: int, distributed: bool):
    """The training ``(DataLoader, sampler)``: seeded shuffling, or a DistributedSampler under torchrun; the
    last partial batch dropped when there are at least two full ones."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(data, seed=seed, drop_last=True) if distributed else None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=num_workers,
                      drop_last=len(data) >= 2 * batch_size, generator=g), sampler


def ddp(model: torch.nn.Module, device: torch.device, distributed: bool) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel under torchrun, else itself."""
    if not distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def maps_folder(maps_dir: str | Path, method: str) -> Path:
    """``maps_dir`` as a Path, or a RunDirError saying how to make the maps a network trains on."""
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise RunDirError(f"{maps_dir}: no maps (run `wsss maps --method {method}` on the training split)")
    return maps_dir
