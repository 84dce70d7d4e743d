"""``rwsplit.integrations.otel`` against the sandbox, with the OpenTelemetry SDK's in-memory exporters
and opentelemetry-instrumentation-sqlalchemy tracing the routing engine's SQLAlchemy engines.

Where a statement ran is ``@@GLOBAL.server_id``; the spans' ports say which server each DB span
talked to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.ext.asyncio  # noqa: F401  (see below)
from helpers import REPLICAS, SERVER_ID, unique, wait_eligible, wait_on_its_own, with_driver
from metrics_readme import example
from models import User
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from waiting import wait_for

import rwsplit
from rwsplit.integrations import otel
from rwsplit.integrations._metrics import BUCKETS
from rwsplit.observe import KINDS
from rwsplit.sandbox import Sandbox

# sqlalchemy.ext.asyncio is imported above, before any test instruments SQLAlchemy: a module first
# imported while SQLAlchemyInstrumentor is on keeps its patched create_engine after uninstrument().

Make = Callable[..., rwsplit.RoutingEngine]
ATTRIBUTES = (otel.TARGET, otel.REASON, otel.KIND)


class Traced:
    """An SDK tracer provider recording in memory, and SQLAlchemy's instrumentation on an engine."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def instrument_sqlalchemy(self, engine: Any) -> None:
        SQLAlchemyInstrumentor().instrument(
            engines=otel.sqlalchemy_engines(engine), tracer_provider=self.provider, skip_dep_check=True
        )
        assert SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def statements(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The DB spans under ``parent``, in order, without the connect spans."""
        return [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id and s.name != "connect"
        ]

    def named(self, name: str) -> ReadableSpan:
        (span,) = (s for s in self.spans() if s.name == name)
        return span


@pytest.fixture()
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
        SQLAlchemyInstrumentor().uninstrument()


@pytest.fixture()
def instrumented() -> Iterator[list[Any]]:
    """Engines the test instrumented: uninstrumented at teardown if the test did not."""
    engines: list[Any] = []
    yield engines
    for engine in engines:
        with contextlib.suppress(ValueError):
            otel.uninstrument(engine)


def routing(span: ReadableSpan) -> tuple[Any, ...]:
    attributes = span.attributes or {}
    return tuple(attributes.get(a) for a in ATTRIBUTES)


def port_of(span: ReadableSpan) -> int:
    attributes = span.attributes or {}
    port = attributes.get("server.port", attributes.get("net.peer.port"))
    assert isinstance(port, int), dict(attributes)
    return port


def ports(sandbox: Sandbox) -> dict[int, str]:
    urls = [sandbox.primary_url, *sandbox.replica_urls]
    names = ["primary", *REPLICAS]
    return {int(sa.make_url(u).port or 0): n for u, n in zip(urls, names, strict=True)}


def ran_on(executor: Any, ids: dict[int, str]) -> str:
    return ids[int(executor.execute(sa.text(SERVER_ID)).scalar_one())]


def test_statement_spans_and_the_current_span(
    sandbox: Sandbox, make_engine: Make, traced: Traced, instrumented: list[Any], ids: dict[int, str]
) -> None:
    engine = make_engine()
    traced.instrument_sqlalchemy(engine)
    otel.instrument(engine, tracer_provider=traced.provider, meter_provider=MeterProvider())
    instrumented.append(engine)
    Session = rwsplit.sessionmaker(engine)
    with traced.tracer.start_as_current_span("request"), Session() as s:
        read_on = ran_on(s, ids)
        s.add(User(name=unique()))
        s.commit()
        pinned_on = ran_on(s, ids)
    assert read_on in REPLICAS and pinned_on == "primary"
    request = traced.named("request")
    statements = traced.statements(request)
    by_port = ports(sandbox)
    assert [by_port[port_of(s)] for s in statements] == [read_on, "primary", "primary"]
    read, insert, pinned = statements
    assert routing(read) == (read_on, "read", "read")
    assert insert.name.startswith("INSERT") and routing(insert) == ("primary", "write: flush", "write")
    assert routing(pinned) == ("primary", "read-your-writes: session wrote", "pinned")
    # The span current while rwsplit routes is the request's: the last statement's values stay.
    assert routing(request) == routing(pinned)
    with engine.connect() as conn:  # no recording span: nothing to set, and nothing fails
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    (core,) = [s for s in traced.spans() if s.parent is None and s.name != "connect" and s is not request]
    assert routing(core) == (by_port[port_of(core)], "read", "read")


def test_without_an_sdk_tracer_provider_only_the_current_span(
    make_engine: Make, traced: Traced, instrumented: list[Any], ids: dict[int, str]
) -> None:
    engine = make_engine()
    traced.instrument_sqlalchemy(engine)
    otel.instrument(engine, tracer_provider=trace.NoOpTracerProvider(), meter_provider=MeterProvider())
    instrumented.append(engine)
    with traced.tracer.start_as_current_span("request"), engine.connect() as conn:
        ran = ran_on(conn, ids)
    request = traced.named("request")
    (statement,) = traced.statements(request)
    assert routing(request) == (ran, "read", "read")
    assert routing(statement) == (None, None, None)


@pytest.mark.parametrize("wait", ["with the read", "on its own"])
def test_causal_wait_spans(
    sandbox: Sandbox,
    make_engine: Make,
    traced: Traced,
    instrumented: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    wait: str,
) -> None:
    if wait == "on its own":
        wait_on_its_own(monkeypatch)
    # Probes 5 s apart: the monitor has not seen the commit when the read comes, so the read waits.
    engine = make_engine(read_your_writes="causal", causal_timeout=2.0, monitor_interval=5.0)
    traced.instrument_sqlalchemy(engine)
    otel.instrument(engine, tracer_provider=traced.provider, meter_provider=MeterProvider())
    instrumented.append(engine)
    reasons: list[str] = []
    rwsplit.listen(engine, "route", lambda e: reasons.append(e.reason))
    with traced.tracer.start_as_current_span("request"), rwsplit.sessionmaker(engine)() as s:
        s.add(User(name=unique()))
        s.commit()
        s.execute(sa.text("SELECT 1"))
        target = s.last_target
    by_port = ports(sandbox)
    *_, before, read = traced.statements(traced.named("request"))
    assert by_port[port_of(read)] == target in REPLICAS
    if wait == "on its own":  # a span of its own, on the replica the read then uses
        assert reasons[-1].startswith("causal: waited")
        assert "GTID_WAIT" in str((before.attributes or {}).get("db.statement", before.attributes))
        assert by_port[port_of(before)] == target
        assert routing(before) == (target, "causal wait", None)
    else:  # one span: the read, as written, whose reason says it waited
        assert reasons[-1] == f"causal: the read waits on {target}"
        assert by_port[port_of(before)] == "primary"
        assert (read.attributes or {}).get("db.statement") == "SELECT 1"
    assert routing(read) == (target, reasons[-1], "causal")


def test_async_statement_spans(
    sandbox: Sandbox, traced: Traced, instrumented: list[Any], ids: dict[int, str], tables: None
) -> None:
    engine = rwsplit.create_async_engine(
        with_driver(sandbox.primary_url, "asyncmy"),
        replicas=[with_driver(u, "asyncmy") for u in sandbox.replica_urls],
        monitor_interval=0.1,
    )
    ran: list[str] = []

    async def reads() -> None:
        try:
            for _ in range(3):
                with traced.tracer.start_as_current_span("task"):
                    async with rwsplit.async_sessionmaker(engine)() as s:
                        ran.append(ids[int((await s.execute(sa.text(SERVER_ID))).scalar_one())])
        finally:
            await engine.dispose()

    try:
        sandbox.wait_caught_up(timeout=15)
        wait_eligible(engine.sync_engine)
        traced.instrument_sqlalchemy(engine)
        otel.instrument(engine, tracer_provider=traced.provider, meter_provider=MeterProvider())
        instrumented.append(engine)
        asyncio.run(reads())
    finally:
        engine.sync_engine.dispose(close=False)
    tasks = [s for s in traced.spans() if s.name == "task"]
    by_port = ports(sandbox)
    assert len(tasks) == 3
    for task, server in zip(tasks, ran, strict=True):
        (statement,) = traced.statements(task)
        assert by_port[port_of(statement)] == server
        assert routing(statement) == routing(task) == (server, "read", "read")


class Metrics:
    """An SDK meter provider whose reader collects on demand."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def collect(self) -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
        """Instrument name → sorted attributes → value (a histogram: its data point)."""
        out: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = out.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        points[key] = point if isinstance(point, HistogramDataPoint) else point.value
        return out


def value(collected: dict[str, Any], name: str, **attributes: str) -> Any:
    return collected.get(name, {}).get(tuple(sorted(attributes.items())))


def test_metrics_are_what_ran(
    sandbox: Sandbox, make_engine: Make, instrumented: list[Any], ids: dict[int, str]
) -> None:
    engine = make_engine()
    metrics = Metrics()
    otel.instrument(engine, "app", meter_provider=metrics.provider, tracer_provider=TracerProvider())
    instrumented.append(engine)
    ran: Counter[str] = Counter()
    with engine.connect() as conn:
        for _ in range(20):
            ran[ran_on(conn, ids)] += 1
        for _ in range(3):
            conn.execute(sa.insert(User).values(name=unique()))
        conn.commit()
        for _ in range(5):
            ran[ran_on(conn, ids)] += 1
    got = metrics.collect()
    for server in ("primary", *REPLICAS):
        wrote = 3 if server == "primary" else 0
        assert value(got, "rwsplit.statements", engine="app", server=server) == ran[server] + wrote
        assert value(got, "rwsplit.server.eligible", engine="app", server=server) == 1
        assert value(got, "rwsplit.server.reachable", engine="app", server=server) == 1
        assert value(got, "rwsplit.server.in_flight", engine="app", server=server) == 0
    kinds = {dict(k)["kind"]: v for k, v in got["rwsplit.decisions"].items()}
    assert kinds == {kind: 0 for kind in KINDS} | {"read": 20, "write": 3, "pinned": 5}
    for replica in REPLICAS:
        assert 0 <= value(got, "rwsplit.replica.lag", engine="app", server=replica) < 1
    assert value(got, "rwsplit.replica.lag", engine="app", server="primary") is None
    for name in ("failovers", "fallbacks", "replicas.out", "replicas.readmitted", "causal_wait.timeouts"):
        assert value(got, f"rwsplit.{name}", engine="app") == 0, name
    engine.stats(reset=True)  # the counters stay monotonic
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    again = metrics.collect()
    replica_statements = sum(value(again, "rwsplit.statements", engine="app", server=r) for r in REPLICAS)
    assert replica_statements == ran["replica1"] + ran["replica2"] + 1
    sandbox.pause_replica(2)
    try:
        wait_for(
            lambda: value(metrics.collect(), "rwsplit.server.eligible", engine="app", server="replica2") == 0,
            5,
            "replica2 eligible 0",
        )
    finally:
        sandbox.resume_replica(2)
    wait_eligible(engine)
    assert value(metrics.collect(), "rwsplit.replicas.out", engine="app") == 1


def test_causal_wait_histogram_and_uninstrument(make_engine: Make, instrumented: list[Any]) -> None:
    engine = make_engine(read_your_writes="causal", causal_timeout=2.0, monitor_interval=5.0)
    metrics = Metrics()
    otel.instrument(engine, meter_provider=metrics.provider, tracer_provider=TracerProvider())
    instrumented.append(engine)
    waited: list[float] = []
    rwsplit.listen(engine, "causal_wait", lambda event: waited.append(event.seconds * 1000))
    Session = rwsplit.sessionmaker(engine)
    for _ in range(6):
        with Session() as s:
            s.add(User(name=unique()))
            s.commit()
            s.execute(sa.text("SELECT 1"))
    assert len(waited) >= 3
    waits = len(waited)
    point = value(metrics.collect(), "rwsplit.causal_wait", engine="default")
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == BUCKETS
    assert point.count == len(waited) == sum(point.bucket_counts)
    assert point.sum == pytest.approx(sum(waited) / 1000, abs=0.001 * len(waited))
    otel.uninstrument(engine)
    with pytest.raises(ValueError, match="not instrumented"):
        otel.uninstrument(engine)
    with Session() as s:
        s.add(User(name=unique()))
        s.commit()
        s.execute(sa.text("SELECT 1"))
    after = metrics.collect()
    assert value(after, "rwsplit.causal_wait", engine="default").count == waits
    assert value(after, "rwsplit.statements", engine="default", server="primary") is None
    otel.instrument(engine, meter_provider=metrics.provider, tracer_provider=TracerProvider())
    with pytest.raises(ValueError, match="instrumented already"):
        otel.instrument(engine, meter_provider=metrics.provider)
    on_primary = value(metrics.collect(), "rwsplit.statements", engine="default", server="primary")
    assert on_primary == engine.stats().statements["primary"] >= 7  # since the engine started


def test_the_readme_example_runs_as_written(
    sandbox: Sandbox, make_engine: Make, traced: Traced, instrumented: list[Any], ids: dict[int, str]
) -> None:
    engine = make_engine()
    metrics = Metrics()
    source = example("otel.instrument(engine")
    namespace = {"engine": engine, "tracer_provider": traced.provider, "meter_provider": metrics.provider}
    exec(compile(source, "README: otel", "exec"), namespace)
    instrumented.append(engine)
    assert SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    with traced.tracer.start_as_current_span("request"), rwsplit.sessionmaker(engine)() as s:
        ran = ran_on(s, ids)
    (statement,) = traced.statements(traced.named("request"))
    assert routing(statement) == (ran, "read", "read")
    assert value(metrics.collect(), "rwsplit.statements", engine="default", server=ran) == 1
