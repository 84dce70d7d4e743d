"""A throwaway MariaDB/MySQL replication cluster on loopback, for tests, benchmarks and demos.

One primary and N replicas, each a real server process with its own data dir under one
directory and its own port, GTID replication, read-only replicas, a replication user, an
application user and a monitor user. A state file in the directory lets later commands (and
other processes) find the cluster again; ``down`` stops every process and removes the data.
Reading a running cluster is :mod:`rwsplit.cluster`; fault injection is :mod:`rwsplit.faults`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from . import mysqld, replication
from .cluster import _APP_USER, _MONITOR_USER, _REPL_USER, _STATE_VERSION, STATE_FILE, ServerStatus
from .errors import SandboxError
from .faults import FaultInjection
from .mysqld import find_server_binaries

__all__ = ["Sandbox", "ServerStatus", "find_server_binaries", "STATE_FILE"]


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


class Sandbox(FaultInjection):
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
        for bootstrap in (".template", ".template.tmp"):
            shutil.rmtree(self.dir / bootstrap, ignore_errors=True)
        for leftover in (self.state_file, self.dir / "init.log"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        if self._state.get("created_dir") and not keep_dir:
            with contextlib.suppress(OSError):
                self.dir.rmdir()

    def __repr__(self) -> str:
        servers = self.masked_urls() if self._state else {}
        return f"Sandbox(dir={str(self.dir)!r}, servers={servers!r})"
