"""The replication sandbox against real servers: replication, injection tools, lifecycle, CLI."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pymysql
import pytest
from helpers import cli as _cli
from waiting import wait_for

from rwsplit.errors import SandboxError
from rwsplit.sandbox import STATE_FILE, Sandbox


def _scalar(sb: Sandbox, server: str | int, sql: str, args: tuple = ()) -> object:
    with sb.connect(server) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else row[0]


def _exec(sb: Sandbox, server: str | int, *sql: str) -> None:
    with sb.connect(server) as conn, conn.cursor() as cur:
        for stmt in sql:
            cur.execute(stmt)


@pytest.fixture()
def table(sandbox: Sandbox, caught_up) -> str:
    name = f"t_{os.getpid()}_{time.monotonic_ns()}"
    _exec(sandbox, "primary", f"CREATE TABLE app.{name} (id INT PRIMARY KEY, v VARCHAR(20))")
    caught_up()
    yield f"app.{name}"
    _exec(sandbox, "primary", f"DROP TABLE IF EXISTS app.{name}")


def _live_server_pids(datadir_prefix: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and f"--datadir={datadir_prefix}".encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def test_servers_are_distinct_and_replicas_read_only(sandbox: Sandbox) -> None:
    ids = {name: _scalar(sandbox, name, "SELECT @@server_id") for name in sandbox.server_names}
    assert len(set(ids.values())) == 3
    assert _scalar(sandbox, "primary", "SELECT @@read_only") == 0
    for r in (1, 2):
        assert _scalar(sandbox, r, "SELECT @@read_only") == 1
        assert _scalar(sandbox, r, "SELECT @@log_bin") == 1
    status = {row.name: row for row in sandbox.status()}
    for r in ("replica1", "replica2"):
        assert (status[r].io_running, status[r].sql_running) == ("Yes", "Yes")
    assert "***" in status["primary"].url


def test_row_written_on_primary_appears_on_every_replica(sandbox: Sandbox, table: str, caught_up) -> None:
    _exec(sandbox, "primary", f"INSERT INTO {table} VALUES (1, 'hello')")
    caught_up()
    for r in (1, 2):
        assert _scalar(sandbox, r, f"SELECT v FROM {table} WHERE id = 1") == "hello"
        assert sandbox.replica_gtid(r) == sandbox.primary_gtid()


def test_app_user_cannot_write_on_a_replica(sandbox: Sandbox, table: str) -> None:
    url = sandbox.replica_urls[0]
    user, rest = url.split("://", 1)[1].split(":", 1)
    password, hostport = rest.split("@", 1)[0], rest.split("@", 1)[1]
    port = int(hostport.split(":")[1].split("/")[0])
    conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="app")
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute(f"INSERT INTO {table} VALUES (99, 'nope')")
        assert err.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only


def test_delay_makes_measurable_lag(sandbox: Sandbox, table: str, caught_up) -> None:
    sandbox.delay_replica(1, 2)
    try:
        written = time.monotonic()
        _exec(sandbox, "primary", f"INSERT INTO {table} VALUES (2, 'late')")
        sandbox.wait_caught_up(replicas=[2], timeout=5)
        assert _scalar(sandbox, 1, f"SELECT COUNT(*) FROM {table} WHERE id = 2") == 0
        wait_for(lambda: _scalar(sandbox, 1, f"SELECT COUNT(*) FROM {table} WHERE id = 2") == 1, 10)
        lag = time.monotonic() - written
        # MASTER_DELAY counts from the event's timestamp, which has whole seconds: a 2 s delay
        # shows as a lag in (1, 2] s plus polling.
        assert 1.0 <= lag <= 5.0, lag
    finally:
        sandbox.delay_replica(1, 0)
    caught_up()


def test_paused_sql_thread_stops_advancing_until_resumed(sandbox: Sandbox, table: str, caught_up) -> None:
    sandbox.pause_replica(2)
    try:
        before = sandbox.replica_gtid(2)
        _exec(sandbox, "primary", f"INSERT INTO {table} VALUES (3, 'paused')")
        sandbox.wait_caught_up(replicas=[1], timeout=5)
        time.sleep(0.5)
        assert sandbox.replica_gtid(2) == before
        assert _scalar(sandbox, 2, f"SELECT COUNT(*) FROM {table} WHERE id = 3") == 0
        row = {r.name: r for r in sandbox.status()}["replica2"]
        assert (row.io_running, row.sql_running) == ("Yes", "No")
    finally:
        sandbox.resume_replica(2)
    caught_up()
    assert _scalar(sandbox, 2, f"SELECT COUNT(*) FROM {table} WHERE id = 3") == 1


def test_killed_replica_goes_down_and_streams_again_after_start(
    sandbox: Sandbox, table: str, caught_up
) -> None:
    old_pid = {r.name: r.pid for r in sandbox.status()}["replica1"]
    sandbox.kill(1)
    row = {r.name: r for r in sandbox.status()}["replica1"]
    assert not row.running and not row.reachable
    assert _live_server_pids(str(sandbox.dir / "replica1")) == []
    _exec(sandbox, "primary", f"INSERT INTO {table} VALUES (4, 'while down')")
    sandbox.start(1)
    caught_up()
    row = {r.name: r for r in sandbox.status()}["replica1"]
    assert row.pid != old_pid
    assert (row.reachable, row.io_running, row.sql_running) == (True, "Yes", "Yes")
    assert _scalar(sandbox, 1, f"SELECT v FROM {table} WHERE id = 4") == "while down"


def test_killed_primary_comes_back_and_replicas_reconnect(sandbox: Sandbox, table: str, caught_up) -> None:
    sandbox.kill("primary")
    with pytest.raises(pymysql.err.OperationalError):
        _scalar(sandbox, "primary", "SELECT 1")
    wait_for(lambda: {r.name: r for r in sandbox.status()}["replica2"].io_running != "Yes", 10)
    sandbox.start("primary")
    _exec(sandbox, "primary", f"INSERT INTO {table} VALUES (5, 'after restart')")
    caught_up()
    for r in (1, 2):
        assert _scalar(sandbox, r, f"SELECT v FROM {table} WHERE id = 5") == "after restart"


def test_down_leaves_no_process_and_no_data(tmp_path: Path) -> None:
    target = tmp_path / "sb"
    sb = Sandbox(target, replicas=1)
    sb.up()
    assert len(_live_server_pids(str(target))) == 2
    assert (target / STATE_FILE).stat().st_mode & 0o077 == 0
    sb.down()
    assert _live_server_pids(str(target)) == []
    assert not target.exists()
    sb.down()  # idempotent


def test_context_manager_tears_down_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "sb"
    with pytest.raises(RuntimeError, match="boom"), Sandbox(target, replicas=1):
        assert len(_live_server_pids(str(target))) == 2
        raise RuntimeError("boom")
    assert _live_server_pids(str(target)) == []
    assert not target.exists()


def test_down_keeps_a_directory_the_user_made(tmp_path: Path) -> None:
    with Sandbox(tmp_path, replicas=0) as sb:
        assert sb.replica_urls == []
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_second_up_on_a_running_sandbox_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="already running"):
        Sandbox(sandbox.dir, replicas=2).up()
    assert all(r.reachable for r in sandbox.status())


def _free_base_port(count: int) -> int:
    for base in range(30000, 60000, 97):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise AssertionError("no free port range")


def test_cli_up_status_down(tmp_path: Path) -> None:
    target = tmp_path / "cluster"
    base = _free_base_port(3)
    up = _cli("sandbox", "up", "--dir", str(target), "--base-port", str(base), "--replicas", "2")
    assert up.returncode == 0, up.stderr
    passwords = json.loads((target / STATE_FILE).read_text())["passwords"].values()
    try:
        for port in (base, base + 1, base + 2):
            assert f"127.0.0.1:{port}/app" in up.stdout
        again = _cli("sandbox", "up", "--dir", str(target), "--base-port", str(base))
        assert again.returncode == 1 and "already running" in again.stderr
        assert "Traceback" not in again.stderr
        status = _cli("sandbox", "status", "--dir", str(target))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].split()[:4] == ["server", "role", "url", "reachable"]
        assert [line.split()[0] for line in lines[2:]] == ["primary", "replica1", "replica2"]
        assert all(" Yes  Yes " in line for line in lines[3:])
        as_json = json.loads(_cli("sandbox", "status", "--dir", str(target), "--json").stdout)
        assert [r["reachable"] for r in as_json] == [True, True, True]
        for out in (up, again, status):
            for pw in passwords:
                assert pw not in out.stdout + out.stderr
    finally:
        down = _cli("sandbox", "down", "--dir", str(target))
    assert down.returncode == 0, down.stderr
    assert _live_server_pids(str(target)) == []
    assert not target.exists()


def test_freeze_returns_once_the_server_answers_nothing(sandbox: Sandbox) -> None:
    """kill(SIGSTOP) returns before every thread stopped; freeze() waits for that, so a query sent
    right after it gets no answer (one frozen replica answered in a loaded CI run)."""
    from rwsplit import mysqld

    conn = sandbox.connect(1, timeout=1.0)
    try:
        conn.cursor().execute("SELECT 1")
        pid = sandbox._server(1)["pid"]
        sandbox.freeze(1)
        try:
            assert mysqld.all_threads_stopped(pid)
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError):
                conn.cursor().execute("SELECT 2")
            assert time.monotonic() - started >= 0.9  # it waited: nothing answered
        finally:
            sandbox.thaw(1)
        wait_for(lambda: not mysqld.all_threads_stopped(pid), 5, "replica1 thawed")
    finally:
        conn.close()
