"""wsss: weakly-supervised semantic segmentation from image-level labels.

Public surface: :mod:`wsss.data`, :mod:`wsss.models`, :mod:`wsss.localize`, :mod:`wsss.pseudo`,
:mod:`wsss.metrics` and the ``wsss`` command line. Sub-modules are imported lazily so that
``import wsss`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from wsss.errors import WsssError

__version__ = "0.1.0"
__all__ = ["WsssError", "data", "localize", "metrics", "models", "pseudo", "__version__"]

_LAZY = {"data", "models", "localize", "pseudo", "metrics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"wsss.{name}")
    raise AttributeError(f"module 'wsss' has no attribute {name!r}")
