"""A throwaway MariaDB/MySQL replication cluster on loopback, for tests, benchmarks and demos.

One primary and N replicas, each a real server process with its own data dir under one
directory and its own port, GTID replication, read-only replicas, a replication user, an
application user and a monitor user. A state file in the directory lets later commands (and
other processes) find the cluster again; ``down`` stops every process and removes the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from . import mysqld, replication
from .errors import SandboxError, describe_error
from .flavor import Flavor, flavor_of, replica_status
from .mysqld import find_server_binaries

__all__ = ["Sandbox", "ServerStatus", "find_server_binaries", "STATE_FILE"]

STATE_FILE = "rwsplit-sandbox.json"
_STATE_VERSION = 1
_APP_USER = "app"
_REPL_USER = "rwsplit_repl"
_MONITOR_USER = "rwsplit_monitor"


@dataclass(frozen=True)
class ServerStatus:
    """One row of :meth:`Sandbox.status`: what a server looks like right now."""

    name: str
    role: str
    url: str  # password masked
    port: int
    pid: int | None
    running: bool
    reachable: bool
    io_running: str | None = None
    sql_running: str | None = None
    seconds_behind: int | None = None
    gtid_position: str | None = None
    last_error: str | None = None


def _port_free(port: int) -> bool:
    """Can a server listen on ``port``? SO_REUSEADDR as mariadbd uses it: connections of a server
    just stopped (TIME_WAIT) do not count, a socket still listening does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Sandbox:
    """A local primary + replicas cluster of real server processes.

    Use as a context manager (always torn down, also on exceptions and Ctrl-C)::

        with Sandbox(replicas=2) as sb:
            engine = sqlalchemy.create_engine(sb.primary_url)

    or drive it with :meth:`up` / :meth:`down`, or find a running one with :meth:`attach`.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] | None = None,
        *,
        replicas: int = 2,
        base_port: int | None = None,
        database: str = "app",
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 16:
            raise ValueError(f"replicas must be a whole number from 0 to 16, got {replicas!r}")
        if base_port is not None and (
            isinstance(base_port, bool)
            or not isinstance(base_port, int)
            or not 1024 <= base_port <= 65535 - replicas
        ):
            raise ValueError(
                f"base_port must be a whole number from 1024 to {65535 - replicas}, got {base_port!r}"
            )
        if not database.isidentifier():
            raise ValueError(f"database must be a plain identifier, got {database!r}")
        self._own_dir = dir is None
        self.dir = Path(dir if dir is not None else tempfile.mkdtemp(prefix="rwsplit-sandbox-"))
        self.dir = self.dir.resolve()
        self.replica_count = replicas
        self.base_port = base_port
        self.database = database
        self._state: dict[str, Any] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ----------------------------------------------------------------- discovery
    @classmethod
    def attach(cls, dir: str | os.PathLike[str]) -> Sandbox:
        """The sandbox whose state file is in ``dir`` (started by this or another process)."""
        sb = cls.__new__(cls)
        sb._own_dir = False
        sb.dir = Path(dir).resolve()
        sb._procs = {}
        sb._state = sb._read_state()
        if sb._state is None:
            raise SandboxError(f"no rwsplit sandbox in {sb.dir} (no {STATE_FILE}); start one with up")
        sb.replica_count = sum(1 for s in sb._state["servers"] if s["role"] == "replica")
        sb.base_port = None
        sb.database = sb._state["database"]
        return sb

    @property
    def state_file(self) -> Path:
        return self.dir / STATE_FILE

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot read {self.state_file}: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise SandboxError(f"{self.state_file} is not a sandbox state file this rwsplit understands")
        return state

    def _write_state(self) -> None:
        assert self._state is not None
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._state, f, indent=2)
        os.replace(tmp, self.state_file)

    @property
    def _servers(self) -> list[dict[str, Any]]:
        if self._state is None:
            raise SandboxError("the sandbox is not up")
        servers: list[dict[str, Any]] = self._state["servers"]
        return servers

    def _server(self, which: str | int) -> dict[str, Any]:
        """A server by name (``primary``, ``replica1``…) or replica number (1-based)."""
        name = f"replica{which}" if isinstance(which, int) else str(which)
        for s in self._servers:
            if s["name"] == name:
                return s
        names = ", ".join(s["name"] for s in self._servers)
        raise SandboxError(f"no server {which!r} in this sandbox; servers: {names}")

    # ---------------------------------------------------------------- URLs
    def _url(self, server: dict[str, Any], *, user: str = _APP_USER, hide_password: bool = False) -> str:
        assert self._state is not None
        pw = "***" if hide_password else self._state["passwords"][user]
        return f"mysql+pymysql://{user}:{pw}@127.0.0.1:{server['port']}/{self._state['database']}"

    @property
    def primary_url(self) -> str:
        """SQLAlchemy URL of the primary for the application user (contains its password)."""
        return self._url(self._server("primary"))

    @property
    def replica_urls(self) -> list[str]:
        """SQLAlchemy URLs of the replicas, in order, for the application user."""
        return [self._url(s) for s in self._servers if s["role"] == "replica"]

    def monitor_urls(self) -> list[str]:
        """URLs of every server (primary first) for the least-privileged monitor user."""
        return [self._url(s, user=_MONITOR_USER) for s in self._servers]

    def masked_urls(self) -> dict[str, str]:
        """Server name → application URL with the password replaced by ``***``."""
        return {s["name"]: self._url(s, hide_password=True) for s in self._servers}

    @property
    def server_names(self) -> list[str]:
        return [s["name"] for s in self._servers]

    def port(self, which: str | int) -> int:
        return int(self._server(which)["port"])

    def server_id(self, which: str | int) -> int:
        return int(self._server(which)["server_id"])

    def connect(self, which: str | int = "primary", *, timeout: float = 5.0) -> pymysql.Connection:
        """An autocommit admin (root) connection to one server, for tests and injection."""
        s = self._server(which)
        assert self._state is not None
        return pymysql.connect(
            host="127.0.0.1",
            port=int(s["port"]),
            user="root",
            password=self._state["passwords"]["root"],
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            read_timeout=timeout,
            write_timeout=timeout,
        )

    # ----------------------------------------------------------------- up
    def __enter__(self) -> Sandbox:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, *, timeout: float = 60.0) -> Sandbox:
        """Initialise and start the cluster; return once every replica is streaming."""
        binaries = find_server_binaries()
        created_dir = not self.dir.exists()
        self._prepare_dir()
        ports = self._choose_ports()
        flavor = binaries.flavor
        names = ["primary"] + [f"replica{i}" for i in range(1, self.replica_count + 1)]
        self._state = {
            "version": _STATE_VERSION,
            "flavor": flavor,
            "server_binary": binaries.server,
            "server_version": binaries.version,
            "database": self.database,
            "created_dir": created_dir,
            "passwords": {
                "root": secrets.token_urlsafe(12),
                _APP_USER: secrets.token_urlsafe(12),
                _REPL_USER: secrets.token_urlsafe(12),
                _MONITOR_USER: secrets.token_urlsafe(12),
            },
            "servers": [
                {
                    "name": name,
                    "role": "primary" if i == 0 else "replica",
                    "port": ports[i],
                    "server_id": i + 1,
                    "datadir": str(self.dir / name),
                    "pid": None,
                }
                for i, name in enumerate(names)
            ],
        }
        self._write_state()
        deadline = time.monotonic() + timeout
        mysqld.initialise_datadirs(binaries, self.dir, [s["datadir"] for s in self._servers])
        for s in self._servers:
            self._spawn(s)
        for s in self._servers:
            self._wait_accepting(s, deadline, password="")
        self._setup_primary()
        position = self.primary_gtid()
        replicas = [self._setup_replica(s) for s in self._servers[1:]]
        for s, conn in zip(self._servers[1:], replicas, strict=True):
            # On the pre-password socket connection: the root password arrives by replication.
            with conn, conn.cursor() as cur:
                self._wait_position(cur, s, position, deadline)
        return self

    def _prepare_dir(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise SandboxError(f"{self.dir} exists and is not a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        if state is not None:
            self._state = state
            running = [
                s["name"] for s in state["servers"] if mysqld.pid_is_server(s.get("pid"), s["datadir"])
            ]
            if running:
                self._state = None
                raise SandboxError(
                    f"a sandbox is already running in {self.dir} ({', '.join(running)}); "
                    f"use it, or stop it first with: rwsplit sandbox down --dir {self.dir}"
                )
            self._remove_data(keep_dir=True)
            self._state = None
        elif any(self.dir.iterdir()):
            raise SandboxError(
                f"{self.dir} is not empty and holds no rwsplit sandbox; "
                "choose a new or empty directory (nothing was changed)"
            )

    def _choose_ports(self) -> list[int]:
        count = self.replica_count + 1
        if self.base_port is None:
            return _free_ports(count)
        ports = list(range(self.base_port, self.base_port + count))
        busy = [p for p in ports if not _port_free(p)]
        if busy:
            raise SandboxError(
                f"port {busy[0]} on 127.0.0.1 is in use; the sandbox needs ports "
                f"{ports[0]}-{ports[-1]} (--base-port {self.base_port}); choose another base port "
                "or leave it out to use free ports"
            )
        return ports

    def _spawn(self, s: dict[str, Any]) -> None:
        assert self._state is not None
        proc = mysqld.spawn(
            mysqld.server_args(self._state["server_binary"], self._state["flavor"], s), s["datadir"]
        )
        self._procs[s["name"]] = proc
        s["pid"] = proc.pid
        self._write_state()

    def _alive(self, s: dict[str, Any]) -> bool:
        proc = self._procs.get(s["name"])
        if proc is not None and proc.pid == s.get("pid"):
            return proc.poll() is None
        return mysqld.pid_is_server(s.get("pid"), s["datadir"])

    def _wait_accepting(self, s: dict[str, Any], deadline: float, *, password: str | None = None) -> None:
        assert self._state is not None
        pw = self._state["passwords"]["root"] if password is None else password
        mysqld.wait_accepting(s["name"], s["datadir"], pw, deadline, lambda: self._alive(s))

    def _setup_primary(self) -> None:
        assert self._state is not None
        pw = self._state["passwords"]
        mariadb = self._state["flavor"] == "mariadb"
        monitor_grant = "REPLICA MONITOR ON *.*" if mariadb else "REPLICATION CLIENT ON *.*"
        with mysqld.socket_connection(self._servers[0]["datadir"], "") as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}`")
            for user, grants in (
                (_REPL_USER, ["REPLICATION SLAVE ON *.*"]),
                (_APP_USER, [f"ALL PRIVILEGES ON `{self.database}`.*", monitor_grant]),
                (_MONITOR_USER, [monitor_grant]),
            ):
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (pw[user],))
                    for grant in grants:
                        cur.execute(f"GRANT {grant} TO '{user}'@'{host}'")
            cur.execute(
                "SELECT CONCAT(QUOTE(user), '@', QUOTE(host)) FROM mysql.user "
                "WHERE user = 'root' AND host IN ('localhost', '127.0.0.1', '::1')"
            )
            for (account,) in cur.fetchall():
                cur.execute(f"ALTER USER {account} IDENTIFIED BY %s", (pw["root"],))

    def _setup_replica(self, s: dict[str, Any]) -> pymysql.Connection:
        """Point a replica at the primary and start it; returns the open admin connection."""
        assert self._state is not None
        pw = self._state["passwords"]
        primary_port = self._servers[0]["port"]
        conn = mysqld.socket_connection(s["datadir"], "")
        with conn.cursor() as cur:
            flavor = self._flavor()
            replication.replicate_from(cur, flavor, "127.0.0.1", primary_port, _REPL_USER, pw[_REPL_USER])
            replication.start_replication(cur, flavor)
        return conn

    # -------------------------------------------------------------- replication
    def _flavor(self) -> Flavor:
        assert self._state is not None
        return flavor_of(self._state["flavor"])  # "mariadb" or "mysql"

    def _gtid(self, cur: Any, role: str) -> str:
        """The primary's binlog position or a replica's applied one (MariaDB); MySQL's executed set."""
        cur.execute(f"SELECT @@GLOBAL.{self._flavor().position_variable(role)}")
        return str(cur.fetchone()[0])

    def primary_gtid(self) -> str:
        """The primary's current binlog GTID position (MariaDB) or executed set (MySQL)."""
        with self.connect("primary") as conn, conn.cursor() as cur:
            return self._gtid(cur, "primary")

    def replica_gtid(self, which: str | int) -> str:
        """What a replica has applied: ``@@gtid_slave_pos`` (MariaDB) or ``@@gtid_executed``."""
        with self.connect(which) as conn, conn.cursor() as cur:
            return self._gtid(cur, "replica")

    def wait_caught_up(self, timeout: float = 30.0, replicas: Sequence[str | int] | None = None) -> None:
        """Block until the given (default: all) replicas applied the primary's current position."""
        position = self.primary_gtid()
        deadline = time.monotonic() + timeout
        targets = [self._server(r) for r in replicas] if replicas is not None else self._servers[1:]
        for s in targets:
            try:
                timeout_s = max(1.0, deadline - time.monotonic()) + 5
                with self.connect(s["name"], timeout=timeout_s) as conn, conn.cursor() as cur:
                    self._wait_position(cur, s, position, deadline)
            except pymysql.err.OperationalError as exc:
                problem = describe_error(exc)
                raise SandboxError(f"{s['name']}: cannot wait for replication: {problem}") from exc

    def _wait_position(self, cur: Any, s: dict[str, Any], position: str, deadline: float) -> None:
        remaining = max(0.0, deadline - time.monotonic())
        cur.execute(self._flavor().wait_sql(), (position, remaining))
        result = cur.fetchone()[0]
        if result != 0:
            raise SandboxError(
                f"{s['name']} did not reach the primary's position {position or '(empty)'} "
                f"in time ({self._replication_problem(s['name'])})"
            )

    def _replication_problem(self, name: str) -> str:
        """The replica's own account of why it is behind, for error messages."""
        try:
            with self.connect(name, timeout=2) as conn, conn.cursor() as cur:
                st = replica_status(cur, self._flavor())
        except pymysql.MySQLError as exc:
            return f"cannot ask it: {describe_error(exc)}"
        error = Flavor.last_error(st) or "no replication error"
        return f"IO thread {Flavor.io_running(st)}, SQL thread {Flavor.sql_running(st)}: {error}"

    def status(self) -> list[ServerStatus]:
        """One :class:`ServerStatus` per server, read live from the servers."""
        rows = []
        masked = self.masked_urls()
        for s in self._servers:
            running = self._alive(s)
            info: dict[str, Any] = {}
            reachable = False
            if running:
                try:
                    with self.connect(s["name"], timeout=2) as conn, conn.cursor() as cur:
                        reachable = True
                        if s["role"] == "replica":
                            st = replica_status(cur, self._flavor())
                            info["io_running"] = Flavor.io_running(st)
                            info["sql_running"] = Flavor.sql_running(st)
                            info["seconds_behind"] = Flavor.seconds_behind(st)
                            info["last_error"] = Flavor.last_error(st)
                        info["gtid_position"] = self._gtid(cur, s["role"])
                except pymysql.err.MySQLError:
                    reachable = False
            rows.append(
                ServerStatus(
                    name=s["name"],
                    role=s["role"],
                    url=masked[s["name"]],
                    port=int(s["port"]),
                    pid=s.get("pid"),
                    running=running,
                    reachable=reachable,
                    **info,
                )
            )
        return rows

    # --------------------------------------------------------------- injection
    def _replica(self, which: str | int) -> dict[str, Any]:
        s = self._server(which)
        if s["role"] != "replica":
            raise SandboxError(f"{s['name']} is not a replica")
        return s

    def _on_replica(self, which: str | int, action: Callable[[Any, Flavor], None]) -> None:
        """Run one :mod:`rwsplit.replication` operation on a replica's admin connection."""
        s = self._replica(which)
        with self.connect(s["name"]) as conn, conn.cursor() as cur:
            action(cur, self._flavor())

    def delay_replica(self, which: str | int, seconds: int) -> None:
        """Make a replica apply each event ``seconds`` after it was written (``MASTER_DELAY``)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 86400:
            raise ValueError(f"delay must be a whole number of seconds from 0 to 86400, got {seconds!r}")
        self._on_replica(which, lambda cur, flavor: replication.set_delay(cur, flavor, seconds))

    def pause_replica(self, which: str | int) -> None:
        """Stop a replica's SQL (applier) thread: it keeps receiving but stops applying."""
        self._on_replica(which, replication.stop_sql_thread)

    def resume_replica(self, which: str | int) -> None:
        """Start a paused replica's SQL thread again."""
        self._on_replica(which, replication.start_sql_thread)

    def break_replica(self, which: str | int) -> None:
        """Break a replica's replication with a duplicate-key error (its SQL thread stops)."""
        s = self._replica(which)
        with self.connect("primary") as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{self.database}`.`_rwsplit_fault` (id INT PRIMARY KEY)")
            cur.execute(f"DELETE FROM `{self.database}`.`_rwsplit_fault`")
        self.wait_caught_up(replicas=[s["name"]])
        with self.connect(s["name"]) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"INSERT INTO `{self.database}`.`_rwsplit_fault` VALUES (1)")
        with self.connect("primary") as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{self.database}`.`_rwsplit_fault` VALUES (1)")

    def repair_replica(self, which: str | int) -> None:
        """Undo :meth:`break_replica`: remove the conflicting row and restart replication."""
        s = self._replica(which)
        with self.connect(s["name"]) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"DELETE FROM `{self.database}`.`_rwsplit_fault`")
            replication.start_replication(cur, self._flavor())

    def freeze(self, which: str | int) -> None:
        """SIGSTOP a server: it keeps its connections open but answers nothing."""
        self._signal(which, signal.SIGSTOP)

    def thaw(self, which: str | int) -> None:
        """SIGCONT a frozen server."""
        self._signal(which, signal.SIGCONT)

    def _signal(self, which: str | int, sig: signal.Signals) -> None:
        s = self._server(which)
        if not self._alive(s):
            raise SandboxError(f"{s['name']} is not running")
        os.kill(s["pid"], sig)

    def kill(self, which: str | int) -> None:
        """SIGKILL one server and wait until it is gone."""
        s = self._server(which)
        if not self._alive(s):
            raise SandboxError(f"{s['name']} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(s["pid"], signal.SIGKILL)
        self._wait_dead(s, 10.0)

    def start(self, which: str | int, *, timeout: float = 30.0) -> None:
        """Start a stopped server again; a replica resumes replication where it stopped."""
        s = self._server(which)
        if self._alive(s):
            raise SandboxError(f"{s['name']} is already running")
        self._spawn(s)
        self._wait_accepting(s, time.monotonic() + timeout)

    def _wait_dead(self, s: dict[str, Any], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(s["name"])
            if proc is not None and proc.pid == s.get("pid"):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.05)
            elif s.get("pid"):
                mysqld.reap(s["pid"])
            if not self._alive(s):
                return True
            time.sleep(0.02)
        return False

    # --------------------------------------------------------------- down
    def down(self) -> None:
        """Stop every server this sandbox started and remove its data. Safe to call twice."""
        if self._state is None:
            try:
                self._state = self._read_state()
            except SandboxError:
                self._state = None
        if self._state is not None:
            live = [s for s in self._servers if self._alive(s)]
            for s in live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s["pid"], signal.SIGCONT)  # a frozen server cannot shut down
            for s in live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s["pid"], signal.SIGTERM)
            for s in live:
                if not self._wait_dead(s, 10.0):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(s["pid"], signal.SIGKILL)
                    self._wait_dead(s, 5.0)
            self._remove_data()
            self._state = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._procs.clear()

    def _remove_data(self, *, keep_dir: bool = False) -> None:
        """Remove only what the sandbox created, and the directory if the sandbox made it."""
        assert self._state is not None
        for s in self._servers:
            shutil.rmtree(s["datadir"], ignore_errors=True)
            shutil.rmtree(f"{s['datadir']}.tmp", ignore_errors=True)
        shutil.rmtree(self.dir / ".template", ignore_errors=True)
        for leftover in (self.state_file, self.dir / "init.log"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        if self._state.get("created_dir") and not keep_dir:
            with contextlib.suppress(OSError):
                self.dir.rmdir()

    def __repr__(self) -> str:
        servers = self.masked_urls() if self._state else {}
        return f"Sandbox(dir={str(self.dir)!r}, servers={servers!r})"
