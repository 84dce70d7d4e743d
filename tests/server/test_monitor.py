"""README Monitor and lag on the real sandbox: lag precision and sources, eligibility (rule 4),
balancers, the least-privileged monitor account, its threads, ``rwsplit status``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from waiting import wait_for

import rwsplit
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox


def _status(engine: rwsplit.RoutingEngine) -> dict[str, rwsplit.ServerReport]:
    return {r.name: r for r in engine.status()}


def _where(session, sandbox: Sandbox) -> str:
    sid = session.execute(sa.text("SELECT @@GLOBAL.server_id")).scalar()
    return {sandbox.server_id(n): n for n in sandbox.server_names}[sid]


@pytest.fixture()
def engine(sandbox: Sandbox, caught_up) -> Iterator[rwsplit.RoutingEngine]:
    caught_up()
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, max_lag=1.0)
    yield eng
    eng.dispose()


class _Writer:
    """Steady autocommit inserts on the primary, remembering each transaction's commit time by GTID."""

    def __init__(self, sandbox: Sandbox, table: str, every: float = 0.02) -> None:
        self.sandbox, self.table, self.every = sandbox, table, every
        self.commits: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.sandbox.connect("primary") as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute(f"INSERT INTO {self.table} (ts) VALUES (NOW(6))")
                done = time.time()
                cur.execute("SELECT @@last_gtid")
                seq = parse_mariadb(cur.fetchone()[0]).seqs["0"]
                self.commits[seq] = done
                self._stop.wait(self.every)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture()
def ticks(sandbox: Sandbox, caught_up) -> Iterator[str]:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE app.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, ts DATETIME(6))")
    caught_up()
    yield "app.ticks"
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE app.ticks")


def test_gtid_lag_within_0_2_s_of_the_true_lag_under_master_delay(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, ticks: str, caught_up
) -> None:
    errors: list[float] = []
    readings: list[float] = []
    sandbox.delay_replica(1, 2)
    try:
        with _Writer(sandbox, ticks) as writer:
            time.sleep(3.5)
            last = None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                r = engine.monitor.snapshot().replica("replica1")
                if r is not None and r.measured_at != last and r.raw_lag is not None:
                    last = r.measured_at
                    have = r.position.seqs.get("0", -1)
                    missing = writer.commits.get(have + 1)
                    if missing is not None:
                        errors.append(r.raw_lag - (r.measured_at - missing))
                        readings.append(r.raw_lag)
                time.sleep(0.01)
    finally:
        sandbox.delay_replica(1, 0)
    caught_up()
    assert len(errors) >= 6
    assert abs(statistics.median(errors)) <= 0.2, errors
    assert sum(abs(e) <= 0.2 for e in errors) >= 0.9 * len(errors), errors
    # MASTER_DELAY compares whole-second event timestamps: the true lag saws within about 1 to 3 s.
    assert min(readings) >= 0.8 and max(readings) <= 3.2, readings
    assert engine.monitor.snapshot().replica("replica2").lag < 0.2


def test_heartbeat_and_seconds_behind_sources(sandbox: Sandbox, caught_up) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE app.heartbeat (ts VARCHAR(26) NOT NULL,"
            " server_id INT UNSIGNED NOT NULL PRIMARY KEY,"
            " file VARCHAR(255), position BIGINT UNSIGNED, relay_master_log_file VARCHAR(255),"
            " exec_master_log_pos BIGINT UNSIGNED)"
        )
    stop = threading.Event()

    def beat() -> None:  # what pt-heartbeat --update --utc does, every 0.1 s
        with sandbox.connect() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    "REPLACE INTO app.heartbeat (ts, server_id) VALUES "
                    "(DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%f'), @@server_id)"
                )
                stop.wait(0.1)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        caught_up()
        hb = rwsplit.create_engine(
            sandbox.primary_url,
            replicas=sandbox.replica_urls,
            lag_source="heartbeat",
            heartbeat_table="app.heartbeat",
            monitor_interval=0.2,
        )
        sb = rwsplit.create_engine(
            sandbox.primary_url, replicas=sandbox.replica_urls, lag_source="seconds_behind"
        )
        try:
            time.sleep(0.5)
            r = hb.monitor.snapshot().replica("replica1")
            assert r.lag_source == "heartbeat"
            assert 0.0 <= r.raw_lag < 0.5  # heartbeat written every 0.1 s, replica caught up
            sandbox.pause_replica(1)
            try:
                wait_for(lambda: (hb.monitor.snapshot().replica("replica1").raw_lag or 0) > 0.6, 5)
            finally:
                sandbox.resume_replica(1)
            s = sb.monitor.snapshot().replica("replica2")
            assert s.lag_source == "seconds_behind" and s.lag == 0.0
        finally:
            hb.dispose()
            sb.dispose()
    finally:
        stop.set()
        thread.join(5)
        with sandbox.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE app.heartbeat")
        caught_up()


def test_paused_sql_thread_is_excluded_within_1_s_and_readmitted_within_1_s(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, caught_up
) -> None:
    assert _status(engine)["replica2"].eligible
    sandbox.pause_replica(2)
    try:
        took = wait_for(lambda: not _status(engine)["replica2"].eligible, 1.0)
        assert took <= 1.0
        row = _status(engine)["replica2"]
        assert row.reachable and row.replicating is False
    finally:
        sandbox.resume_replica(2)
    took = wait_for(lambda: _status(engine)["replica2"].eligible, 1.0)
    assert took <= 1.0


def test_lag_over_the_bound_excludes_and_catching_up_readmits(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, ticks: str, caught_up
) -> None:
    with _Writer(sandbox, ticks):
        sandbox.pause_replica(1)
        try:
            wait_for(lambda: (engine.monitor.snapshot().replica("replica1").raw_lag or 0) > 0.3, 3)
        finally:
            sandbox.resume_replica(1)
        sandbox.delay_replica(1, 3)
        try:
            took = wait_for(lambda: not _status(engine)["replica1"].eligible, 3.0)
            assert took <= 3.0
            assert _status(engine)["replica2"].eligible
        finally:
            sandbox.delay_replica(1, 0)
        wait_for(lambda: _status(engine)["replica1"].eligible, 3.0)
    caught_up()


def test_per_call_max_lag_changes_eligibility(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, ticks: str, caught_up
) -> None:
    Session = rwsplit.sessionmaker(engine)
    with _Writer(sandbox, ticks):
        sandbox.delay_replica(1, 2)
        try:
            wait_for(lambda: (engine.monitor.snapshot().replica("replica1").lag or 0) > 0.8, 5)
            snap = engine.monitor.snapshot()
            assert [r.name for r in snap.eligible(0.5)] == ["replica2"]
            assert [r.name for r in snap.eligible(30)] == ["replica1", "replica2"]
            for _ in range(10):
                with Session(max_lag=0.5) as s:
                    assert _where(s, sandbox) == "replica2"
            seen = set()
            for _ in range(30):
                with Session(max_lag=30) as s:
                    seen.add(_where(s, sandbox))
            assert seen == {"replica1", "replica2"}
        finally:
            sandbox.delay_replica(1, 0)
    caught_up()


def test_killed_replica_is_excluded_at_once_and_readmitted_after_restart(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine, caught_up
) -> None:
    Session = rwsplit.sessionmaker(engine)
    with Session() as s:
        first = _where(s, sandbox)
        sandbox.kill(first)
        try:
            # The session's replica died under it: the read is retried elsewhere, nothing fails.
            assert _where(s, sandbox) != first
            assert not _status(engine)[first].eligible  # marked down by the failed read, not a probe
            for _ in range(10):
                with Session() as other:
                    assert _where(other, sandbox) != first
        finally:
            sandbox.start(first)
    caught_up()
    wait_for(lambda: _status(engine)[first].eligible, 5.0)
    seen = set()
    for _ in range(40):
        with Session() as s:
            seen.add(_where(s, sandbox))
    assert seen == {"replica1", "replica2"}


def test_all_replicas_ineligible_reads_go_to_the_primary_or_raise(sandbox: Sandbox, caught_up) -> None:
    engine = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls)
    strict = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, fallback="error")
    sandbox.pause_replica(1)
    sandbox.pause_replica(2)
    try:
        wait_for(lambda: not any(r.eligible for r in engine.status() if r.role == "replica"), 2)
        wait_for(lambda: not any(r.eligible for r in strict.status() if r.role == "replica"), 2)
        with rwsplit.sessionmaker(engine)() as s:
            assert _where(s, sandbox) == "primary"
            assert s.last_target == "primary"
        with rwsplit.sessionmaker(strict)() as s, pytest.raises(rwsplit.NoReplicaAvailable, match="fallback"):
            s.execute(sa.text("SELECT 1"))
    finally:
        sandbox.resume_replica(1)
        sandbox.resume_replica(2)
        engine.dispose()
        strict.dispose()
    caught_up()


def test_least_outstanding_sends_new_sessions_away_from_a_busy_replica(
    sandbox: Sandbox, engine: rwsplit.RoutingEngine
) -> None:
    """The engine counts a held replica connection as in flight, and the balancer sees it."""
    Session = rwsplit.sessionmaker(engine)
    busy = Session()
    try:
        first = _where(busy, sandbox)  # holds a connection of that replica until closed
        assert engine._in_flight(first) == 1
        other = {"replica1": "replica2", "replica2": "replica1"}[first]
        for _ in range(20):
            s = Session()
            assert _where(s, sandbox) == other
            s.close()
    finally:
        busy.close()


def test_balancers_spread_reads(sandbox: Sandbox) -> None:
    for name in ("least_outstanding", "round_robin", "random"):
        eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, balancer=name)
        try:
            Session = rwsplit.sessionmaker(eng)
            seen = []
            for _ in range(40):
                with Session() as s:
                    seen.append(_where(s, sandbox))
            assert min(seen.count("replica1"), seen.count("replica2")) >= 8, (name, seen)
        finally:
            eng.dispose()
    eng = rwsplit.create_engine(
        sandbox.primary_url, replicas=sandbox.replica_urls, weights={"replica1": 1, "replica2": 0}
    )
    try:
        with rwsplit.sessionmaker(eng)() as s:
            assert all(_where(s, sandbox) == "replica1" for _ in range(5))
    finally:
        eng.dispose()


def test_least_privileged_monitor_account(sandbox: Sandbox) -> None:
    state = json.loads(sandbox.state_file.read_text())
    eng = rwsplit.create_engine(
        sandbox.primary_url,
        replicas=sandbox.replica_urls,
        monitor_user="rwsplit_monitor",
        monitor_password=state["passwords"]["rwsplit_monitor"],
    )
    try:
        with sandbox.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW GRANTS FOR 'rwsplit_monitor'@'127.0.0.1'")
            grants = " ".join(row[0] for row in cur.fetchall())
        assert "SLAVE MONITOR" in grants and "SELECT" not in grants and "SUPER" not in grants
        rows = _status(eng)
        assert all(rows[n].eligible and rows[n].lag_source == "gtid" for n in ("replica1", "replica2"))
    finally:
        eng.dispose()


def test_monitor_threads_stop_on_dispose(sandbox: Sandbox) -> None:
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls)
    names = {t.name for t in threading.enumerate()}
    assert {"rwsplit-monitor-primary", "rwsplit-monitor-replica1", "rwsplit-monitor-replica2"} <= names
    eng.dispose()
    assert not eng.monitor.alive
    assert not [t for t in threading.enumerate() if t.name.startswith("rwsplit-monitor") and t.is_alive()]


def test_status_cli_table_and_json(sandbox: Sandbox) -> None:
    cmd = [sys.executable, "-m", "rwsplit.cli", "status", "--sandbox", str(sandbox.dir)]
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["server", "role", "url", "reachable", "lag_ms"]
    assert [line.split()[0] for line in lines[2:]] == ["primary", "replica1", "replica2"]
    rows = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60).stdout)
    assert [r["eligible"] for r in rows] == [True, True, True]
    assert {"lag", "measured_at", "gtid", "in_flight", "eligible"} <= set(rows[0])
    password = sa.make_url(sandbox.primary_url).password
    assert password not in table.stdout + table.stderr
    bad = subprocess.run([sys.executable, "-m", "rwsplit.cli", "status"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--primary" in bad.stderr and "Traceback" not in bad.stderr
