"""Exceptions raised by rwsplit; every message is safe to show (no passwords)."""

from __future__ import annotations

from .drivers import error_message, error_number


class RwsplitError(Exception):
    """Base class of every error rwsplit raises on purpose."""


class SandboxError(RwsplitError):
    """The local replication sandbox cannot do what was asked."""


class ServerBinariesNotFound(SandboxError):
    """No MariaDB/MySQL server binaries on this machine."""


class PrimaryUnavailable(RwsplitError):
    """The primary cannot be reached after the retry policy's bounded attempts."""


class NoReplicaAvailable(RwsplitError):
    """No replica may serve a read and the engine was told not to fall back (``fallback="error"``)."""


def describe_error(exc: BaseException) -> str:
    """One line (at most 300 characters) for an error message: ``(code) message`` for a driver error
    with a MySQL error number (any driver), else ``Type: message``."""
    orig = getattr(exc, "orig", None) or exc  # a SQLAlchemy DBAPIError wraps the driver's error
    number = error_number(orig)
    text = f"({number}) {error_message(orig)}" if number is not None else f"{type(orig).__name__}: {orig}"
    return text.splitlines()[0][:300]
