"""Fault injection on a sandbox's servers: delayed, paused and broken replicas, frozen and killed servers.

Used by the fault tests and by ``rwsplit sandbox delay|pause|break|freeze|kill|start ...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from . import mysqld, replication
from .cluster import Cluster
from .errors import SandboxError
from .flavor import Flavor

__all__ = ["FaultInjection"]


class FaultInjection(Cluster):
    """What can go wrong with a sandbox's servers, on demand (the methods of :class:`Sandbox`)."""

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
        """SIGSTOP a server: it keeps its connections open but answers nothing (from the moment this
        returns: it waits, up to 2 s, until every thread of the server has stopped)."""
        self._signal(which, signal.SIGSTOP)
        pid = self._server(which)["pid"]
        deadline = time.monotonic() + 2.0
        while not mysqld.all_threads_stopped(pid) and time.monotonic() < deadline:
            time.sleep(0.005)

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
