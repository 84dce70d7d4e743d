"""Faults under concurrent load, hostile SQL and misconfiguration, against the real sandbox.

Each fault test runs 8 threads of readers and writers for a few seconds while one server is
killed, paused, broken or frozen, then checks that no read failed where none may, that every
acknowledged write is on the primary and, after catch-up, on every replica, and that no session
read past its own writes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa
from waiting import wait_for

import rwsplit
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox
from rwsplit.testing import ConsistencyLoad, checksum, create_table, verify_replicated

TABLE = "app.fault_rows"


@pytest.fixture(scope="module", autouse=True)
def fault_table(sandbox: Sandbox) -> Iterator[None]:
    create_table(sandbox, TABLE)
    yield
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {TABLE}")
    sandbox.wait_caught_up()


def _load(engine: rwsplit.RoutingEngine, mode: str) -> ConsistencyLoad:
    return ConsistencyLoad(engine, TABLE, mode=mode, threads=8)


def _row(engine: rwsplit.RoutingEngine, name: str) -> rwsplit.ServerReport:
    return {r.name: r for r in engine.status()}[name]


@pytest.fixture()
def engine(sandbox: Sandbox, caught_up) -> Iterator[rwsplit.RoutingEngine]:
    caught_up()
    eng = rwsplit.create_engine(
        sandbox.primary_url,
        replicas=sandbox.replica_urls,
        max_lag=1.0,
        connect_args={"read_timeout": 3, "write_timeout": 3},
    )
    yield eng
    eng.dispose()


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
        assert password not in str(err.value)
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


# ------------------------------------------------------------------ hostile SQL

HOSTILE = [
    "/* SELECT */ DELETE FROM app.fault_rows",
    "SELECT 1; DELETE FROM app.fault_rows",
    "SELECT 1 /*! ; DELETE FROM app.fault_rows */",
    "SELECT /*!50000 1 FROM DUAL; UPDATE app.fault_rows SET v = 'x' */",
    "/*M! DELETE FROM app.fault_rows */",
    "/*+ SET_VAR(sql_mode='') */ INSERT INTO app.fault_rows VALUES (9, 'hint', 0)",
    "SELECT * FROM app.fault_rows WHERE v = '' --'\nUNION SELECT 1,2,3 FROM DUAL; DELETE FROM app.fault_rows",
    "  \n\t(SELECT 1) ; INSERT INTO app.fault_rows VALUES (10, 'x', 0)",
    "WITH x AS (SELECT 1) DELETE FROM app.fault_rows",
    "SELECT id FROM app.fault_rows INTO OUTFILE '/tmp/rwsplit-hostile'",
    "SELECT id INTO @x FROM app.fault_rows LIMIT 1",
    "SELECT GET_LOCK('rwsplit', 0)",
    "SELECT NEXTVAL(app.nosuchseq)",
    "SELECT app.nosuchfunc(1)",
    "select`id`from`app`.`fault_rows`for update",
    "SELECT 1 FROM DUAL LOCK IN SHARE MODE",
    "CREATE TEMPORARY TABLE tmp_hostile (id INT)",
    "SET @@session.sql_log_bin = 0",
    "DO RELEASE_LOCK('rwsplit')",
    "REPLACE INTO app.fault_rows VALUES (11, 'x', 0)",
    "SELECT 'x' /* unterminated",
    "SeLeCt 1 # comment\n; TRUNCATE app.fault_rows",
]


def test_hostile_sql_never_reaches_a_replica(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, caught_up
) -> None:
    caught_up()
    before = {r: sandbox.replica_gtid(r) for r in (1, 2)}
    rows_before = {r: checksum(sandbox, f"replica{r}", TABLE) for r in (1, 2)}
    Session = rwsplit.sessionmaker(engine)
    for sql in HOSTILE:
        with Session(read_your_writes="off") as s:
            try:
                s.execute(sa.text(sql.replace(":", r"\:")))
            except sa.exc.DBAPIError as exc:
                assert exc.orig.args[0] != 1290, f"reached a read-only replica: {sql!r}"
            assert s.last_target == "primary", sql
            s.rollback()
    for r in (1, 2):
        # Nothing was applied on a replica but what replication brought from the primary.
        assert all(
            server == sandbox.server_id("primary")
            for server in parse_mariadb(sandbox.replica_gtid(r)).servers.values()
        )
        assert parse_mariadb(sandbox.replica_gtid(r)).covers(parse_mariadb(before[r]))
    caught_up()
    for r in (1, 2):
        assert checksum(sandbox, f"replica{r}", TABLE) == checksum(sandbox, "primary", TABLE)
    assert rows_before  # the replicas were compared before and after


# ------------------------------------------------------------------ misconfiguration


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_replica_at_start_is_warned_and_skipped(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    url = sa.make_url(sandbox.replica_urls[0]).set(port=_closed_port())
    caplog.set_level(logging.WARNING, logger="rwsplit")
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[url, sandbox.replica_urls[1]])
    try:
        assert any("replica1" in m and "cannot serve reads at start" in m for m in caplog.messages)
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target == "replica2"
    finally:
        eng.dispose()


def test_wrong_password_is_reported_without_the_password(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    bad = sa.make_url(sandbox.replica_urls[0]).set(password="Wr0ng-S3cret-xyz")
    caplog.set_level(logging.DEBUG)
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[bad])
    try:
        row = _row(eng, "replica1")
        assert not row.eligible and "Access denied" in (row.error or "")
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target == "primary"
        assert "Wr0ng-S3cret-xyz" not in repr(eng) + str(eng.status()) + caplog.text
    finally:
        eng.dispose()


def test_a_replica_that_is_the_primary_is_refused(sandbox: Sandbox) -> None:
    alias = sa.make_url(sandbox.primary_url).set(host="localhost")
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[alias])
    try:
        row = _row(eng, "replica1")
        assert not row.eligible
        assert "primary itself" in row.error or "not a replica" in row.error
    finally:
        eng.dispose()


def test_a_writable_replica_is_warned(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rwsplit")
    with sandbox.connect(1) as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 0")
    try:
        eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls)
        eng.dispose()
        assert any("replica1" in m and "writable" in m for m in caplog.messages)
    finally:
        with sandbox.connect(1) as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 1")


@pytest.mark.parametrize(
    "build, exc, message",
    [
        (lambda p, r: rwsplit.create_engine(p, replicas=[r, r]), ValueError, "same server"),
        (lambda p, r: rwsplit.create_engine(p, replicas=[p]), ValueError, "same server as the primary"),
        (
            lambda p, r: rwsplit.create_engine("postgresql://u:S3cr3t-pw@h/db"),
            ValueError,
            "MySQL/MariaDB only",
        ),
        (lambda p, r: rwsplit.create_engine(p, replicas=r), TypeError, "not a single URL"),
        (
            lambda p, r: rwsplit.create_engine(p, replicas=[r], poolclass=sa.pool.NullPool, pool_size=5),
            TypeError,
            "pool_size",
        ),
    ],
)
def test_misconfigurations_fail_at_construction(sandbox: Sandbox, build, exc: type, message: str) -> None:
    password = sa.make_url(sandbox.primary_url).password
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(exc, match=message) as err:
        build(sandbox.primary_url, sandbox.replica_urls[0])
    assert password not in str(err.value) and "S3cr3t-pw" not in str(err.value)
    leaked = {t.name for t in threading.enumerate() if t.name.startswith("rwsplit-monitor")} - before
    assert not leaked


def test_passwords_never_logged_at_any_level(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    password = sa.make_url(sandbox.primary_url).password
    caplog.set_level(logging.DEBUG)
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, echo=True)
    try:
        with rwsplit.sessionmaker(eng)() as s:
            s.execute(
                sa.text(f"INSERT INTO {TABLE} VALUES (:i, 'log', 0)"), {"i": random.randrange(10**14, 10**15)}
            )
            s.commit()
        sandbox.kill(2)
        try:
            with rwsplit.sessionmaker(eng)(read_your_writes="off") as s:
                for _ in range(5):
                    s.execute(sa.text("SELECT 1"))
        finally:
            sandbox.start(2)
        assert caplog.records, "nothing was logged: the check would be empty"
        assert password not in caplog.text
        assert password not in repr(eng) and password not in str(eng.status())
    finally:
        eng.dispose()
    sandbox.wait_caught_up()


def test_pymysql_errors_never_carry_the_password(sandbox: Sandbox) -> None:
    url = sa.make_url(sandbox.primary_url)
    with pytest.raises(pymysql.err.OperationalError) as err:
        pymysql.connect(host=url.host, port=url.port, user=url.username, password=url.password + "x")
    assert url.password not in str(err.value)


@pytest.mark.parametrize("attempts", [0, 1, 2])
def test_failed_replica_reads_retry_within_bounds_then_use_the_primary(
    sandbox: Sandbox, caught_up, attempts: int
) -> None:
    eng = rwsplit.create_engine(
        sandbox.primary_url, replicas=sandbox.replica_urls, retry=rwsplit.Retry(replica_attempts=attempts)
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
