"""Consistency policy: the engine-wide, immutable routing settings.

The flow for every statement is ``classify`` → consistency policy (these settings, and the
session's :class:`~rwsplit.consistency_state.ConsistencyState`) → eligible replicas → balancer;
:mod:`rwsplit.router` ties the steps together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._validate import check_choice, check_count, check_seconds

__all__ = [
    "READ_YOUR_WRITES",
    "FALLBACKS",
    "Retry",
    "RoutingPolicy",
]

READ_YOUR_WRITES = ("session", "transaction", "off", "causal")
FALLBACKS = ("primary", "error")


@dataclass(frozen=True)
class Retry:
    """How hard to try before giving up (immutable, like urllib3's ``Retry``).

    ``replica_attempts``/``replica_timeout``: other replicas tried (at most that many, for at most
    that long) for a read that failed with a connection error before it goes to the primary.
    ``primary_attempts``/``backoff``/``max_backoff``/``primary_timeout``: new
    connections to the primary are retried with exponential backoff until either bound is hit,
    then :class:`~rwsplit.errors.PrimaryUnavailable` is raised. A statement that may have reached
    the primary is never re-sent.
    """

    replica_attempts: int = 2
    replica_timeout: float = 5.0
    primary_attempts: int = 4
    backoff: float = 0.1
    max_backoff: float = 1.0
    primary_timeout: float = 3.0

    def __post_init__(self) -> None:
        check_count("Retry.replica_attempts", self.replica_attempts, 0, 100)
        check_seconds("Retry.replica_timeout", self.replica_timeout, allow_zero=False)
        check_count("Retry.primary_attempts", self.primary_attempts, 1, 100)
        check_seconds("Retry.backoff", self.backoff)
        check_seconds("Retry.max_backoff", self.max_backoff)
        check_seconds("Retry.primary_timeout", self.primary_timeout, allow_zero=False)


@dataclass(frozen=True)
class RoutingPolicy:
    """Engine-wide routing settings; sessions may override ``max_lag`` and ``read_your_writes``."""

    max_lag: float = 1.0
    read_your_writes: str = "session"
    fallback: str = "primary"
    pin_window: float = 0.0
    causal_timeout: float = 0.05
    read_only_functions: frozenset[str] = field(default_factory=frozenset)
    retry: Retry = field(default_factory=Retry)

    def __post_init__(self) -> None:
        check_seconds("max_lag", self.max_lag, upper=86400 * 365)
        check_seconds("causal_timeout", self.causal_timeout, upper=60)
        check_choice("read_your_writes", self.read_your_writes, READ_YOUR_WRITES)
        check_choice("fallback", self.fallback, FALLBACKS)
        check_seconds("pin_window", self.pin_window, upper=86400)
        if not isinstance(self.retry, Retry):
            raise TypeError(f"retry must be a rwsplit.Retry, got {type(self.retry).__name__}")
