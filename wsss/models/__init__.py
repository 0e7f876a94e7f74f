"""Networks: ``create(name, num_classes, pretrained=None)`` over one registry."""

from wsss.models import classifier as _classifier  # noqa: F401  (registers entries)
from wsss.models import efficientnet as _efficientnet  # noqa: F401  (registers entries)
from wsss.models._registry import available, create, load_state, register_model
from wsss.models.classifier import CamClassifier, Normalize

__all__ = ["CamClassifier", "Normalize", "available", "create", "load_state", "register_model"]
