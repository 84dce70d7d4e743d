"""README rule 7 and Failure behaviour: a replica or the primary killed, paused, broken or frozen under
load."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from helpers import FAULT_TABLE as TABLE
from helpers import status_of as _row
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox
from rwsplit.testing import ConsistencyLoad, verify_replicated

pytestmark = pytest.mark.usefixtures("fault_table")


@pytest.fixture()
def engine(fault_engine: rwsplit.RoutingEngine) -> rwsplit.RoutingEngine:
    """max_lag=1.0 and 3 s read/write timeouts (``fault_engine`` in conftest)."""
    return fault_engine


def _load(engine: rwsplit.RoutingEngine, mode: str) -> ConsistencyLoad:
    return ConsistencyLoad(engine, TABLE, mode=mode, threads=8)


@pytest.mark.parametrize("mode", ["session", "causal"])
def test_replica_killed_mid_run(sandbox: Sandbox, engine: rwsplit.RoutingEngine, mode: str) -> None:
    with _load(engine, mode) as load:
        time.sleep(1.0)
        sandbox.kill(1)
        time.sleep(1.5)
        assert not _row(engine, "replica1").eligible
        sandbox.start(1)
        wait_for(lambda: _row(engine, "replica1").eligible, 10)
        time.sleep(0.5)
    r = load.results
    assert r.read_errors == [], "\n".join(r.read_errors)
    assert r.write_errors == [], "\n".join(r.write_errors)
    assert r.ryw_violations == 0 and r.stale_reads == 0
    assert r.reads > 50 and r.replica_reads > 0 and len(r.acked) > 20
    verify_replicated(sandbox, TABLE, r)


def test_paused_and_broken_replicas_are_excluded_and_reported(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine
) -> None:
    with _load(engine, "session") as load:
        time.sleep(0.5)
        sandbox.pause_replica(1)
        sandbox.break_replica(2)
        try:
            wait_for(
                lambda: not _row(engine, "replica1").eligible and not _row(engine, "replica2").eligible, 3
            )
            broken = _row(engine, "replica2")
            assert broken.reachable and broken.replicating is False
            assert "Duplicate entry" in (broken.error or "")
            time.sleep(2.5)  # well past max_lag: a read from either would now be stale
        finally:
            sandbox.resume_replica(1)
            sandbox.repair_replica(2)
        wait_for(lambda: _row(engine, "replica1").eligible and _row(engine, "replica2").eligible, 10)
    r = load.results
    assert r.read_errors == [] and r.write_errors == []
    assert r.stale_reads == 0 and r.ryw_violations == 0
    verify_replicated(sandbox, TABLE, r)


@pytest.mark.parametrize("mode", ["session", "causal"])
def test_primary_killed_reads_continue_writes_fail_fast_then_recover(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, mode: str
) -> None:
    password = sa.make_url(sandbox.primary_url).password
    with _load(engine, mode) as load:
        time.sleep(1.0)
        sandbox.kill("primary")
        killed_at = time.monotonic()
        time.sleep(2.0)
        with load.results.lock:
            reads_while_down = load.results.reads
        Session = rwsplit.sessionmaker(engine)
        started = time.monotonic()
        with pytest.raises(rwsplit.PrimaryUnavailable) as err, Session() as s:
            s.execute(sa.text(f"INSERT INTO {TABLE} VALUES (1, 'x', 0)"))
        assert time.monotonic() - started < 5.0
        message = str(err.value)
        assert "primary" in message and "***" in message and password not in message
        wait_for(lambda: not _row(engine, "primary").reachable, 2)
        assert all(_row(engine, r).eligible for r in ("replica1", "replica2"))
        time.sleep(1.0)
        with load.results.lock:
            assert load.results.reads > reads_while_down  # reads kept flowing to replicas
        sandbox.start("primary")
        recovered_at = time.monotonic()
        wait_for(lambda: _row(engine, "primary").reachable, 10)
        time.sleep(1.5)
        acked_before = len(load.results.acked)
        time.sleep(1.0)
        assert len(load.results.acked) > acked_before  # writes work again, same engine
    r = load.results
    assert r.read_errors == [], r.read_errors[:3]
    assert r.write_errors, "writes during the outage must have failed"
    assert all("PrimaryUnavailable" in e or "OperationalError" in e for e in r.write_errors), r.write_errors[
        :3
    ]
    assert r.ryw_violations == 0
    assert recovered_at - killed_at < 30
    verify_replicated(sandbox, TABLE, r)


def test_a_frozen_replica_never_hangs_the_app(sandbox: Sandbox, engine: rwsplit.RoutingEngine) -> None:
    with _load(engine, "session") as load:
        time.sleep(0.5)
        sandbox.freeze(2)
        try:
            wait_for(lambda: not _row(engine, "replica2").eligible, 3)
            time.sleep(4.0)  # longer than read_timeout: any read stuck on it has timed out and retried
            assert engine.monitor.alive
        finally:
            sandbox.thaw(2)
        wait_for(lambda: _row(engine, "replica2").eligible, 10)
    r = load.results
    assert r.read_errors == [] and r.write_errors == []
    assert r.ryw_violations == 0
    verify_replicated(sandbox, TABLE, r)


def test_a_frozen_primary_bounds_every_wait(sandbox: Sandbox, engine: rwsplit.RoutingEngine) -> None:
    Session = rwsplit.sessionmaker(engine)
    sandbox.freeze("primary")
    try:
        wait_for(lambda: not _row(engine, "primary").reachable, 3)
        with Session() as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target != "primary"
        started = time.monotonic()
        with pytest.raises((rwsplit.PrimaryUnavailable, sa.exc.OperationalError)), Session() as s:
            s.execute(sa.text(f"INSERT INTO {TABLE} VALUES (2, 'x', 0)"))
            s.commit()
        assert time.monotonic() - started < 10.0
    finally:
        sandbox.thaw("primary")
    wait_for(lambda: _row(engine, "primary").reachable, 10)
    with Session() as s:
        s.execute(sa.text(f"INSERT INTO {TABLE} VALUES (3, 'after thaw', 0)"))
        s.commit()
    sandbox.wait_caught_up()


@pytest.mark.parametrize("attempts", [0, 1, 2])
def test_failed_replica_reads_retry_within_bounds_then_use_the_primary(
    sandbox: Sandbox, caught_up, attempts: int
) -> None:
    # No probe between the kills and the reads (the monitor would take the replicas out first and
    # no read would fail): the reads themselves must find the dead replicas.
    eng = rwsplit.create_engine(
        sandbox.primary_url,
        replicas=sandbox.replica_urls,
        retry=rwsplit.Retry(replica_attempts=attempts),
        monitor_interval=30,
    )
    reports: list[str] = []
    original = eng._report_replica_failure
    eng._report_replica_failure = lambda name, exc: (reports.append(name), original(name, exc))  # type: ignore[method-assign]
    try:
        with rwsplit.sessionmaker(eng)(read_your_writes="off") as s, eng.connect() as conn:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target.startswith("replica") and conn.last_target.startswith("replica")
            sandbox.kill(1)
            sandbox.kill(2)
            try:
                assert s.execute(sa.text("SELECT 2")).scalar() == 2
                assert conn.execute(sa.text("SELECT 2")).scalar() == 2
                assert (s.last_target, conn.last_target) == ("primary", "primary")
            finally:
                sandbox.start(1)
                sandbox.start(2)
    finally:
        eng.dispose()
    # The session's and the connection's own replica failed; with retries left, the other did too.
    assert 2 <= len(reports) <= 2 * min(attempts + 1, 2)
    caught_up()
