"""Progress bars: a tqdm bar on a terminal only, so that logs, pipes and CI output get none."""

from __future__ import annotations

import sys

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(iterable=None, *, disable: bool = False, force: bool | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when stderr is a terminal and ``disable`` is false.

    ``force=True`` shows it even when stderr is not a terminal, ``force=False`` never shows it.
    """
    show = stderr_is_terminal() if force is None else force
    return tqdm(iterable, disable=disable or not show, **kwargs)
