"""Maps made from what a classifier's training left next to its checkpoint (``requires="checkpoint"``).

==================  ==================================================================  =====================
``oaa``             OAA's accumulated attention (Jiang et al. ICCV 2019), the running    ``--recipe oaa``
                    max of each training image's CAMs over the epochs after the warm-up
``traj-cam``        CAM averaged over the training trajectory (ours, OAA-style):         ``snapshot_epochs``
                    the mean of the max-normalized CAMs of the snapshot checkpoints
``traj-saliency``   the same with gradient saliency                                      ``snapshot_epochs``
``traj-jigsaw``     the same with accumulated jigsaw saliency                            ``snapshot_epochs``
==================  ==================================================================  =====================

The maps stage builds them with ``checkpoint=<the classifier's checkpoint>`` (``RUN/classifier@<name>.pt``), so
``wsss maps --method oaa --classifier oaa`` reads ``RUN/classifier@oaa.oaa.pt`` and ``wsss maps --method traj-cam
--classifier jigsaw-consistency`` the snapshots recorded in ``classifier@jigsaw-consistency.pt``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch

from wsss.errors import ConfigError, DataError, RunDirError
from wsss.localize.base import Localizer, MethodSpec, upsample
from wsss.models.checkpoint import load_checkpoint, load_classifier


class AttentionBank:
    """Per image id and class index (0-based), the running element-wise max of normalized attention maps at
    feature resolution, on CPU as float16. :meth:`save` / :meth:`load` make it resumable."""

    def __init__(self):
        self.maps: dict[str, dict[int, torch.Tensor]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.maps.values())

    def has(self, image_id, cls: int) -> bool:
        return int(cls) in self.maps.get(str(image_id), {})

    def update(self, image_id, cls: int, att: torch.Tensor) -> None:
        """Fuse ``att`` ``(h, w)`` (in [0, 1]) by element-wise max (stored as-is the first time)."""
        att = att.detach().to("cpu", torch.float16)
        entry = self.maps.setdefault(str(image_id), {})
        old = entry.get(int(cls))
        if old is not None and old.shape != att.shape:
            raise ValueError(f"attention of {image_id} class {cls}: {tuple(att.shape)} vs stored {tuple(old.shape)}")
        entry[int(cls)] = att.clone() if old is None else torch.maximum(old, att)

    def get(self, image_id) -> dict[int, torch.Tensor]:
        return self.maps.get(str(image_id), {})

    def merge(self, other: AttentionBank) -> AttentionBank:
        for image_id, entry in other.maps.items():
            for cls, att in entry.items():
                self.update(image_id, cls, att)
        return self

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"maps": self.maps}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> AttentionBank:
        bank = cls()
        bank.maps = torch.load(Path(path), map_location="cpu", weights_only=True)["maps"]
        return bank


class TrajectoryMaps:
    """Maps accumulated over the classifier's training trajectory (ours, OAA-style): the mean over snapshot
    checkpoints of the maps of one registered localizer (``cam``, ``saliency``, ...), each divided by its max
    per image and class. Same ``attribute`` signature as a localizer (maps ``(B, K, H, W)`` in [0, 1], zero for
    absent classes)."""

    def __init__(self, snapshots: Sequence[str | Path], method: str = "cam", device: torch.device | str = "cpu",
                 seed: int = 0, **options):
        from wsss.localize import create

        if not snapshots:
            raise ConfigError("trajectory maps need at least one snapshot (classifier.snapshot_epochs)")
        self.models = [load_classifier(Path(p), device) for p in snapshots]
        self.localizers = [create(method, m, seed=seed, **options) for m in self.models]

    def attribute(self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence | None = None) -> torch.Tensor:
        total = None
        for loc in self.localizers:
            maps = loc.attribute(images, labels, ids)
            maps = maps / maps.flatten(2).amax(2).clamp_min(1e-12)[:, :, None, None]
            total = maps if total is None else total + maps
        return total / len(self.localizers)


def trajectory_maps(snapshots: Sequence[str | Path], images: torch.Tensor, labels: torch.Tensor,
                    method: str = "cam", ids: Sequence | None = None, device: torch.device | str | None = None,
                    **options) -> torch.Tensor:
    """One-shot :class:`TrajectoryMaps` (loads the snapshots each call; keep a TrajectoryMaps for many
    batches)."""
    device = images.device if device is None else device
    return TrajectoryMaps(snapshots, method, device, **options).attribute(images, labels, ids)


def _checkpoint_result(checkpoint: str | Path | None, method: str) -> tuple[Path, dict]:

    if checkpoint is None:
        raise ConfigError(f"method {method!r} reads the classifier's training outputs: pass checkpoint=<classifier .pt> "
                          f"(the maps stage does: `wsss maps --method {method} --classifier NAME`)")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint, "classifier", ("arch",), command="wsss train-cls")
    return checkpoint, dict(ckpt.get("result") or {})


def oaa_bank_files(checkpoint: Path) -> list[Path]:
    """The OAA attention bank(s) next to ``checkpoint`` (one file, or one per DDP rank)."""
    single = checkpoint.with_name(f"{checkpoint.stem}.oaa.pt")
    return [single] if single.is_file() else sorted(checkpoint.parent.glob(f"{checkpoint.stem}.oaa.rank*.pt"))


class OAAMaps(Localizer):
    """OAA's accumulated attention of each training image, read from the bank that ``--recipe oaa`` saved next
    to the checkpoint (:class:`AttentionBank`), bilinearly upsampled to the input size. The
    maps belong to the image id, not to the pixels passed in: images outside the training split have none
    (:class:`DataError`), and multi-scale / flip views do not apply (``from_image = False``)."""

    needs_grad = False
    from_image = False

    def __init__(self, model, checkpoint: str | Path | None = None, seed: int = 0, **options):

        super().__init__(model, seed=seed, **options)
        checkpoint, result = _checkpoint_result(checkpoint, "oaa")
        if result.get("recipe") != "oaa":
            raise RunDirError(f"{checkpoint}: trained with recipe {result.get('recipe', 'plain')!r}, not oaa; train one "
                              "with `wsss train-cls --recipe oaa` and read its maps with --classifier oaa")
        files = oaa_bank_files(checkpoint)
        if not files:
            raise RunDirError(f"{checkpoint}: no OAA attention bank next to it ({checkpoint.stem}.oaa.pt); retrain with "
                              "`wsss train-cls --recipe oaa`")
        self.bank = AttentionBank()
        for f in files:
            self.bank.merge(AttentionBank.load(f))

    def _attribute(self, images, labels, ids):
        out = images.new_zeros(labels.shape[0], labels.shape[1], *images.shape[-2:])
        for i, image_id in enumerate(ids):
            entry = self.bank.get(image_id)
            if not entry and bool(labels[i].any()):
                raise DataError(f"image {image_id}: no accumulated attention (OAA maps exist for the classifier's "
                                "training images only)")
            for c, att in entry.items():
                out[i, c] = upsample(att.float().to(images.device)[None, None], images.shape[-2:])[0, 0]
        return out


def snapshot_files(checkpoint: Path, result: dict) -> list[Path]:
    """The snapshot checkpoints recorded in the classifier's result, looked up next to it (so a moved run
    directory still finds them)."""
    return [checkpoint.parent / Path(p).name for p in result.get("snapshots", [])]


class Trajectory(Localizer):
    """Maps of the ``inner`` localizer accumulated over the classifier's training trajectory: the mean over the
    snapshot checkpoints (``classifier.snapshot_epochs``) of each snapshot's maps divided by their max per image
    and class (:class:`wsss.train.recipes.TrajectoryMaps`). Options other than ``inner`` go to the inner
    localizer (e.g. ``samples`` for ``traj-jigsaw``)."""

    def __init__(self, model, checkpoint: str | Path | None = None, inner: str = "cam", seed: int = 0, **options):

        super().__init__(model, seed=seed)
        checkpoint, result = _checkpoint_result(checkpoint, f"traj-{inner}")
        snaps = snapshot_files(checkpoint, result)
        if not snaps:
            raise RunDirError(f"{checkpoint}: no training snapshots; retrain with `wsss train-cls --set "
                              "classifier.snapshot_epochs=[5,10,15,20]` (1-based epochs)")
        missing = [p for p in snaps if not p.is_file()]
        if missing:
            raise RunDirError(f"{missing[0]}: snapshot checkpoint missing (recorded in {checkpoint})")
        device = next(iter(model.parameters())).device
        self.trajectory = TrajectoryMaps(snaps, inner, device, seed=seed, **options)
        self.needs_grad = any(loc.needs_grad for loc in self.trajectory.localizers)

    def _attribute(self, images, labels, ids):
        return self.trajectory.attribute(images, labels, ids)


def _traj(inner: str, summary: str, **fields) -> MethodSpec:
    return MethodSpec(f"traj-{inner}", functools.partial(Trajectory, inner=inner), summary, requires="checkpoint",
                      **fields)


SPECS = [
    MethodSpec("oaa", OAAMaps, "OAA accumulated attention (Jiang et al. ICCV 2019): classifier trained with --recipe oaa",
               normalization="max", requires="checkpoint"),
    _traj("cam", "CAM averaged over training snapshots (ours): classifier with snapshot_epochs", normalization="max"),
    _traj("saliency", "gradient saliency averaged over training snapshots (ours)", normalization="p99"),
    _traj("jigsaw", "jigsaw saliency averaged over training snapshots (ours)", normalization="p99", stochastic=True,
          quick={"samples": 4}),
]
