"""The metrics both exporters publish: names, meanings and how each is read from an engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..engine import RoutingEngine
from ..observe import KINDS, Stats
from ..state import ServerReport
from ._observer import totals

__all__ = ["BUCKETS", "COUNTERS", "KINDS", "Reading", "read"]

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Upper bounds (seconds) of the causal wait histogram's buckets."""


@dataclass(frozen=True)
class Counter:
    """An engine-wide counter: Prometheus name (without ``_total``), OpenTelemetry name, meaning."""

    prometheus: str
    otel: str
    help: str
    value: Callable[[Stats], int]


COUNTERS = (
    Counter(
        "rwsplit_failovers",
        "rwsplit.failovers",
        "Reads retried on another server after their replica failed.",
        lambda s: s.failovers,
    ),
    Counter(
        "rwsplit_fallbacks",
        "rwsplit.fallbacks",
        "Reads meant for a replica that ran on the primary.",
        lambda s: s.fallbacks,
    ),
    Counter(
        "rwsplit_replicas_out",
        "rwsplit.replicas.out",
        "Times a replica left the set of replicas eligible for reads.",
        lambda s: s.replicas_out,
    ),
    Counter(
        "rwsplit_replicas_readmitted",
        "rwsplit.replicas.readmitted",
        "Times a replica rejoined the eligible set.",
        lambda s: s.replicas_readmitted,
    ),
    Counter(
        "rwsplit_causal_wait_timeouts",
        "rwsplit.causal_wait.timeouts",
        "Causal waits that timed out (the read ran on the primary).",
        lambda s: s.causal_waits.timeouts,
    ),
)


@dataclass(frozen=True)
class Reading:
    """One engine now: every server's status row and the counts since the engine started."""

    servers: list[ServerReport]
    totals: Stats

    def statements(self) -> Iterator[tuple[str, int]]:
        """(server, statements routed there), every server, zeros included."""
        for row in self.servers:
            yield row.name, self.totals.statements.get(row.name, 0)

    def decisions(self) -> Iterator[tuple[str, int]]:
        """(kind, decisions of that kind), every kind, zeros included."""
        for kind in KINDS:
            yield kind, self.totals.kinds.get(kind, 0)


def read(engine: RoutingEngine) -> Reading:
    """What a scrape or a metrics collection reports for ``engine``."""
    return Reading(engine.status(), totals(engine))
