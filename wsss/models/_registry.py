"""One registry of networks: ``@register_model`` + ``create(name, ...)``; the CLI's choices come from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from wsss.errors import ConfigError, WsssError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``fn(num_classes, pretrained, **kwargs) -> nn.Module`` under its name
    (underscores become dashes is NOT done: the function name is the model name)."""
    _MODELS[fn.__name__] = fn
    return fn


def available() -> list[str]:
    """Names of the registered networks."""
    return sorted(_MODELS)


def create(name: str, num_classes: int, pretrained: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered network.

    Args:
        name: registry name (see :func:`available`).
        num_classes: number of foreground classes K.
        pretrained: ``None`` (random init), ``"imagenet"`` (the entry's known ImageNet weights from
            the local torch cache or a package that ships them; a clear error otherwise), or a path
            to a state_dict (loaded with ``weights_only=True``; a checkpoint dict with a ``"model"``
            key is accepted too).
    """
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}")
    if pretrained is not None and str(pretrained) != "imagenet":
        model = _MODELS[name](num_classes=num_classes, pretrained=None, **kwargs)
        load_state(model, Path(pretrained))
        return model
    return _MODELS[name](num_classes=num_classes, pretrained=pretrained, **kwargs)


def load_state(model: nn.Module, path: Path, strict: bool = True) -> nn.Module:
    """Load a state_dict (or a checkpoint dict holding one under ``"model"``) safely."""
    if not path.is_file():
        raise WsssError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WsssError(f"{path}: cannot read weights ({exc.__class__.__name__}: {exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WsssError(f"{path}: weights do not fit the model ({first})") from exc
    return model
