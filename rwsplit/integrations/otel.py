"""OpenTelemetry for routing engines (``rwsplit[otel]``): routing attributes on spans, and metrics.

``instrument(engine)`` sets ``db.rwsplit.target``, ``db.rwsplit.reason`` and ``db.rwsplit.kind``
of each routed statement on two spans:

* the span current when the statement is routed, if it is recording: the application's span
  around the statement, since rwsplit routes before SQLAlchemy runs it (the last statement's
  values stay when several run under one span);
* with an SDK ``TracerProvider`` (``tracer_provider=``, else the global one if it is the SDK's),
  every span started while SQLAlchemy executes the statement: the statement's own span of
  opentelemetry-instrumentation-sqlalchemy (a child of the first). A causal wait's statement
  gets ``db.rwsplit.reason`` ``"causal wait"``.

It also publishes the Prometheus integration's metrics through the OpenTelemetry metrics API.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .._version import __version__
from ..engine import RoutingEngine
from ..flavor import MARIADB, MYSQL
from ..observe import RouteEvent
from ..observe import listen as listen_to
from ..observe import remove as remove_listener
from ..state import ServerReport
from ._metrics import BUCKETS, COUNTERS, KINDS
from ._observer import on_causal_wait, routing_engine, server_engines, totals

__all__ = ["instrument", "uninstrument", "sqlalchemy_engines", "TARGET", "REASON", "KIND"]

TARGET, REASON, KIND = "db.rwsplit.target", "db.rwsplit.reason", "db.rwsplit.kind"
_WAITS = tuple(f"SELECT {flavor.wait_function}(" for flavor in (MARIADB, MYSQL))
_Observe = Callable[[CallbackOptions], Iterable[Observation]]
_PENDING: ContextVar[dict[str, str] | None] = ContextVar("rwsplit_otel_pending", default=None)


@dataclass
class _Routed:
    """The latest routing decision in this thread/task, and the connection its statements run on."""

    owner: weakref.ref[_Instrumented]
    target: str
    attributes: dict[str, str]
    connection: weakref.ref[Any] | None = field(default=None)


_ROUTED: ContextVar[_Routed | None] = ContextVar("rwsplit_otel_routed", default=None)


class _Instrumented:
    """One instrumented routing engine: its route and causal wait listeners, its engines' events."""

    def __init__(self, engine: RoutingEngine, name: str, meters: _Meters) -> None:
        self.engine, self.name, self.meters = engine, name, meters
        self._events: list[tuple[Engine, str, Callable[..., Any]]] = []
        for server_engine, server in server_engines(engine).items():
            for identifier, fn in (
                ("before_execute", functools.partial(self._before, server)),
                ("after_execute", _executed),
                ("handle_error", _executed),
            ):
                event.listen(server_engine, identifier, fn)
                self._events.append((server_engine, identifier, fn))
        listen_to(engine, "route", self._routed)
        self._stop_waits = on_causal_wait(engine, self._waited)

    def close(self) -> None:
        self._stop_waits()
        remove_listener(self.engine, "route", self._routed)
        for server_engine, identifier, fn in self._events:
            event.remove(server_engine, identifier, fn)

    def _routed(self, routed: RouteEvent) -> None:
        attributes = {TARGET: routed.target, REASON: routed.reason, KIND: routed.kind}
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(attributes)
        _ROUTED.set(_Routed(weakref.ref(self), routed.target, attributes))

    def _before(self, server: str, conn: Any, statement: Any, *args: Any) -> None:
        """A statement starts on ``server``: its attributes, for the spans started until it ends."""
        _PENDING.set(None)
        sql = statement if isinstance(statement, str) else getattr(statement, "text", None)
        if isinstance(sql, str) and sql.startswith(_WAITS):
            _PENDING.set({TARGET: server, REASON: "causal wait"})  # runs before its read is routed
            return
        routed = _ROUTED.get()
        if routed is None or routed.owner() is not self or routed.target != server:
            return
        if routed.connection is None:  # the decision's statements run on this connection
            routed.connection = weakref.ref(conn)
        elif routed.connection() is not conn:
            return
        _PENDING.set(routed.attributes)

    def _waited(self, seconds: float, reached: bool) -> None:
        self.meters.waits.record(seconds, {"engine": self.name})


def _executed(*_: Any) -> None:
    _PENDING.set(None)


class _Meters:
    """One meter provider's rwsplit instruments; their callbacks read every engine instrumented on it."""

    def __init__(self, provider: MeterProvider) -> None:
        self.engines: dict[str, _Instrumented] = {}
        meter = provider.get_meter("rwsplit", __version__)
        gauges: list[tuple[str, str, str, Callable[[ServerReport], float | None]]] = [
            ("rwsplit.replica.lag", "s", "Seconds the replica is behind the primary, as last measured.",
             lambda r: r.lag if r.role == "replica" else None),
            ("rwsplit.server.reachable", "", "1 if the server answered its last probe, else 0.",
             lambda r: int(r.reachable)),
            ("rwsplit.server.eligible", "", "1 if the server may serve reads now, else 0.",
             lambda r: int(r.eligible)),
            ("rwsplit.server.in_flight", "{connection}", "Connections to the server checked out now.",
             lambda r: r.in_flight),
        ]  # fmt: skip
        for name, unit, description, value in gauges:
            meter.create_observable_gauge(name, [self._servers(value)], unit, description)
        meter.create_observable_counter(
            "rwsplit.statements", [self._statements], "{statement}", "Statements routed to the server."
        )
        meter.create_observable_counter(
            "rwsplit.decisions", [self._decisions], "{decision}", "Routing decisions per kind."
        )
        for counter in COUNTERS:
            meter.create_observable_counter(counter.otel, [self._counter(counter.value)], "", counter.help)
        self.waits: Histogram = meter.create_histogram(
            "rwsplit.causal_wait",
            "s",
            "Causal waits on replicas (reached or timed out).",
            explicit_bucket_boundaries_advisory=BUCKETS,
        )

    def _servers(self, value: Callable[[ServerReport], float | None]) -> _Observe:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for name, inst in list(self.engines.items()):
                for row in inst.engine.status():
                    v = value(row)
                    if v is not None:
                        yield Observation(v, {"engine": name, "server": row.name})

        return observe

    def _statements(self, _: CallbackOptions) -> Iterable[Observation]:
        for name, inst in list(self.engines.items()):
            counts = totals(inst.engine).statements
            for server in ("primary", *inst.engine.replica_names):
                yield Observation(counts.get(server, 0), {"engine": name, "server": server})

    def _decisions(self, _: CallbackOptions) -> Iterable[Observation]:
        for name, inst in list(self.engines.items()):
            kinds = totals(inst.engine).kinds
            for kind in KINDS:
                yield Observation(kinds.get(kind, 0), {"engine": name, "kind": kind})

    def _counter(self, value: Callable[[Any], int]) -> _Observe:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for name, inst in list(self.engines.items()):
                yield Observation(value(totals(inst.engine)), {"engine": name})

        return observe


_lock = threading.Lock()
_meters: weakref.WeakKeyDictionary[MeterProvider, _Meters] = weakref.WeakKeyDictionary()
_span_providers: weakref.WeakSet[Any] = weakref.WeakSet()
_instrumented: dict[RoutingEngine, _Instrumented] = {}


def instrument(
    engine: Any,
    name: str = "default",
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: Any = None,
) -> None:
    """Routing attributes on spans and rwsplit's metrics (attribute ``engine="<name>"``) for a
    RoutingEngine or AsyncRoutingEngine. Providers: the global ones unless given."""
    sync = routing_engine(engine)
    if not isinstance(name, str) or not name:
        raise ValueError(f"the engine attribute must be a non-empty string, got {name!r}")
    with _lock:
        if sync in _instrumented:
            raise ValueError("this engine is instrumented already: call uninstrument(engine) first")
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        meters = _meters.get(provider)
        if meters is None:
            meters = _meters[provider] = _Meters(provider)
        if name in meters.engines:
            raise ValueError(f"an engine is instrumented as {name!r} already: pass another name=")
        _statement_spans(trace.get_tracer_provider() if tracer_provider is None else tracer_provider)
        inst = _Instrumented(sync, name, meters)
        meters.engines = {**meters.engines, name: inst}
        _instrumented[sync] = inst


def uninstrument(engine: Any) -> None:
    """Undo :func:`instrument` (``ValueError`` if the engine is not instrumented)."""
    sync = routing_engine(engine)
    with _lock:
        inst = _instrumented.pop(sync, None)
        if inst is None:
            raise ValueError("this engine is not instrumented")
        inst.meters.engines = {k: v for k, v in inst.meters.engines.items() if v is not inst}
    inst.close()


def sqlalchemy_engines(engine: Any) -> list[Engine]:
    """Every SQLAlchemy Engine of a routing engine (reads that fall back to the primary use one of
    their own): ``SQLAlchemyInstrumentor().instrument(engines=...)`` traces them all."""
    return list(server_engines(routing_engine(engine)))


def _statement_spans(provider: Any) -> None:
    """Add the statement span processor to an SDK tracer provider, once."""
    if not hasattr(provider, "add_span_processor") or provider in _span_providers:
        return
    from ._otel_spans import StatementSpans

    provider.add_span_processor(StatementSpans(_PENDING))
    _span_providers.add(provider)
