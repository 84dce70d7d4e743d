"""Monitor health on the real sandbox: lag known at start, readings that age, fork and dispose, probe
errors, slow reads vs dead replicas, connect-time refusals, the breaker."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox

TABLE = "app.health_rows"


@pytest.fixture(scope="module", autouse=True)
def health_table(sandbox: Sandbox) -> Iterator[None]:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, v INT)")
        cur.execute(f"INSERT INTO {TABLE} VALUES (1, 1)")
    sandbox.wait_caught_up()
    yield
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {TABLE}")
    sandbox.wait_caught_up()


def _set_value(sandbox: Sandbox, value: int) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {TABLE} SET v = %s WHERE id = 1", (value,))


def _eligible_names(engine: rwsplit.RoutingEngine) -> set[str]:
    return {r.name for r in engine.status() if r.role == "replica" and r.eligible}


def _engine(sandbox: Sandbox, **kw: object) -> rwsplit.RoutingEngine:
    options: dict[str, object] = {"max_lag": 1.0, "monitor_interval": 0.1, "monitor_timeout": 0.5}
    options.update(kw)
    return rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, **options)


def _monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rwsplit-monitor") and t.is_alive()]


def test_far_behind_replicas_are_not_eligible_right_after_engine_start(sandbox: Sandbox, caught_up) -> None:
    caught_up()
    _set_value(sandbox, 100)
    caught_up()
    for n in (1, 2):
        sandbox.delay_replica(n, 20)
    try:
        _set_value(sandbox, 101)  # replicas receive it but apply it only 20 s later
        eng = _engine(sandbox)
        try:
            rows = {r.name: r for r in eng.status()}
            for name in ("replica1", "replica2"):
                assert not rows[name].eligible, rows[name]
                assert rows[name].lag is not None and rows[name].lag >= 0.0
                state = eng.monitor.snapshot().replica(name)
                assert state is not None and state.lag_lower_bound
            with rwsplit.sessionmaker(eng)(read_your_writes="off") as s:
                assert s.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = 1")).scalar() == 101
                assert s.last_target == "primary"
            time.sleep(0.5)
            assert _eligible_names(eng) == set()
        finally:
            for n in (1, 2):
                sandbox.delay_replica(n, 0)
        caught_up()
        # Once they catch up the lag is really measured (0) and they serve reads again.
        wait_for(lambda: _eligible_names(eng) == {"replica1", "replica2"}, 5)
        state = eng.monitor.snapshot().replica("replica1")
        assert state is not None and not state.lag_lower_bound and state.lag == 0.0
        eng.dispose()
    finally:
        for n in (1, 2):
            sandbox.delay_replica(n, 0)
        caught_up()


def test_readings_age_after_dispose_and_using_the_engine_restarts_the_monitor(
    sandbox: Sandbox, caught_up
) -> None:
    caught_up()
    eng = _engine(sandbox)
    try:
        assert _eligible_names(eng) == {"replica1", "replica2"}
        stale_after = max(3 * 0.1, 0.1 + 2 * 0.5)  # documented: max(3 intervals, interval + 2 timeouts)
        eng.dispose()
        assert not _monitor_threads()
        disposed = time.monotonic()
        # No probe runs any more: the last readings stop counting after stale_after seconds.
        took = wait_for(lambda: not eng.monitor.snapshot().eligible(1.0), stale_after + 2)
        assert took <= stale_after + 0.5 and time.monotonic() - disposed >= stale_after - 0.2
        assert eng.monitor.stale_after == pytest.approx(stale_after)
        # Using the engine again restarts the monitor, with fresh readings.
        Session = rwsplit.sessionmaker(eng)
        with Session(read_your_writes="off") as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
        assert eng.monitor.alive
        wait_for(lambda: _eligible_names(eng) == {"replica1", "replica2"}, 5)
        with Session(read_your_writes="off") as s:
            s.execute(sa.text("SELECT 1"))
            assert s.last_target in ("replica1", "replica2")
    finally:
        eng.dispose()
    assert not _monitor_threads()


def test_an_unexpected_probe_error_is_logged_and_the_thread_goes_on(
    sandbox: Sandbox, caught_up, caplog: pytest.LogCaptureFixture
) -> None:
    caught_up()
    eng = _engine(sandbox)
    monitor = eng.monitor
    original = monitor._probe_replica
    broken = threading.Event()

    def probe(spec, cur, prev):  # a bug in probe code, not a server fault
        if spec.name == "replica1" and broken.is_set():
            raise RuntimeError("surprise in the probe")
        return original(spec, cur, prev)

    monitor._probe_replica = probe  # type: ignore[method-assign]
    try:
        broken.set()
        wait_for(lambda: "replica1" not in _eligible_names(eng), 3)
        assert "surprise in the probe" in (monitor.snapshot().replica("replica1").error or "")
        assert any("unexpected probe error" in m for m in caplog.messages)
        assert any(t.name == "rwsplit-monitor-replica1" for t in _monitor_threads())
        broken.clear()
        wait_for(lambda: "replica1" in _eligible_names(eng), 3)
    finally:
        eng.dispose()


def test_a_forked_child_gets_a_live_monitor_not_the_parents_readings(sandbox: Sandbox, caught_up) -> None:
    caught_up()
    _set_value(sandbox, 200)
    caught_up()
    eng = _engine(sandbox)
    Session = rwsplit.sessionmaker(eng)
    with Session(read_your_writes="off") as s:  # the parent has pooled replica connections
        assert s.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = 1")).scalar() == 200
        assert s.last_target in ("replica1", "replica2")
    with eng.primary.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        code = 1
        try:
            os.close(report_r)
            os.close(go_w)
            report: dict[str, object] = {}
            report["parents_readings"] = any(
                r.measured_at is not None for r in eng.monitor.snapshot().replicas
            )
            os.read(go_r, 1)
            with Session(read_your_writes="off") as s:
                report["value"] = s.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = 1")).scalar()
                report["target"] = s.last_target
            report["alive"] = eng.monitor.alive
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                r.measured_at is None for r in eng.monitor.snapshot().replicas
            ):
                time.sleep(0.05)
            report["probed"] = all(r.measured_at is not None for r in eng.monitor.snapshot().replicas)
            os.write(report_w, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(go_r)
    try:
        sandbox.pause_replica(1)
        sandbox.pause_replica(2)
        try:
            _set_value(sandbox, 201)  # replicas stay at 200
            time.sleep(1.5)  # past max_lag
            os.write(go_w, b"x")
            ready, _, _ = select.select([report_r], [], [], 30)
            data = os.read(report_r, 65536) if ready else b""
        finally:
            sandbox.resume_replica(1)
            sandbox.resume_replica(2)
    finally:
        if not data:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(report_r)
        os.close(go_w)
    report = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["value"] == 201, report  # not the replicas' stale 200
    assert report["parents_readings"] is False and report["alive"] is True and report["probed"] is True
    try:
        # The child closed none of the parent's pooled connections.
        with eng.primary.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT v FROM {TABLE} WHERE id = 1").scalar() == 201
        assert eng.monitor.alive
    finally:
        eng.dispose()
    caught_up()


def test_a_slow_read_on_a_live_replica_is_the_callers_error_not_a_failover(
    sandbox: Sandbox, caught_up
) -> None:
    caught_up()
    eng = _engine(sandbox, connect_args={"read_timeout": 1})
    reports: list[str] = []
    original = eng._report_replica_failure
    eng._report_replica_failure = lambda name, exc: (reports.append(name), original(name, exc))  # type: ignore[method-assign]
    lockers = [sandbox.connect(n) for n in (1, 2)]
    try:
        for conn in lockers:  # the table is locked on both replicas: a read there waits
            with conn.cursor() as cur:
                cur.execute(f"LOCK TABLES {TABLE} WRITE")
        with rwsplit.sessionmaker(eng)(read_your_writes="off") as s:
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError) as err:
                s.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = 1"))
            took = time.monotonic() - started
            assert err.value.orig.args[0] == 2013 and "timed out" in str(err.value.orig.args[1])
            assert s.last_target in ("replica1", "replica2")
            assert took < 1.9, took  # one read_timeout: not re-run on the other replica and the primary
            assert reports == []
            assert _eligible_names(eng) == {"replica1", "replica2"}
            for conn in lockers:
                with conn.cursor() as cur:
                    cur.execute("UNLOCK TABLES")
            # The session goes on; its timed-out connection was dropped.
            assert s.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar() == 1
    finally:
        for conn in lockers:
            with conn.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            conn.close()
        eng.dispose()


def _replica_admin(sandbox: Sandbox, statement: str, *args: object) -> None:
    with sandbox.connect(1) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(statement, args or None)


@pytest.mark.parametrize("refusal", ["access_denied", "max_user_connections"])
def test_a_replica_refusing_new_connections_fails_over_and_stays_out_until_one_works(
    sandbox: Sandbox, caught_up, refusal: str
) -> None:
    caught_up()
    url = sa.make_url(sandbox.replica_urls[0])
    account = f"'{url.username}'@'127.0.0.1'"
    eng = _engine(sandbox)
    holders: list[object] = []
    if refusal == "access_denied":
        _replica_admin(sandbox, f"SET PASSWORD FOR {account} = PASSWORD(%s)", "Other-pw-123")
    else:
        _replica_admin(sandbox, f"ALTER USER {account} WITH MAX_USER_CONNECTIONS 1")
        import pymysql

        for _ in range(3):  # take every connection the limit allows (the monitor's may not count)
            try:
                holders.append(
                    pymysql.connect(host=url.host, port=url.port, user=url.username, password=url.password)
                )
            except pymysql.err.OperationalError:
                break
    try:
        assert "replica1" in _eligible_names(eng)  # the monitor's old connection still works
        busy = eng.engines["replica2"].connect()  # least outstanding now picks replica1
        try:
            with rwsplit.sessionmaker(eng)(read_your_writes="off") as s:
                assert s.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar() == 1
                assert s.last_target in ("replica2", "primary")
        finally:
            busy.close()
        assert "replica1" not in _eligible_names(eng)
        time.sleep(1.0)  # ten probes over the monitor's own, still working, connection
        row = {r.name: r for r in eng.status()}["replica1"]
        assert not row.eligible and "refused" in (row.error or ""), row
        assert url.password not in str(eng.status())
    finally:
        if refusal == "access_denied":
            _replica_admin(sandbox, f"SET PASSWORD FOR {account} = PASSWORD(%s)", url.password)
        else:
            _replica_admin(sandbox, f"ALTER USER {account} WITH MAX_USER_CONNECTIONS 0")
            for conn in holders:
                conn.close()  # type: ignore[attr-defined]
    try:
        wait_for(lambda: "replica1" in _eligible_names(eng), 5)
    finally:
        eng.dispose()


def test_a_probe_in_flight_when_marked_down_does_not_readmit(sandbox: Sandbox, caught_up) -> None:
    caught_up()
    eng = _engine(sandbox, monitor_interval=1.0, monitor_timeout=5.0)
    try:
        sandbox.freeze(1)
        try:
            # A probe of replica1 started at least 1.5 s (more than an interval) before the thaw and
            # hangs on the frozen server; the next one starts as soon as it returns.
            time.sleep(2.5)
            eng.monitor.mark_down("replica1", "read failed: test")
            eng.monitor.mark_down("replica1", "read failed: test")  # two trips: two healthy probes
        finally:
            sandbox.thaw(1)
        time.sleep(0.5)  # the hung probe returned, and one probe started after the mark passed
        state = eng.monitor.snapshot().replica("replica1")
        assert state is not None and state.tripped, state
        assert state.healthy_probes == 1, state  # the hung probe did not count
        wait_for(lambda: "replica1" in _eligible_names(eng), 5)
    finally:
        eng.dispose()
    caught_up()
