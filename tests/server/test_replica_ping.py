"""Replicas ping only idle pooled connections (the primary every checkout): dead replica connections
cost no failed read either way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import FAST

import rwsplit
from rwsplit import build
from rwsplit.sandbox import Sandbox


@pytest.fixture()
def make(sandbox: Sandbox, tables: None, caught_up: Callable[..., None]) -> Iterator[Callable[..., Any]]:
    made: list[rwsplit.RoutingEngine] = []

    def build_engine(**kw: Any) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, max_lag=30, **kw)
        made.append(eng)
        return eng

    caught_up()
    yield build_engine
    for eng in made:
        eng.dispose()


def _kill_app_connections(sandbox: Sandbox, server: str) -> int:
    """Kill every connection of the application's account on ``server`` (its idle pooled ones)."""
    user = sa.make_url(sandbox.primary_url).username
    killed = 0
    with sandbox.connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {int(pid)}")
            killed += 1
    return killed


def _reads(eng: rwsplit.RoutingEngine, n: int, **session: Any) -> list[str | None]:
    Session = rwsplit.sessionmaker(eng)
    targets = []
    for _ in range(n):
        with Session(**session) as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            targets.append(s.last_target)
    return targets


def test_pings_per_role(make: Callable[..., Any]) -> None:
    eng = make()
    assert not any(e.pool._pre_ping for e in (eng.primary, eng._primary_reads, *eng.replicas))
    for given in (True, False):
        eng = make(pool_pre_ping=given)
        engines = (eng.primary, eng._primary_reads, *eng.replicas)
        assert all(e.pool._pre_ping is given for e in engines)


def test_server_engines_dispatch_no_statement_events(make: Callable[..., Any]) -> None:
    """rwsplit's connect retry and failure marks wrap the dialect instead of listening: any dialect or
    connection listener would make SQLAlchemy dispatch events on every statement (~3 % CPU)."""
    eng = make(read_your_writes="causal")
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(sa.text("UPDATE test_routing_user SET name = name WHERE id = -1"))
        s.commit()
        assert s.execute(sa.text("SELECT 1")).scalar() == 1
    for server in (eng.primary, eng._primary_reads, *eng.replicas):
        assert not server._has_events and not server.dialect._has_events, server


def test_the_apps_do_connect_listener_runs_before_the_connect_retry(make: Callable[..., Any]) -> None:
    """An app's ``do_connect`` listener (a fresh token per connect …) changes what rwsplit connects with."""
    eng = make()
    calls = []

    @sa.event.listens_for(eng.primary, "do_connect")
    def _token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        calls.append(1)
        cparams["init_command"] = "SET @app_token = 42"

    eng.primary.dispose()
    with eng.connect() as conn:
        conn.execute(sa.text("UPDATE test_routing_user SET name = name WHERE id = -1"))
        assert conn.execute(sa.text("SELECT @app_token")).scalar() == 42
        conn.rollback()
    assert calls == [1]


def test_pools_keep_what_they_opened_unless_the_app_sizes_them(make: Callable[..., Any]) -> None:
    """Each pool keeps up to 15 connections (SQLAlchemy's cap of 5 + 10): 8 returned at once are
    all kept and reused, none closed and reopened. Any pool setting given: SQLAlchemy's defaults."""
    eng = make()
    replica = eng.replicas[0]
    opened: list[object] = []
    sa.event.listen(replica, "connect", lambda *_: opened.append(1))
    for _ in range(2):
        held = [replica.connect() for _ in range(8)]
        for conn in held:
            conn.close()
    assert len(opened) == 8  # the second round reused the first round's connections
    assert replica.pool.checkedin() == 8
    for e in (eng.primary, eng._primary_reads, *eng.replicas):
        assert (e.pool.size(), e.pool._max_overflow) == (15, 0)  # type: ignore[attr-defined]
    sized = make(pool_size=3)
    assert (sized.primary.pool.size(), sized.primary.pool._max_overflow) == (3, 10)  # type: ignore[attr-defined]
    unpooled = make(poolclass=sa.pool.NullPool)
    assert all(isinstance(e.pool, sa.pool.NullPool) for e in (unpooled.primary, *unpooled.replicas))


@pytest.mark.parametrize("idle", [True, False])
def test_dead_pooled_replica_connections_cost_no_failed_read(
    sandbox: Sandbox, make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    eng = make(balancer="round_robin")
    _reads(eng, 10)  # both replicas' pools hold connections
    if idle:
        time.sleep(build.IDLE_PING + 0.2)
    else:  # as if used a moment ago: no ping, the read fails and is retried elsewhere
        monkeypatch.setattr(build, "IDLE_PING", 3600.0)
    assert _kill_app_connections(sandbox, "replica1") > 0
    eng.stats(reset=True)
    targets = _reads(eng, 10)
    stats = eng.stats()
    assert all(t is not None for t in targets)  # every read answered
    if idle:  # the ping found them dead: replaced, no failover, replica1 still serves
        assert stats.failovers == 0, stats
        assert "replica1" in targets
    else:
        assert stats.failovers >= 1, stats


def _write(eng: rwsplit.RoutingEngine) -> None:
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(sa.text("DO 1"))  # unknown to the classifier: runs on the primary
        s.execute(sa.text("SELECT 1"))
        s.commit()


def test_idle_dead_primary_connections_are_replaced_before_a_statement(
    sandbox: Sandbox, make: Callable[..., Any]
) -> None:
    eng = make()
    for _ in range(3):
        _write(eng)
    time.sleep(build.IDLE_PING + 0.2)
    assert _kill_app_connections(sandbox, "primary") > 0
    for _ in range(5):
        _write(eng)  # the ping found the dead connection: nothing failed


def test_a_primary_connection_that_died_right_after_use_fails_once_and_is_not_resent(
    sandbox: Sandbox, make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trade of pinging only idle connections: one statement fails (never re-sent), then the
    pool is discarded and the next ones work."""
    eng = make()
    _write(eng)
    monkeypatch.setattr(build, "IDLE_PING", 3600.0)
    assert _kill_app_connections(sandbox, "primary") > 0
    failed = 0
    for _ in range(5):
        try:
            _write(eng)
        except sa.exc.OperationalError:
            failed += 1
    assert failed <= 1
