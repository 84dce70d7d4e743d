"""Observability against the sandbox: the decision log, ``engine.stats()`` and rwsplit events.

Counts are checked against where statements really ran (``@@GLOBAL.server_id``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import REPLICAS, SERVER_ID, unique, wait_eligible
from models import User
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox

Make = Callable[..., rwsplit.RoutingEngine]


def _route_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rwsplit.route"]


def test_the_decision_log_says_where_and_why(make_engine: Make, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    Session = rwsplit.sessionmaker(engine)
    secret = unique("secret-value")
    with caplog.at_level(logging.DEBUG, logger="rwsplit.route"), Session() as s:
        s.execute(sa.text(SERVER_ID))
        s.add(User(name=secret))
        s.commit()
        s.execute(sa.select(User.id).where(User.name == secret))
    records = _route_records(caplog)
    read, flush, pinned = records[0], records[1], records[-1]
    assert read.rwsplit_target in REPLICAS and read.rwsplit_reason == "read"  # type: ignore[attr-defined]
    assert isinstance(read.rwsplit_lag, float)  # type: ignore[attr-defined]
    assert read.getMessage() == f"{read.rwsplit_target}: read"  # type: ignore[attr-defined]
    assert flush.rwsplit_target == "primary" and flush.rwsplit_reason == "write: flush"  # type: ignore[attr-defined]
    assert flush.rwsplit_lag is None  # type: ignore[attr-defined]
    assert pinned.getMessage() == "primary: read-your-writes: session wrote"
    assert all(secret not in r.getMessage() for r in caplog.records)  # never parameters


def test_statement_text_only_when_asked_and_truncated(
    make_engine: Make, caplog: pytest.LogCaptureFixture
) -> None:
    plain = make_engine()
    verbose = make_engine(log_statements=True)
    long_sql = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(200))
    with caplog.at_level(logging.DEBUG, logger="rwsplit.route"):
        with plain.connect() as conn:
            conn.execute(sa.text(long_sql))
        with verbose.connect() as conn:
            conn.execute(sa.text("SELECT id FROM test_routing_user WHERE name = :n"), {"n": "hidden-param"})
            conn.execute(sa.text(long_sql))
    quiet, short, truncated = (r.getMessage() for r in _route_records(caplog))
    assert "SELECT" not in quiet
    assert short.endswith("| SELECT id FROM test_routing_user WHERE name = :n")
    assert "hidden-param" not in short
    assert len(truncated.split(" | ", 1)[1]) == 200


def test_stats_count_what_ran_on_each_server(sandbox: Sandbox, make_engine: Make) -> None:
    engine = make_engine()
    ids = {sandbox.server_id(name): name for name in sandbox.server_names}
    ran: Counter[str] = Counter()
    engine.stats(reset=True)
    Session = rwsplit.sessionmaker(engine)
    for i in range(60):
        with Session() as s:
            ran[ids[s.execute(sa.text(SERVER_ID)).scalar_one()]] += 1
            if i % 3 == 0:
                s.add(User(name=unique()))
                s.commit()  # one flush decision on the primary
                ran[ids[s.execute(sa.text(SERVER_ID)).scalar_one()]] += 1  # pinned: the primary
    with engine.connect() as conn:  # Core counts the same way
        for _ in range(10):
            ran[ids[conn.execute(sa.text(SERVER_ID)).scalar_one()]] += 1
    stats = engine.stats()
    flush_binds = stats.kinds["write"]  # each flush: once per connection the ORM asks for
    assert 20 <= flush_binds <= 40
    assert stats.statements.get("primary", 0) == ran["primary"] + flush_binds
    for name in REPLICAS:
        assert stats.statements.get(name, 0) == ran[name]
    assert stats.kinds["pinned"] == 20
    assert stats.reads == 90 and stats.replica_reads == ran["replica1"] + ran["replica2"] == 70
    assert stats.offload == pytest.approx(70 / 90)
    assert stats.fallbacks == 0 and stats.failovers == 0
    again = engine.stats(reset=True)
    assert again.statements == stats.statements
    with Session() as s:
        s.execute(sa.text(SERVER_ID))
    after = engine.stats()
    assert after.reads == 1 and sum(after.statements.values()) == 1 and after.since > stats.since


def test_stats_from_many_threads_lose_no_count(make_engine: Make) -> None:
    engine = make_engine(pool_size=8)
    engine.stats(reset=True)
    Session = rwsplit.sessionmaker(engine)

    def reads() -> None:
        with Session() as s:
            for _ in range(100):
                s.execute(sa.text("SELECT 1"))

    threads = [threading.Thread(target=reads) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = engine.stats()  # the threads are done: their counts are folded into the total
    assert stats.reads == 800 and sum(stats.statements.values()) == 800


def test_causal_waits_are_counted_and_timed(sandbox: Sandbox, make_engine: Make, caught_up) -> None:
    engine = make_engine(read_your_writes="causal", max_lag=30, causal_timeout=0.2)
    Session = rwsplit.sessionmaker(engine)
    for r in (1, 2):
        sandbox.delay_replica(r, 30)
    try:
        engine.stats(reset=True)
        with Session() as s:
            s.add(User(name=unique()))
            s.commit()
            s.execute(sa.text("SELECT 1"))  # waits 0.2 s on a replica, then the primary
            assert s.last_target == "primary"
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        caught_up(60)
    stats = engine.stats()
    assert stats.causal_waits.count == 1 and stats.causal_waits.timeouts == 1
    assert stats.causal_waits.p50_ms is not None and 190 <= stats.causal_waits.p50_ms < 2000
    assert stats.fallbacks == 1 and stats.kinds["fallback"] == 1


def test_route_events_and_listener_errors(make_engine: Make, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    seen: list[rwsplit.RouteEvent] = []

    @rwsplit.listens_for(engine, "route")
    def on_route(event: rwsplit.RouteEvent) -> None:
        seen.append(event)

    def broken(event: Any) -> None:
        raise RuntimeError("listener bug")

    rwsplit.listen(engine, "route", broken)
    with rwsplit.sessionmaker(engine)() as s, caplog.at_level(logging.ERROR, logger="rwsplit"):
        assert s.execute(sa.text("SELECT 1")).scalar() == 1  # a failing listener fails nothing
    assert [(e.target in REPLICAS, e.reason, e.kind) for e in seen] == [(True, "read", "read")]
    assert "listener bug" in caplog.text
    rwsplit.remove_listener(engine, "route", on_route)
    rwsplit.remove_listener(engine, "route", broken)
    with rwsplit.sessionmaker(engine)() as s:
        s.execute(sa.text("SELECT 1"))
    assert len(seen) == 1
    with pytest.raises(ValueError, match="replica_down"):
        rwsplit.listen(engine, "replica_gone", on_route)
    with pytest.raises(ValueError, match="not listening"):
        rwsplit.remove_listener(engine, "route", on_route)
    with pytest.raises(TypeError, match="RoutingEngine"):
        rwsplit.listen(engine.primary, "route", on_route)


def test_replica_events_and_failover_counts(sandbox: Sandbox, make_engine: Make) -> None:
    engine = make_engine(monitor_interval=1.0)  # the read, not a probe, finds the replica dead
    events: list[rwsplit.ReplicaEvent] = []
    for name in ("replica_down", "replica_up"):
        rwsplit.listen(engine, name, events.append)
    engine.stats(reset=True)
    Session = rwsplit.sessionmaker(engine, read_your_writes="off")
    with Session() as s:
        s.execute(sa.text("SELECT 1"))
        victim = s.last_target
        assert victim in REPLICAS
        number = int(victim[-1])
        sandbox.kill(number)
        try:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1  # failed over, not failed
            assert s.last_target != victim
        finally:
            sandbox.start(number)
    wait_eligible(engine)
    stats = engine.stats()
    assert stats.failovers == 1
    assert stats.replicas_out >= 1 and stats.replicas_readmitted >= 1
    downs = [e for e in events if e.event == "replica_down"]
    assert downs and downs[0].name == victim
    assert any(e.event == "replica_up" and e.name == victim for e in events)
    sandbox.wait_caught_up(timeout=60)


def test_lag_exceeded_event(sandbox: Sandbox, make_engine: Make, caught_up) -> None:
    engine = make_engine(max_lag=0.5)
    lagging: list[rwsplit.ReplicaEvent] = []
    rwsplit.listen(engine, "lag_exceeded", lagging.append)
    stop = threading.Event()

    def writes() -> None:  # steady commits, so the delayed replica's lag shows
        with sandbox.connect() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO app.test_routing_user (name) VALUES ('lag')")
                time.sleep(0.02)

    sandbox.delay_replica(1, 2)
    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    try:
        wait_for(lambda: any(e.name == "replica1" for e in lagging), 15, "lag_exceeded on replica1")
    finally:
        stop.set()
        writer.join(5)
        sandbox.delay_replica(1, 0)
        caught_up(60)
    event = next(e for e in lagging if e.name == "replica1")
    assert event.lag is not None and event.lag > 0.5
    assert "replica2" not in {e.name for e in lagging}
