"""User-facing errors: one clear line, printed by the CLI without a traceback (``--debug`` shows one)."""

from __future__ import annotations


class WsssError(Exception):
    """Base class of every error a user can act on."""


class DataError(WsssError):
    """Bad or missing input data (names the file)."""


class RunDirError(WsssError):
    """A run directory is missing, incomplete, or would be overwritten."""


class ConfigError(WsssError):
    """An invalid option or configuration value."""


class MissingDependencyError(WsssError):
    """An optional extra is needed (the message says which)."""


def first_error(exc) -> str:
    """``where: what`` of a pydantic ``ValidationError``'s first error (one line for a message)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where or 'top level'}: {err.get('msg', '?')}"
