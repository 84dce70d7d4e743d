"""Exceptions raised by rwsplit; every message is safe to show (no passwords)."""

from __future__ import annotations

import pymysql


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
    """``exc`` in one short line for logs and status rows: ``(errno) message`` for a MySQL error."""
    args = exc.args
    if isinstance(exc, pymysql.MySQLError) and len(args) >= 2:
        return f"({args[0]}) {args[1]}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
