"""Reading checkpoints safely (``weights_only=True``) and rebuilding a trained classifier from one; every stage
and the localizers that read training outputs load through here."""

from __future__ import annotations

from pathlib import Path

import torch

from wsss.errors import RunDirError
from wsss.models._registry import create
from wsss.runtime import place


def load_checkpoint(path: str | Path, what: str, keys: tuple[str, ...] = (), command: str = "") -> dict:
    """``torch.load(path, weights_only=True)`` of a checkpoint dict that must hold ``keys``.

    :class:`RunDirError` naming the file when it is missing, or ``file is empty or corrupt`` when it is
    empty, truncated, not a checkpoint, or lacks one of ``keys``; ``command`` (e.g. ``wsss train-cls``) is
    the one that writes it, named in the message.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: {what} checkpoint not found" + (f" (run `{command}` first)" if command else ""))
    redo = f"; rerun `{command}` to write it again" if command else ""
    if path.stat().st_size == 0:
        raise RunDirError(f"{path}: file is empty or corrupt (0 bytes){redo}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling / unzipping failure is a bad file
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise RunDirError(f"{path}: file is empty or corrupt (not a readable {what} checkpoint: "
                          f"{exc.__class__.__name__}{': ' + first if first else ''}){redo}") from exc
    missing = [k for k in keys if k not in ckpt] if isinstance(ckpt, dict) else list(keys)
    if not isinstance(ckpt, dict) or missing:
        raise RunDirError(f"{path}: file is empty or corrupt (not a {what} checkpoint: no "
                          f"{', '.join(repr(k) for k in missing) or 'dict'}){redo}")
    return ckpt


def arch_of(ckpt: dict) -> tuple[str, dict]:
    """``(arch, kwargs)`` that rebuild a classifier checkpoint's network (``output_stride`` when it was stored)."""
    return ckpt["arch"], ({} if ckpt.get("output_stride") is None else {"output_stride": ckpt["output_stride"]})


def load_classifier(path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild a trained classifier from its checkpoint (``weights_only=True``)."""
    ckpt = load_checkpoint(path, "classifier", ("arch", "num_classes", "model"), command="wsss train-cls")
    arch, kwargs = arch_of(ckpt)
    model = create(arch, ckpt["num_classes"], **kwargs)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunDirError(f"{path}: weights do not fit the classifier ({first})") from exc
    return place(model, device).eval()
