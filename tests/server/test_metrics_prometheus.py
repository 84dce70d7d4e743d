"""``rwsplit.integrations.prometheus`` against the sandbox: each scrape's samples are what really ran.

Statements are counted by where ``@@GLOBAL.server_id`` says they ran; replica states by pausing
replication; causal waits by the ``route`` events' reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
import pytest
import sqlalchemy as sa
from helpers import REPLICAS, SERVER_ID, unique, wait_eligible, with_driver
from metrics_readme import example, free_port
from models import User
from prometheus_client import CollectorRegistry, generate_latest
from waiting import wait_for

import rwsplit
from rwsplit.integrations import prometheus
from rwsplit.integrations._metrics import BUCKETS
from rwsplit.integrations.prometheus import RoutingCollector
from rwsplit.sandbox import Sandbox

Make = Callable[..., rwsplit.RoutingEngine]
PRIMARY_KINDS = ("write", "lock", "session")


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name``: sorted labels → value."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def ran_on(conn: Any, ids: dict[int, str]) -> str:
    return ids[int(conn.execute(sa.text(SERVER_ID)).scalar_one())]


def test_counts_and_gauges_are_what_ran(
    sandbox: Sandbox, make_engine: Make, registry: CollectorRegistry, ids: dict[int, str]
) -> None:
    engine = make_engine()
    prometheus.register(engine, name="app", registry=registry)
    ran: Counter[str] = Counter()
    with engine.connect() as conn:
        for _ in range(20):
            ran[ran_on(conn, ids)] += 1  # reads: the replicas
        for _ in range(3):
            conn.execute(sa.insert(User).values(name=unique()))  # writes: the primary
        conn.commit()
        for _ in range(5):
            ran[ran_on(conn, ids)] += 1  # read-your-writes: the primary
    assert ran["primary"] == 5 and ran["replica1"] + ran["replica2"] == 20
    for server in ("primary", *REPLICAS):
        wrote = 3 if server == "primary" else 0
        count = sample(registry, "rwsplit_statements_total", engine="app", server=server)
        assert count == ran[server] + wrote
    decisions = {dict(k)["kind"]: v for k, v in samples(registry, "rwsplit_decisions_total").items()}
    assert decisions == {kind: 0 for kind in rwsplit.observe.KINDS} | {"read": 20, "write": 3, "pinned": 5}
    # The README's PromQL offload ratio, on the samples: replica statements / reads.
    replica = sum(sample(registry, "rwsplit_statements_total", engine="app", server=r) or 0 for r in REPLICAS)
    reads = sum(n for kind, n in decisions.items() if kind not in PRIMARY_KINDS)
    assert replica / reads == engine.stats().offload == 20 / 25
    for server in ("primary", *REPLICAS):
        assert sample(registry, "rwsplit_server_eligible", engine="app", server=server) == 1
        assert sample(registry, "rwsplit_server_reachable", engine="app", server=server) == 1
        assert sample(registry, "rwsplit_server_in_flight", engine="app", server=server) == 0
    for replica in REPLICAS:
        lag = sample(registry, "rwsplit_replica_lag_seconds", engine="app", server=replica)
        assert lag is not None and 0 <= lag < 1
    assert sample(registry, "rwsplit_replica_lag_seconds", engine="app", server="primary") is None
    for name in ("failovers", "fallbacks", "replicas_out", "replicas_readmitted", "causal_wait_timeouts"):
        assert sample(registry, f"rwsplit_{name}_total", engine="app") == 0
    assert sample(registry, "rwsplit_causal_wait_seconds_count", engine="app") == 0
    with engine.begin() as conn:  # a transaction holds a primary connection while it runs
        conn.execute(sa.insert(User).values(name=unique()))
        assert sample(registry, "rwsplit_server_in_flight", engine="app", server="primary") == 1
    assert sample(registry, "rwsplit_server_in_flight", engine="app", server="primary") == 0
    password = sa.make_url(sandbox.primary_url).password
    assert password and password not in generate_latest(registry).decode()


def test_counters_do_not_go_down_when_stats_are_reset(make_engine: Make, registry: CollectorRegistry) -> None:
    engine = make_engine()

    def reads(n: int) -> None:
        with engine.connect() as conn:
            for _ in range(n):
                conn.execute(sa.text("SELECT 1"))

    def replica_statements() -> float:
        return sum(
            sample(registry, "rwsplit_statements_total", engine="default", server=r) or 0 for r in REPLICAS
        )

    reads(2)
    engine.stats(reset=True)  # before register: the counters still count from the engine's start
    reads(3)
    prometheus.register(engine, registry=registry)
    assert replica_statements() == 5
    reads(10)
    assert replica_statements() == 15
    assert engine.stats(reset=True).reads == 13
    reads(4)
    assert engine.stats(reset=True).reads == 4  # two resets before the next scrape
    reads(5)
    assert engine.stats().reads == 5  # stats() still restarts from each reset
    assert replica_statements() == 24
    assert sample(registry, "rwsplit_decisions_total", engine="default", kind="read") == 24


def test_a_paused_replica_is_ineligible_with_rising_lag(
    sandbox: Sandbox, make_engine: Make, registry: CollectorRegistry, caught_up: Callable[..., None]
) -> None:
    engine = make_engine()
    prometheus.register(engine, registry=registry)
    events: list[rwsplit.ReplicaEvent] = []
    for name in ("replica_down", "replica_up"):
        rwsplit.listen(engine, name, events.append)
    out0 = sample(registry, "rwsplit_replicas_out_total", engine="default")
    back0 = sample(registry, "rwsplit_replicas_readmitted_total", engine="default")

    def gauge(name: str, server: str = "replica1") -> float | None:
        return sample(registry, name, engine="default", server=server)

    stop = threading.Event()

    def writes() -> None:  # commits keep coming: the paused replica falls further behind
        with sandbox.connect() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO app.test_routing_user (name) VALUES ('lag')")
                time.sleep(0.02)

    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    try:
        sandbox.pause_replica(1)
        try:
            wait_for(lambda: gauge("rwsplit_server_eligible") == 0, 5, "replica1 eligible 0")
            wait_for(lambda: (gauge("rwsplit_replica_lag_seconds") or 0) > 0.2, 5, "replica1 lag > 0.2 s")
            first = gauge("rwsplit_replica_lag_seconds")
            assert first is not None
            wait_for(lambda: (gauge("rwsplit_replica_lag_seconds") or 0) > first + 0.5, 5, "lag rising")
            assert gauge("rwsplit_server_eligible", "replica2") == 1
            assert gauge("rwsplit_server_reachable") == 1  # up, but not replicating
        finally:
            sandbox.resume_replica(1)
        wait_for(lambda: gauge("rwsplit_server_eligible") == 1, 10, "replica1 eligible again")
    finally:
        stop.set()
        writer.join(5)
    caught_up()
    wait_eligible(engine)
    assert out0 is not None and back0 is not None
    downs = sum(e.event == "replica_down" for e in events)
    ups = sum(e.event == "replica_up" for e in events)
    assert downs >= 1 and ("replica1", "replica_down") in {(e.name, e.event) for e in events}
    assert sample(registry, "rwsplit_replicas_out_total", engine="default") == out0 + downs
    assert sample(registry, "rwsplit_replicas_readmitted_total", engine="default") == back0 + ups


def test_causal_wait_histogram(
    sandbox: Sandbox, make_engine: Make, registry: CollectorRegistry, caught_up: Callable[..., None]
) -> None:
    engine = make_engine(read_your_writes="causal", max_lag=30, causal_timeout=0.2)
    prometheus.register(engine, registry=registry)
    waits: list[tuple[float, bool]] = []  # (ms, reached) of each causal wait, as its event tells

    rwsplit.listen(engine, "causal_wait", lambda e: waits.append((e.seconds * 1000, e.reached)))
    Session = rwsplit.sessionmaker(engine)
    for _ in range(8):
        with Session() as s:
            s.add(User(name=unique()))
            s.commit()
            s.execute(sa.text("SELECT 1"))  # waits on a replica for the commit, briefly
    for r in (1, 2):
        sandbox.delay_replica(r, 30)
    try:
        with Session() as s:
            s.add(User(name=unique()))
            s.commit()
            s.execute(sa.text("SELECT 1"))  # waits 0.2 s, then reads the primary
            assert s.last_target == "primary"
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        caught_up(60)
    assert sum(reached for _, reached in waits) >= 1 and waits[-1][1] is False
    assert sample(registry, "rwsplit_causal_wait_seconds_count", engine="default") == len(waits)
    assert sample(registry, "rwsplit_causal_wait_timeouts_total", engine="default") == 1
    total = sample(registry, "rwsplit_causal_wait_seconds_sum", engine="default")
    assert total == pytest.approx(sum(ms for ms, _ in waits) / 1000, abs=0.001 * len(waits))
    checked = 0
    for bound in (*BUCKETS, float("inf")):  # skip a bound a wait is within 0.5 ms of (float sums)
        if any(abs(ms - bound * 1000) <= 0.5 for ms, _ in waits):
            continue
        le = "+Inf" if bound == float("inf") else repr(bound)
        within = sum(ms <= bound * 1000 for ms, _ in waits)
        assert sample(registry, "rwsplit_causal_wait_seconds_bucket", engine="default", le=le) == within, le
        checked += 1
    assert checked >= len(BUCKETS) - 2


def test_an_async_engine(
    sandbox: Sandbox, registry: CollectorRegistry, ids: dict[int, str], tables: None
) -> None:
    engine = rwsplit.create_async_engine(
        with_driver(sandbox.primary_url, "asyncmy"),
        replicas=[with_driver(u, "asyncmy") for u in sandbox.replica_urls],
        monitor_interval=0.1,
    )
    ran: Counter[str] = Counter()

    async def reads() -> None:
        try:
            async with engine.connect() as conn:
                for _ in range(12):
                    ran[ids[int((await conn.execute(sa.text(SERVER_ID))).scalar_one())]] += 1
        finally:
            await engine.dispose()

    try:
        sandbox.wait_caught_up(timeout=15)
        wait_eligible(engine.sync_engine)
        prometheus.register(engine, name="async", registry=registry)
        asyncio.run(reads())
    finally:
        engine.sync_engine.dispose(close=False)
    assert sum(ran[r] for r in REPLICAS) == 12
    for server in ("primary", *REPLICAS):
        assert sample(registry, "rwsplit_statements_total", engine="async", server=server) == ran[server]


def test_one_collector_per_registry_and_unregister(make_engine: Make, registry: CollectorRegistry) -> None:
    first, second = make_engine(), make_engine()
    collector = prometheus.register(first, registry=registry)
    assert prometheus.register(second, name="reports", registry=registry) is collector
    assert collector.names == ("default", "reports")
    with pytest.raises(ValueError, match="already collected as 'reports'"):
        prometheus.register(first, name="reports", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):  # a second collector: same names
        registry.register(RoutingCollector(first, name="other"))
    with pytest.raises(TypeError, match="RoutingEngine"):
        prometheus.register(first.primary, name="plain", registry=registry)
    with second.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE rwsplit_statements_total counter") == 1
    assert (
        sum(sample(registry, "rwsplit_statements_total", engine="reports", server=r) or 0 for r in REPLICAS)
        == 1
    )
    prometheus.unregister("reports", registry)
    assert sample(registry, "rwsplit_statements_total", engine="reports", server="primary") is None
    assert sample(registry, "rwsplit_statements_total", engine="default", server="primary") == 0
    prometheus.unregister(registry=registry)
    assert "rwsplit_" not in generate_latest(registry).decode()
    with pytest.raises(KeyError):
        prometheus.unregister(registry=registry)


@pytest.fixture()
def default_registry_clean() -> Iterator[None]:
    yield
    for name in ("default", "reports"):
        with contextlib.suppress(KeyError):
            prometheus.unregister(name)
    assert "rwsplit_" not in generate_latest(prometheus_client.REGISTRY).decode()


def test_the_readme_example_runs_as_written(make_engine: Make, default_registry_clean: None) -> None:
    engine, reports_engine = make_engine(), make_engine()
    port = free_port()
    source = example("prometheus_client import start_http_server").replace("9100", str(port))
    exec(compile(source, "README: prometheus", "exec"), {"engine": engine, "reports_engine": reports_engine})
    with reports_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'rwsplit_server_eligible{engine="default",server="replica1"} 1.0' in scraped
    reads = r'rwsplit_statements_total\{engine="reports",server="replica\d"\} (\S+)'
    replica_reads = re.findall(reads, scraped)
    assert sorted(float(v) for v in replica_reads) == [0.0, 1.0]
