"""Progress bars that stay quiet when nobody watches: tqdm on a terminal, nothing when stderr is a file or
a pipe (CI logs, ``> log``). ``WSSS_PROGRESS=1`` forces bars on, ``0`` off."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def enabled() -> bool:
    forced = os.environ.get("WSSS_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false")
    return sys.stderr.isatty()


def bar(iterable=None, disable: bool = False, leave: bool = False, **kw) -> tqdm:
    """``tqdm(iterable, ...)``, disabled when ``disable`` or when stderr is not a terminal."""
    return tqdm(iterable, disable=disable or not enabled(), leave=leave, **kw)
