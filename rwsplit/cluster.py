"""A sandbox's servers as its state file records them: URLs, admin connections, processes, status.

The base of :class:`rwsplit.sandbox.Sandbox`, which starts and stops the cluster; faults are
injected by :class:`rwsplit.faults.FaultInjection`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from . import mysqld
from .errors import SandboxError, describe_error
from .flavor import Flavor, flavor_of, replica_status

__all__ = ["Cluster", "ServerStatus", "STATE_FILE"]

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


class Cluster:
    """The servers of one sandbox directory: looked up in its state file, reached and watched.

    A base class: :class:`rwsplit.sandbox.Sandbox` sets the attributes below.
    """

    dir: Path
    database: str
    _state: dict[str, Any] | None
    _procs: dict[str, subprocess.Popen[bytes]]

    # ----------------------------------------------------------------- state file
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

    # ----------------------------------------------------------------- processes
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
