"""Prometheus metrics of routing engines: a collector for ``prometheus_client`` (``rwsplit[prometheus]``).

``register(engine)`` adds an engine to the default registry's collector; each scrape reads the
engine's status and counts then. Counters count since the engine started and never go down:
``engine.stats(reset=True)`` does not touch them. The causal wait histogram counts the waits
since the engine joined the collector.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from ._metrics import BUCKETS, COUNTERS, Reading, read
from ._observer import on_causal_wait, routing_engine

__all__ = ["RoutingCollector", "register", "unregister"]

_SERVER = ["engine", "server"]


class _Waits:
    """A causal wait histogram: counts per bucket, total count and sum (seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets = [0] * len(BUCKETS)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0

    def add(self, seconds: float, reached: bool) -> None:
        with self.lock:
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
                    break
            self.count += 1
            self.sum += seconds

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        with self.lock:
            running, out = 0, []
            for bound, n in zip(BUCKETS, self.buckets, strict=True):
                running += n
                out.append((repr(bound), float(running)))
            out.append(("+Inf", float(self.count)))
            return out, self.sum


class _Watched:
    def __init__(self, engine: Any) -> None:
        self.engine = routing_engine(engine)
        self.waits = _Waits()
        self.stop: Callable[[], None] = on_causal_wait(self.engine, self.waits.add)


class RoutingCollector:
    """A ``prometheus_client`` collector of routing engines, each under its ``engine`` label.

    ``RoutingCollector(engine, name="default")``; :meth:`add` more engines (one collector per
    registry: the metric names are the same for every engine). Works with a RoutingEngine or an
    AsyncRoutingEngine.
    """

    def __init__(self, engine: Any = None, name: str = "default") -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, _Watched] = {}
        if engine is not None:
            self.add(engine, name)

    def add(self, engine: Any, name: str = "default") -> None:
        """Report ``engine`` under ``engine="<name>"`` (``ValueError`` if the name is taken)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"the engine label must be a non-empty string, got {name!r}")
        with self._lock:
            if name in self._engines:
                raise ValueError(f"an engine is already collected as {name!r}: pass another name=")
            self._engines = {**self._engines, name: _Watched(engine)}

    def remove(self, name: str = "default") -> None:
        """Stop reporting the engine named ``name`` (``KeyError`` if there is none)."""
        with self._lock:
            engines = dict(self._engines)
            watched = engines.pop(name)
            self._engines = engines
        watched.stop()

    @property
    def names(self) -> tuple[str, ...]:
        """The ``engine`` labels reported."""
        return tuple(self._engines)

    def describe(self) -> list[Metric]:
        """The metric families without samples (the registry checks names against other collectors)."""
        return list(_families({}))

    def collect(self) -> Iterator[Metric]:
        readings = {name: (read(w.engine), w.waits) for name, w in self._engines.items()}
        return _families(readings)


def _families(readings: dict[str, tuple[Reading, _Waits]]) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "rwsplit_replica_lag_seconds",
        "Seconds the replica is behind the primary, as last measured (absent while unknown).",
        labels=_SERVER,
    )
    reachable = GaugeMetricFamily(
        "rwsplit_server_reachable", "1 if the server answered its last probe, else 0.", labels=_SERVER
    )
    eligible = GaugeMetricFamily(
        "rwsplit_server_eligible",
        "1 if the server may serve reads now (a replica: reachable, replicating, within max_lag), else 0.",
        labels=_SERVER,
    )
    in_flight = GaugeMetricFamily(
        "rwsplit_server_in_flight", "Connections to the server checked out now.", labels=_SERVER
    )
    statements = CounterMetricFamily(
        "rwsplit_statements",
        "Statements routed to the server (a flush: once per connection).",
        labels=_SERVER,
    )
    decisions = CounterMetricFamily(
        "rwsplit_decisions", "Routing decisions per kind (rwsplit.observe.KINDS).", labels=["engine", "kind"]
    )
    counters = [CounterMetricFamily(c.prometheus, c.help, labels=["engine"]) for c in COUNTERS]
    waits = HistogramMetricFamily(
        "rwsplit_causal_wait_seconds", "Causal waits on replicas (reached or timed out).", labels=["engine"]
    )
    for name, (reading, histogram) in readings.items():
        for row in reading.servers:
            labels = [name, row.name]
            if row.role == "replica" and row.lag is not None:
                lag.add_metric(labels, row.lag)
            reachable.add_metric(labels, float(row.reachable))
            eligible.add_metric(labels, float(row.eligible))
            in_flight.add_metric(labels, float(row.in_flight))
        for server, n in reading.statements():
            statements.add_metric([name, server], n)
        for kind, n in reading.decisions():
            decisions.add_metric([name, kind], n)
        for counter, family in zip(COUNTERS, counters, strict=True):
            family.add_metric([name], counter.value(reading.totals))
        buckets, total = histogram.cumulative()
        waits.add_metric([name], buckets, total)
    yield from (lag, reachable, eligible, in_flight, statements, decisions, *counters, waits)


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, RoutingCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def register(engine: Any, name: str = "default", registry: CollectorRegistry = REGISTRY) -> RoutingCollector:
    """Report ``engine`` in ``registry`` under ``engine="<name>"``; returns the registry's collector."""
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = RoutingCollector()
            registry.register(collector)
            _collectors[registry] = collector
        collector.add(engine, name)
        return collector


def unregister(name: str = "default", registry: CollectorRegistry = REGISTRY) -> None:
    """Stop reporting the engine registered as ``name`` (``KeyError`` if there is none)."""
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            raise KeyError(name)
        collector.remove(name)
        if not collector.names:
            registry.unregister(collector)
            del _collectors[registry]
