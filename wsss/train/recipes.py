"""Training recipes for the classifier: what the loss of one training step is (``ClassifierConfig.recipe``).

Every recipe has the same interface, which :func:`wsss.train.classifier.train_classifier` drives::

    recipe = create_recipe(cfg, seed, total_steps)
    net = recipe.wrap(model)                      # what is trained (and wrapped in DDP)
    recipe.setup(train_ds, out, device)           # once, before training
    loss = recipe.loss(net, images, labels, epoch, step)   # every step
    recipe.epoch_end(model, epoch, last)          # after every epoch (the bare classifier)

=====================  ===============================================================================
``plain``              BCE on the image logits; with ``jigsaw_aug > 0`` a fraction of the batch is
                       shuffled first (the legacy ``--jigsaw-aug``, bit-identical to before recipes)
``jigsaw-aug``         the same, ``jigsaw_aug > 0`` required
``puzzle``             Puzzle-CAM (Jo & Yu, ICIP 2021): BCE(image) + BCE(GAP of the merged tile CAMs)
                       + alpha * L1(image CAMs, merged tile CAMs) on present classes
``jigsaw-consistency`` ours: Puzzle-CAM's idea with the jigsaw localizer's random shuffles (grids,
                       offsets, permutations): BCE(image) + BCE(shuffled) + alpha * L1(image CAMs,
                       un-shuffled CAMs of the shuffled view) on present classes, where the shuffle covers
                       the original
``oaa``                BCE, plus online attention accumulation (Jiang et al., ICCV 2019): the running
                       element-wise max of each training image's normalized CAMs, see :class:`AttentionBank`
=====================  ===============================================================================

Accumulation over the training trajectory (ours, any recipe): ``ClassifierConfig.snapshot_epochs`` saves
checkpoints (:func:`snapshot_path`); :class:`TrajectoryMaps` / :func:`trajectory_maps` average max-normalized
maps of any registered localizer over them.

CAMs here are the raw class activation maps ``classifier(features)`` at feature resolution (no ReLU, no
normalization: Puzzle-CAM's default ``--level feature``); the image logits of the CAM recipes are their
spatial mean (equal to ``model(images)`` up to rounding, the head being linear without bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss.config import ClassifierConfig
from wsss.errors import ConfigError
from wsss.localize.trained import AttentionBank, TrajectoryMaps, trajectory_maps  # noqa: F401 (re-exported)
from wsss.shuffle import apply_plan, random_plans

__all__ = [
    "RECIPES", "create_recipe", "Recipe", "Plain", "Puzzle", "JigsawConsistency", "OAA", "CamNet",
    "alpha_at", "jigsaw_batch", "tile_images", "merge_tiles", "feature_plan", "invert_plan", "masked_l1",
    "AttentionBank", "image_attention", "oaa_bank_path", "write_oaa_maps", "snapshot_path", "TrajectoryMaps",
    "trajectory_maps",
]

FILL = 0.5  # value of the padding pixels of a shuffle (as the jigsaw localizer)


# ---- shared pieces ---------------------------------------------------------------------------------------
def alpha_at(step: int, total: int, alpha: float, ramp: float) -> float:
    """Weight of the consistency term at ``step`` (0-based) of ``total``: linear from 0 to ``alpha`` over the
    first ``ramp`` fraction of the steps, then ``alpha`` (Puzzle-CAM's ``alpha_schedule``; ``ramp <= 0``:
    constant)."""
    if ramp <= 0:
        return float(alpha)
    return float(alpha) * min(step / max(total * ramp, 1e-12), 1.0)


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


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


def masked_l1(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``mean |a - b|`` over all ``B*K*h*w`` elements with absent classes (and ``valid == 0`` positions)
    zeroed: Puzzle-CAM's ``re_loss_option="masking"`` (absent classes count in the denominator).

    ``a, b``: ``(B, K, h, w)``; ``labels``: ``(B, K)``; ``valid``: ``(B, h, w)`` or None.
    """
    mask = labels[:, :, None, None].to(a.dtype)
    if valid is not None:
        mask = mask * valid[:, None].to(a.dtype)
    return ((a - b).abs() * mask).mean()


class CamNet(nn.Module):
    """The classifier seen by the CAM recipes: ``forward(*inputs)`` returns ``[(logits, cams), ...]``, one
    pair per input batch, from ONE call (so a DistributedDataParallel wrapper sees one forward per step).
    ``cams = classifier(features(x))`` ``(B, K, h, w)``, raw; ``logits = cams.mean((2, 3))``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outs = []
        for x in inputs:
            cams = self.model.classifier(self.model.forward_features(x))
            outs.append((cams.mean(dim=(2, 3)), cams))
        return outs


def _bare(net: nn.Module) -> nn.Module:
    """The classifier inside a (DDP-wrapped) CamNet or the classifier itself."""
    net = net.module if hasattr(net, "module") else net
    return net.model if isinstance(net, CamNet) else net


# ---- recipes ---------------------------------------------------------------------------------------------
class Recipe:
    """Base recipe: plain BCE. Subclasses override :meth:`loss` (and :meth:`wrap`, :meth:`setup`,
    :meth:`epoch_end` when they need them). ``self.terms`` holds the last step's loss terms (detached)."""

    name = "plain"
    #: whether :meth:`epoch_end` does anything (train_classifier only installs the hook when needed)
    has_epoch_end = False

    def __init__(self, cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1):
        self.cfg, self.seed, self.total_steps = cfg, int(seed), max(int(total_steps), 1)
        self.terms: dict[str, torch.Tensor] = {}

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that :meth:`loss` receives (and that DDP wraps)."""
        return model

    def setup(self, train_ds, out: Path | None, device: torch.device | str) -> None:
        """Called once before training with the training set and the checkpoint path."""

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        raise NotImplementedError

    def epoch_end(self, model: nn.Module, epoch: int, last: bool) -> None:
        """After epoch ``epoch`` (0-based) with the bare classifier; ``last``: the final epoch."""

    def alpha(self, step: int) -> float:
        return alpha_at(step, self.total_steps, self.cfg.alpha, self.cfg.ramp)


class Plain(Recipe):
    """BCE; with ``jigsaw_aug > 0`` a fraction of the batch shuffled first. The shuffle generator is seeded
    ``seed + 17`` and drawn exactly as before recipes existed, so runs are bit-identical."""

    name = "plain"

    def __init__(self, cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1):
        super().__init__(cfg, seed, total_steps)
        self.aug_gen = torch.Generator().manual_seed(self.seed + 17)

    def loss(self, model, images, labels, epoch, step):
        if self.cfg.jigsaw_aug > 0:
            images = jigsaw_batch(images, self.cfg.jigsaw_aug, tuple(self.cfg.jigsaw_grids), self.aug_gen)
        out = bce(model(images), labels)
        self.terms = {"cls": out.detach()}
        return out


class JigsawAug(Plain):
    name = "jigsaw-aug"

    def __init__(self, cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1):
        if cfg.jigsaw_aug <= 0:
            raise ConfigError("classifier.recipe jigsaw-aug needs classifier.jigsaw_aug > 0 (the shuffled fraction)")
        super().__init__(cfg, seed, total_steps)


def tile_images(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(grid*grid*B, C, H/grid, W/grid)``: the non-overlapping tiles, tile-major (rows of
    tiles top to bottom, left to right; all images' tile 0 first). ``H, W`` must be divisible by ``grid``."""
    b, c, h, w = x.shape
    if h % grid or w % grid:
        raise ValueError(f"a {h}x{w} input does not split into a {grid}x{grid} grid of tiles")
    t = x.reshape(b, c, grid, h // grid, grid, w // grid).permute(2, 4, 0, 1, 3, 5)
    return t.reshape(grid * grid * b, c, h // grid, w // grid)


def merge_tiles(t: torch.Tensor, grid: int) -> torch.Tensor:
    """Inverse of :func:`tile_images`: ``(grid*grid*B, C, h, w)`` -> ``(B, C, grid*h, grid*w)``."""
    n, c, h, w = t.shape
    b = n // (grid * grid)
    x = t.reshape(grid, grid, b, c, h, w).permute(2, 3, 0, 4, 1, 5)
    return x.reshape(b, c, grid * h, grid * w)


class Puzzle(Recipe):
    """Puzzle-CAM. The reference (shjo-april/PuzzleCAM, defaults ``--level feature --re_loss L1_Loss
    --re_loss_option masking --alpha 4 --alpha_schedule 0.5 --num_pieces 4``): the tiles go through the whole
    network as one batch, their raw CAMs are merged in place, ``loss = BCE(logits) + BCE(GAP(merged)) +
    alpha * mean(|cams - merged| * present)``. Here the same; the crop must be a multiple of
    ``puzzle_grid * stride`` so that the merged map is exactly the image's feature grid."""

    name = "puzzle"

    def wrap(self, model):
        return CamNet(model)

    def loss(self, model, images, labels, epoch, step):
        g = int(self.cfg.puzzle_grid)
        stride = int(getattr(_bare(model), "stride", 1))
        h, w = images.shape[-2:]
        if h % (g * stride) or w % (g * stride):
            raise ConfigError(f"recipe puzzle: a {h}x{w} crop is not a multiple of puzzle_grid x stride = "
                              f"{g * stride}; set classifier.crop to a multiple of it")
        (logits, cams), (_, tile_cams) = model(images, tile_images(images, g))
        merged = merge_tiles(tile_cams, g)
        if merged.shape != cams.shape:
            raise ConfigError(f"recipe puzzle: merged tile CAMs {tuple(merged.shape[-2:])} differ from the image "
                              f"CAMs {tuple(cams.shape[-2:])} (feature size not input / stride)")
        cls, p_cls, re = bce(logits, labels), bce(merged.mean(dim=(2, 3)), labels), masked_l1(cams, merged, labels)
        a = self.alpha(step)
        self.terms = {"cls": cls.detach(), "p_cls": p_cls.detach(), "re": re.detach(), "alpha": torch.tensor(a)}
        return cls + p_cls + a * re


def feature_plan(index: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """The feature-resolution plan of a stride-aligned pixel shuffle.

    ``index``: ``(N, H*W)`` from ``random_plans(H, W, N, grids, gen, align=stride)`` with ``H, W`` multiples of
    ``stride``. Every ``stride x stride`` block of the shuffled image is then one whole block of the original
    (or padding), so reading the source of each block's top-left pixel gives, exactly, which feature cell of
    the original each feature cell of the shuffled image shows. Returns ``(N, h*w)`` (``h = H/stride``): the
    flat source cell, or ``h*w`` for padding — an index for :func:`wsss.shuffle.apply_plan` at ``(h, w)``.
    """
    if height % stride or width % stride:
        raise ValueError(f"{height}x{width} is not a multiple of the stride {stride}")
    n = index.shape[0]
    h, w = height // stride, width // stride
    top_left = index.view(n, height, width)[:, ::stride, ::stride].reshape(n, h * w)
    pad = top_left >= height * width
    cell = (top_left // width // stride) * w + (top_left % width) // stride
    return torch.where(pad, torch.full_like(cell, h * w), cell)


def invert_plan(index: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of a shuffle plan ``(N, size)`` (each source read at most once, ``size`` = padding): for each
    original position, the shuffled position showing it, or ``size`` where it is not shown. ``apply_plan(y,
    invert_plan(idx, h*w), fill)`` un-shuffles ``y = apply_plan(x, idx)`` (uncovered positions get ``fill``)."""
    n = index.shape[0]
    inv = torch.full((n, size + 1), size, dtype=torch.long, device=index.device)
    pos = torch.arange(size, device=index.device).expand(n, -1)
    inv.scatter_(1, index, pos)  # padding entries all land in the extra slot (discarded)
    return inv[:, :size]


class JigsawConsistency(Recipe):
    """Ours: every image also seen shuffled with the jigsaw localizer's random plans (``jigsaw_grids``,
    random offsets, random permutations, padding 0.5), aligned to the feature stride so that the un-shuffle is
    exact at feature resolution (:func:`feature_plan`, :func:`invert_plan`): ``loss = BCE(logits) +
    BCE(shuffled logits) + alpha * mean(|cams - unshuffle(shuffled cams)| * present * covered)``.

    Un-shuffling at feature resolution (not the upsampled CAM with the pixel plan) keeps the loss on the
    network's own grid, like Puzzle-CAM's; cells of the original that a padded shuffle crops out are
    excluded (``covered``). The shuffle draws come from a generator seeded ``seed + 29``."""

    name = "jigsaw-consistency"

    def __init__(self, cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1):
        super().__init__(cfg, seed, total_steps)
        self.gen = torch.Generator().manual_seed(self.seed + 29)

    def wrap(self, model):
        return CamNet(model)

    def loss(self, model, images, labels, epoch, step):
        b, _, h, w = images.shape
        stride = int(getattr(_bare(model), "stride", 1))
        if h % stride or w % stride:
            raise ConfigError(f"recipe jigsaw-consistency: a {h}x{w} crop is not a multiple of the stride "
                              f"{stride}; set classifier.crop to a multiple of it")
        idx = random_plans(h, w, b, tuple(self.cfg.jigsaw_grids), self.gen, offsets=True, align=stride,
                           device=images.device)
        shuffled = apply_plan(images, idx, FILL)
        (logits, cams), (s_logits, s_cams) = model(images, shuffled)
        hf, wf = h // stride, w // stride
        if tuple(cams.shape[-2:]) != (hf, wf):
            raise ConfigError(f"recipe jigsaw-consistency: CAMs are {tuple(cams.shape[-2:])}, not input / stride "
                              f"= {(hf, wf)}")
        inv = invert_plan(feature_plan(idx, h, w, stride), hf * wf)
        back = apply_plan(s_cams, inv, 0.0)
        covered = (inv < hf * wf).view(b, hf, wf)
        cls, s_cls = bce(logits, labels), bce(s_logits, labels)
        re = masked_l1(cams, back, labels, covered)
        a = self.alpha(step)
        self.terms = {"cls": cls.detach(), "s_cls": s_cls.detach(), "re": re.detach(), "alpha": torch.tensor(a)}
        return cls + s_cls + a * re


# ---- OAA ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def image_attention(model: nn.Module, ds, ids: Sequence, device, batch_size: int = 16):
    """Yield ``(image id, attention (K, h, w) in [0, 1], probabilities (K,))`` for the un-augmented full images
    of ``ds`` (batched by shape): ``ReLU(CAM)`` divided by its max per class (OAA's normalization), on CPU."""
    from wsss.data.transforms import to_tensor
    from wsss.localize.base import frozen

    with frozen(model):
        batch: list[torch.Tensor] = []
        batch_ids: list = []

        def flush():
            feats = model.forward_features(torch.stack(batch).to(device))
            probs = torch.sigmoid(model.forward_head(feats)).cpu()
            cams = torch.einsum("kd,bdhw->bkhw", model.classifier.weight.flatten(1), feats).relu()
            cams = cams / cams.flatten(2).amax(2).clamp_min(1e-8)[:, :, None, None]
            out = list(zip(list(batch_ids), cams.float().cpu(), probs, strict=True))
            batch.clear()
            batch_ids.clear()
            return out

        for image_id in ids:
            img = to_tensor(ds.image(image_id))
            if batch and img.shape != batch[0].shape:
                yield from flush()
            batch.append(img)
            batch_ids.append(image_id)
            if len(batch) == batch_size:
                yield from flush()
        if batch:
            yield from flush()


def oaa_bank_path(out: str | Path, rank: int = 0, world: int = 1) -> Path:
    """Where the OAA recipe keeps its bank: next to the checkpoint ``out`` (``<stem>.oaa.pt``; one file per
    rank under DDP, ``<stem>.oaa.rank<r>.pt``, each holding that rank's shard of the image ids)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.oaa.pt" if world <= 1 else f"{out.stem}.oaa.rank{rank}.pt")


class OAA(Plain):
    """Online attention accumulation. Training is plain BCE (``jigsaw_aug`` honoured as in ``plain``).

    Differences from the paper (which fuses the attention of the very view trained on, identified by its
    position in an un-shuffled loader): our training views are random crops / scales / flips, so a view's CAM
    has no fixed place in the image. Instead, at the end of every epoch once ``warmup_epochs`` epochs are
    trained, each training image is run un-augmented at full size (eval mode, no gradient) and its
    normalized CAMs are fused: one extra forward pass over the training set per epoch. As the paper, a class
    is fused only when it is among the image's top-|labels| predictions (``oaa_filter``), and after the last
    epoch a class never fused gets that epoch's map. The bank is saved after every accumulation
    (:func:`oaa_bank_path`); :func:`write_oaa_maps` writes it in the maps format.
    """

    name = "oaa"
    has_epoch_end = True

    def __init__(self, cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1):
        super().__init__(cfg, seed, total_steps)
        self.bank = AttentionBank()
        self.ds, self.path, self.device, self.ids = None, None, "cpu", []

    def setup(self, train_ds, out, device):
        from wsss.runtime import rank, world_size

        self.ds, self.device = train_ds, device
        self.ids = list(train_ds.ids)[rank():: world_size()]
        self.path = oaa_bank_path(out, rank(), world_size()) if out is not None else None

    def epoch_end(self, model, epoch, last):
        if self.ds is None:
            raise RuntimeError("OAA.setup(train_ds, out, device) was not called")
        if epoch + 1 < self.cfg.warmup_epochs and not last:
            return
        labels_of = self.ds.labels
        for image_id, att, probs in image_attention(model, self.ds, self.ids, self.device, self.cfg.batch_size):
            present = np.flatnonzero(labels_of(image_id) > 0)
            top = set(torch.argsort(probs, descending=True)[: len(present)].tolist())
            accumulate = epoch + 1 >= self.cfg.warmup_epochs
            for c in present.tolist():
                if (accumulate and (c in top or not self.cfg.oaa_filter)) or (last and not self.bank.has(image_id, c)):
                    self.bank.update(image_id, c, att[c])
        if self.path is not None:
            self.bank.save(self.path)


def write_oaa_maps(banks: AttentionBank | str | Path | Sequence, ds, out_dir: str | Path,
                   ids: Sequence | None = None) -> int:
    """Write accumulated attention as localization maps: ``out_dir/<id>.npz`` via :func:`wsss.mapsio.save_maps`
    (every present class, ids 1..K, bilinearly upsampled to the image's original size; a class without a map
    gets zeros). ``banks``: a bank, a bank file, or several (DDP shards, merged). Returns the files written.
    An image with present classes but nothing in the bank (not in the training split) is a DataError."""
    from wsss.mapsio import save_maps

    if isinstance(banks, AttentionBank):
        bank = banks
    else:
        paths = [banks] if isinstance(banks, (str, Path)) else list(banks)
        bank = AttentionBank()
        for p in paths:
            bank.merge(p if isinstance(p, AttentionBank) else AttentionBank.load(p))
    out_dir = Path(out_dir)
    written = 0
    for image_id in ds.ids if ids is None else ids:
        h, w = ds.image(image_id).shape[:2]
        classes = np.flatnonzero(ds.labels(image_id) > 0)
        entry = bank.get(image_id)
        if len(classes) and not entry:
            from wsss.errors import DataError

            raise DataError(f"image {image_id}: no accumulated attention (OAA maps exist for training images only)")
        maps = np.zeros((len(classes), h, w), np.float32)
        for j, c in enumerate(classes.tolist()):
            if c in entry:
                att = entry[c].float()[None, None]
                maps[j] = F.interpolate(att, size=(h, w), mode="bilinear", align_corners=False)[0, 0].clamp_min(0).numpy()
        save_maps(out_dir / f"{image_id}.npz", maps, classes + 1)
        written += 1
    return written


# ---- accumulation over the training trajectory ----------------------------------------------------------
def snapshot_path(out: str | Path, epoch: int) -> Path:
    """The checkpoint saved after (1-based) ``epoch`` when it is in ``snapshot_epochs``: ``<stem>.epoch003.pt``
    next to the final checkpoint ``out`` (same payload; :func:`wsss.train.classifier.load_classifier` reads it)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.epoch{int(epoch):03d}{out.suffix}")


# ---- registry ----------------------------------------------------------------------------------------------
RECIPES: dict[str, type[Recipe]] = {
    "plain": Plain, "jigsaw-aug": JigsawAug, "puzzle": Puzzle, "jigsaw-consistency": JigsawConsistency, "oaa": OAA,
}


def create_recipe(cfg: ClassifierConfig, seed: int = 0, total_steps: int = 1) -> Recipe:
    """The recipe named by ``cfg.recipe``. ``jigsaw_aug`` combines with plain / jigsaw-aug / oaa only."""
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"unknown classifier.recipe {cfg.recipe!r}; available: {', '.join(RECIPES)}")
    if cfg.jigsaw_aug > 0 and cfg.recipe in ("puzzle", "jigsaw-consistency"):
        raise ConfigError(f"classifier.jigsaw_aug does not combine with recipe {cfg.recipe}; set it to 0")
    if cfg.puzzle_grid < 1 or cfg.warmup_epochs < 0 or cfg.alpha < 0:
        raise ConfigError("classifier: puzzle_grid must be >= 1, warmup_epochs and alpha >= 0")
    return RECIPES[cfg.recipe](cfg, seed, total_steps)
