"""AMN training (``wsss train-amn``), following the official code (gaviotas/AMN, ``step/train_amn.py``).

Labels: IRN's ``cam_to_ir_label`` applied to a method's maps (confident foreground / confident
background / ignored), optionally refined by dense CRF. Loss: per-pixel cross-entropy against a
smoothed one-hot target, averaged separately over background and foreground pixels. Adam with a small
backbone learning rate and a larger one for the new layers, constant (no schedule), as the official code.

Deviations from the official code (see also :mod:`wsss.localize.amn`):

- the loss upsamples the logits (bilinear) to the label size; the official code downsamples the labels
  (nearest) to the logit size. On small images (a 4x4 logit map for a 32-px crop at stride 8) the
  downsampled label keeps almost nothing of the label.
- a batch with no foreground (or no background) pixel uses the other average alone (the official code
  gives NaN there); a batch with neither gives 0.
- the backbone is the trained classifier's ``features`` (official: ImageNet ResNet-50); the ASPP rates
  are scaled to the feature-map side on small images (:func:`wsss.models.amn.aspp_rates_for`).
- no per-epoch validation pass (the official code scores train-split argmax masks after each epoch, for
  logging only).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss import models
from wsss.config import AMNConfig
from wsss.errors import ConfigError, DataError, RunDirError, WsssError
from wsss.mapsio import load_maps
from wsss.models.amn import AMN, aspp_rates_for, build_amn
from wsss.pseudo import normalize_maps
from wsss.runtime import init_distributed, place, world_size
from wsss.train.common import (
    TrainSet,
    ddp,
    freeze_batchnorm,
    label_fractions,
    load_checkpoint,
    loader,
    maps_folder,
    run_epochs,
    save_checkpoint,
    train_crop,
)

IGNORE = 255


# ---- labels ----------------------------------------------------------------------------------------------
def ir_labels(norm_maps: np.ndarray, classes: np.ndarray, fg: float = 0.30, bg: float = 0.05,
              image: np.ndarray | None = None, crf: bool = False, crf_sxy: float | None = 50) -> np.ndarray:
    """IRN's ``cam_to_ir_label``: confident foreground, confident background, the rest ignored.

    Args:
        norm_maps: ``(K', H, W)`` normalized maps in [0, 1] of the present classes.
        classes: ``(K',)`` their class ids (1..K).
        fg: a pixel is confident foreground of ``classes[argmax]`` where its top map value is > ``fg``.
        bg: a pixel is confident background where every map is <= ``bg``.
        image: uint8 ``(H, W, 3)``, needed for ``crf``.
        crf: refine the foreground label map and the background label map separately by dense CRF
            before combining them (IRN); needs the ``crf`` extra.
        crf_sxy: the CRF's bilateral width (:func:`wsss.crf.crf_refine_labels`; ``None``: scaled to the image).
    Returns:
        uint8 ``(H, W)``: 0 background, class ids, 255 ignored.

    As IRN, each label map is ``argmax([thr, m_1, ..., m_K'])``, so a tie with the threshold goes to
    background (foreground needs a value strictly above ``fg``; background takes values equal to ``bg``).
    """
    maps = np.asarray(norm_maps, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if maps.ndim != 3 or maps.shape[0] != classes.shape[0]:
        raise ValueError(f"ir_labels: {maps.shape} maps for {classes.shape[0]} class ids")
    if not 0 <= bg <= fg:
        raise ValueError(f"ir_labels: need 0 <= bg <= fg, got bg={bg}, fg={fg}")
    keys = np.concatenate([[0], classes])
    refine = None
    if crf:
        if image is None:
            raise ValueError("ir_labels: crf=True needs the image")
        if image.shape[:2] != maps.shape[1:]:
            raise ValueError(f"ir_labels: image {image.shape[:2]} and maps {maps.shape[1:]} differ in size")
        from wsss.crf import crf_refine_labels

        refine = crf_refine_labels
        image = np.array(image, dtype=np.uint8, order="C")  # a writable copy (pydensecrf rejects read-only)

    def confident(threshold: float) -> np.ndarray:
        padded = np.concatenate([np.full((1, *maps.shape[1:]), threshold, np.float32), maps])
        idx = padded.argmax(axis=0)
        if refine is not None and len(keys) > 1:
            idx = np.asarray(refine(image, idx, len(keys), sxy_bilateral=crf_sxy))
        return keys[idx]

    fg_conf = confident(fg)
    bg_conf = confident(bg)
    out = fg_conf.astype(np.uint8)
    out[fg_conf == 0] = IGNORE
    out[(fg_conf == 0) & (bg_conf == 0)] = 0
    return out


def use_crf(cfg: AMNConfig) -> bool:
    """``amn.crf``: True / False, or ``"auto"`` = refine when the ``[crf]`` extra is installed."""
    if cfg.crf == "auto":
        from wsss.crf import crf_available

        return crf_available()
    return bool(cfg.crf)


class IRLabels:
    """``image id -> ir_labels(...)`` of ``maps_dir/<id>.npz``, computed on first use and kept in memory.

    Args:
        maps_dir: a method's map folder (``RUN/maps/<method>``).
        fg, bg: thresholds of :func:`ir_labels`.
        normalization: how the raw maps are normalized first (``max``: IRN's convention).
        crf: dense-CRF refinement (needs ``dataset`` for the images).
        crf_sxy: its bilateral width (:func:`ir_labels`).
        dataset: the dataset the ids come from (``image(id)``); needed for ``crf``, and used to check
            that maps and images have the same size.
        missing_ok: give ``None`` for an image without stored maps (AMN inference on images outside the
            training split) instead of an error.
    """

    def __init__(self, maps_dir: str | Path, fg: float = 0.30, bg: float = 0.05, normalization: str = "max",
                 crf: bool = False, dataset=None, missing_ok: bool = False, crf_sxy: float | None = 50):
        if crf and dataset is None:
            raise ValueError("IRLabels: crf=True needs the dataset (for the images)")
        self.maps_dir, self.fg, self.bg = Path(maps_dir), float(fg), float(bg)
        self.normalization, self.crf, self.dataset = normalization, bool(crf), dataset
        self.missing_ok, self.crf_sxy = bool(missing_ok), crf_sxy
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, maps_dir: str | Path, cfg: AMNConfig, dataset=None, missing_ok: bool = False) -> IRLabels:
        return cls(maps_dir, cfg.fg_threshold, cfg.bg_threshold, cfg.normalization, use_crf(cfg), dataset, missing_ok,
                   crf_sxy=cfg.crf_sxy)

    def path(self, image_id: str) -> Path:
        return self.maps_dir / f"{image_id}.npz"

    def __call__(self, image_id: str) -> np.ndarray | None:
        image_id = str(image_id)
        if self.missing_ok and not self.path(image_id).exists():
            return None
        if image_id not in self._cache:
            maps, classes = load_maps(self.path(image_id))
            image = self.dataset.image(image_id) if self.crf else None
            if image is not None and image.shape[:2] != maps.shape[1:]:
                raise DataError(f"{self.path(image_id)}: maps are {maps.shape[2]}x{maps.shape[1]}, "
                                f"image is {image.shape[1]}x{image.shape[0]}")
            norm = normalize_maps(maps, self.normalization)
            self._cache[image_id] = ir_labels(norm, classes, self.fg, self.bg, image=image, crf=self.crf,
                                               crf_sxy=self.crf_sxy)
        return self._cache[image_id]


# ---- loss ------------------------------------------------------------------------------------------------
def amn_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 0.4) -> torch.Tensor:
    """AMN's balanced cross-entropy with a smoothed target.

    Args:
        logits: ``(B, C, h, w)``, C = K+1 (background first); bilinearly upsampled to the label size.
        target: ``(B, H, W)`` integer labels, 255 ignored.
        eps: the target is ``1 - eps`` for the label class and ``eps / (C - 1)`` for every other class
            (not ``F.cross_entropy(label_smoothing=eps)``, which spreads ``eps / C`` over all classes).
    Returns:
        a scalar: the mean cross-entropy over background pixels and the mean over foreground pixels,
        averaged; one of them alone when the batch has no pixel of the other kind; 0 (with a graph)
        when every pixel is ignored.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    c = logits.shape[1]
    logp = F.log_softmax(logits.float(), dim=1)
    target = target.long()
    valid = target != IGNORE
    idx = torch.where(valid, target, torch.zeros_like(target))
    logp_label = logp.gather(1, idx[:, None])[:, 0]
    logp_rest = logp.sum(1) - logp_label
    ce = -((1 - eps) * logp_label + eps / (c - 1) * logp_rest)
    is_bg = (target == 0).float()
    is_fg = (valid & (target != 0)).float()
    n_bg, n_fg = is_bg.sum(), is_fg.sum()
    loss_bg = (ce * is_bg).sum() / n_bg.clamp_min(1)
    loss_fg = (ce * is_fg).sum() / n_fg.clamp_min(1)
    has_bg, has_fg = (n_bg > 0).float(), (n_fg > 0).float()
    # no host sync: the weights pick the available averages
    return (loss_bg * has_bg + loss_fg * has_fg) / (has_bg + has_fg).clamp_min(1)


# ---- training --------------------------------------------------------------------------------------------
def fit_amn(train_ds, maps_dir: Path, classifier: nn.Module, cfg: AMNConfig, device: torch.device,
            seed: int = 0, progress: bool = True) -> tuple[AMN, dict]:
    """Train AMN on IR labels from ``maps_dir`` and return ``(model in eval mode, result)``; nothing is
    saved (see :func:`train_amn`)."""
    distributed = init_distributed(device)
    maps_dir = maps_folder(maps_dir, cfg.from_maps)
    t0 = time.time()
    labels = IRLabels.from_config(maps_dir, cfg, dataset=train_ds)
    fractions, t_labels = label_fractions(train_ds, labels, "amn labels", progress)

    torch.manual_seed(seed)
    model = build_amn(classifier)
    crop = train_crop(train_ds, cfg.crop)
    rates = tuple(cfg.aspp_rates) if cfg.aspp_rates else aspp_rates_for(math.ceil(crop / model.stride))
    model.fix_rates(rates)
    if cfg.freeze_stem and hasattr(model.backbone, "stem"):
        for p in model.backbone.stem.parameters():
            p.requires_grad_(False)
    model = place(model, device)
    data = TrainSet(train_ds, crop, cfg.scale, cfg.flip, seed=seed, mask_fn=labels, where=labels.path)
    batches, sampler = loader(data, cfg.batch_size, cfg.num_workers, seed, distributed)
    body, new = model.param_groups()
    opt = torch.optim.Adam([{"params": body, "lr": cfg.lr_backbone, "weight_decay": cfg.weight_decay},
                            {"params": new, "lr": cfg.lr_head, "weight_decay": cfg.weight_decay}])
    net, model = model, ddp(model, device, distributed)

    def batch_loss(batch):
        images, image_labels, target = (t.to(device, non_blocking=True) for t in batch)
        return amn_loss(model(images, image_labels), target, cfg.smoothing)

    history = run_epochs(model, data, batches, opt, cfg.epochs, batch_loss, device, "train-amn", progress,
                         sampler=sampler, on_train=(lambda: freeze_batchnorm(net.backbone)) if cfg.freeze_bn else None)
    net.eval()
    result = {
        "loss_history": history, "seconds": time.time() - t0, "seconds_labels": t_labels,
        "epochs": cfg.epochs,
        "crf": labels.crf, "labels_from": cfg.from_maps, "normalization": cfg.normalization,
        "fg_threshold": cfg.fg_threshold, "bg_threshold": cfg.bg_threshold, "smoothing": cfg.smoothing,
        "label_fractions": fractions,
        "rates": list(rates), "crop": crop, "images": len(train_ds.ids), "world_size": world_size(),
    }
    return net, result


def train_amn(train_ds, maps_dir: Path, classifier: nn.Module, cfg: AMNConfig, out: Path,
              device: torch.device, seed: int = 0, progress: bool = True, arch: str | None = None,
              arch_kwargs: dict | None = None) -> dict:
    """Train AMN (:func:`fit_amn`) and save ``out`` atomically; return the result dict.

    The checkpoint holds ``model`` (AMN state_dict), ``num_classes``, ``arch`` + ``arch_kwargs`` (the
    classifier architecture the backbone is rebuilt from), ``rates`` and ``result``. ``arch`` is
    found from ``classifier`` when not given (see :func:`classifier_spec`).
    """
    arch, arch_kwargs = classifier_spec(classifier, arch, arch_kwargs)
    net, result = fit_amn(train_ds, maps_dir, classifier, cfg, device, seed=seed, progress=progress)
    result["arch"] = arch
    save_checkpoint(Path(out), model=net.state_dict(), num_classes=net.num_classes, arch=arch,
                    arch_kwargs=arch_kwargs, rates=list(net.rates), result=result)
    return result


def classifier_spec(classifier: nn.Module, arch: str | None = None,
                    arch_kwargs: dict | None = None) -> tuple[str, dict]:
    """``(registry name, kwargs)`` that rebuild ``classifier``'s architecture with ``models.create``.

    Given ``arch`` is checked; else the classifier's ``arch`` / ``arch_kwargs`` attributes are used when
    present; else the registry is searched for the entry whose state_dict has the same keys and shapes
    and the same stride (``output_stride`` is passed to the entries that take it).
    """
    num_classes = int(classifier.num_classes)
    stride = int(classifier.stride)
    if arch is None and isinstance(getattr(classifier, "arch", None), str):
        arch, arch_kwargs = classifier.arch, getattr(classifier, "arch_kwargs", None)
    target = _signature(classifier)
    if arch is not None:
        candidates = [(arch, [dict(arch_kwargs or {})])]
    else:  # output_stride only for the entries that take it
        candidates = [(name, [{"output_stride": stride}, {}]) for name in models.available()]
    for name, options in candidates:
        for kwargs in options:
            try:
                with torch.device("meta"):  # shapes only: no memory, no weight init
                    net = models.create(name, num_classes, **kwargs)
            except TypeError:  # no output_stride argument: try the next option
                continue
            except (KeyError, ValueError, WsssError):
                break
            if int(getattr(net, "stride", -1)) == stride and _signature(net) == target:
                return name, kwargs
            break
    if arch is not None:
        raise ConfigError(f"classifier does not match architecture {arch!r} with {arch_kwargs or {}}")
    raise ConfigError("cannot tell which registered architecture the classifier is; pass arch=...")


def _signature(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def load_amn(path: str | Path, device: torch.device | str = "cpu") -> AMN:
    """Rebuild a trained AMN from its checkpoint (``weights_only=True``), in eval mode on ``device``."""
    path = Path(path)
    ckpt = load_checkpoint(path, "AMN", ("arch", "num_classes", "rates", "model"), command="wsss train-amn")
    try:
        arch, num_classes, rates = ckpt["arch"], int(ckpt["num_classes"]), tuple(ckpt["rates"])
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{path}: file is empty or corrupt (not an AMN checkpoint: {exc})") from exc
    classifier = models.create(arch, num_classes, **(ckpt.get("arch_kwargs") or {}))
    model = build_amn(classifier, rates=rates)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise RunDirError(f"{path}: weights do not fit the AMN ({str(exc).strip().splitlines()[0]})") from exc
    return place(model, device).eval()
