"""Immutable server state: how to reach each server, what its last probe saw, which may serve reads.

:class:`~rwsplit.monitor.Monitor` publishes these; the router and ``RoutingEngine.status()``
read them without locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .gtid import Position

__all__ = ["ServerSpec", "ServerState", "ServerReport", "Snapshot"]


@dataclass(frozen=True)
class ServerSpec:
    """How the monitor reaches one server. ``repr`` never shows the password."""

    name: str
    role: str
    url: str  # password masked
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    unix_socket: str | None = None
    ssl: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server as last probed. ``lag`` is seconds behind the primary; ``None`` is unknown."""

    name: str
    role: str
    url: str
    reachable: bool = False
    io_running: bool | None = None
    sql_running: bool | None = None
    lag: float | None = None
    raw_lag: float | None = None
    lag_average: float | None = None
    lag_source: str | None = None
    measured_at: float | None = None
    gtid: str | None = None
    position: Position = field(default_factory=Position)
    read_only: bool | None = None
    error: str | None = None
    probes: int = 0
    healthy_probes: int = 0
    tripped: bool = False
    lag_lower_bound: bool = False  # lag is only "at least this": never eligible on it

    @property
    def replicating(self) -> bool:
        """Both replication threads (IO and SQL) were running at the last probe."""
        return bool(self.sql_running) and bool(self.io_running)

    def report(self, in_flight: int, eligible: bool) -> ServerReport:
        """This server as one public row of ``RoutingEngine.status()``."""
        is_primary = self.role == "primary"
        return ServerReport(
            name=self.name,
            role=self.role,
            url=self.url,
            reachable=self.reachable,
            replicating=None if is_primary else self.replicating,
            lag=self.lag,
            lag_source=self.lag_source,
            measured_at=self.measured_at,
            gtid=self.gtid,
            in_flight=in_flight,
            eligible=eligible,
            error=self.error,
        )


@dataclass(frozen=True)
class ServerReport:
    """One row of :meth:`RoutingEngine.status`: a server's last probe, in-flight count and eligibility."""

    name: str
    role: str
    url: str
    reachable: bool
    replicating: bool | None
    lag: float | None
    lag_source: str | None
    measured_at: float | None
    gtid: str | None
    in_flight: int
    eligible: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All servers at one moment; cheap to take, never mutated."""

    primary: ServerState
    replicas: tuple[ServerState, ...]
    stale_after: float = math.inf  # a reading older than this (seconds) no longer counts
    by_name: Mapping[str, ServerState] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived, never given: it cannot disagree with ``replicas`` (dataclasses.replace derives it anew).
        object.__setattr__(self, "by_name", {r.name: r for r in self.replicas})

    def replica(self, name: str) -> ServerState | None:
        return self.by_name.get(name)

    def is_eligible(self, name: str, max_lag: float) -> bool:
        """Whether replica ``name`` may serve a read no staler than ``max_lag`` seconds (asked per
        routed read: one frame)."""
        r = self.by_name.get(name)
        if r is None:
            return False
        lag = r.lag
        if not r.reachable or r.tripped or lag is None or lag > max_lag or not r.sql_running:
            return False
        if r.lag_lower_bound:
            return False
        # A reading ages: a stopped, forked-away or stuck probe thread must not freeze eligibility.
        # (Every probe that sets a lag sets measured_at; a hand-made state without it has no age.)
        measured = r.measured_at
        age = 0.0 if measured is None else time.time() - measured
        if age > self.stale_after:
            return False
        # Behind at the last probe, it may have fallen further behind since: count the probe's age.
        if lag > 0 and lag + age > max_lag:
            return False
        # With the primary down the IO thread cannot run; the last measured lag stands in.
        return bool(r.io_running) or not self.primary.reachable

    def eligible(self, max_lag: float) -> list[ServerState]:
        """Replicas that may serve a read no staler than ``max_lag`` seconds."""
        return [r for r in self.replicas if self.is_eligible(r.name, max_lag)]

    def report(self, max_lag: float, in_flight: Callable[[str], int]) -> list[ServerReport]:
        """Every server as a ``RoutingEngine.status()`` row, primary first; ``in_flight(name)`` counts use."""
        eligible = {r.name for r in self.eligible(max_lag)}
        return [
            s.report(in_flight(s.name), s.reachable if s.role == "primary" else s.name in eligible)
            for s in (self.primary, *self.replicas)
        ]
