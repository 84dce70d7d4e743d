"""Consistency policy: the engine-wide, immutable routing settings.

The flow for every statement is ``classify`` → consistency policy (these settings, and the
session's :class:`~rwsplit.consistency_state.ConsistencyState`) → eligible replicas → balancer;
:mod:`rwsplit.router` ties the steps together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._validate import check_choice, check_seconds
from .failover import Retry

__all__ = [
    "READ_YOUR_WRITES",
    "FALLBACKS",
    "Retry",
    "RoutingPolicy",
]

READ_YOUR_WRITES = ("session", "transaction", "off", "causal")
FALLBACKS = ("primary", "error")


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
