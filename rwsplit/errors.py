"""Exceptions raised by rwsplit; every message is safe to show (no passwords)."""

from __future__ import annotations


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
