"""Lag injection: delay, pause and restore replicas during a bench run, on a schedule."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pymysql
from sqlalchemy.exc import SQLAlchemyError

from ..errors import describe_error
from ..flavor import Flavor, replica_status
from ..replication import server_flavor, set_delay, start_sql_thread, stop_sql_thread
from .config import Pause


class _Replication:
    """Delays, pauses and restores replicas for lag injection, over a given admin connection."""

    def __init__(self, connect: Callable[[int], Any], accounts: Mapping[int, str]) -> None:
        self._connect = connect
        self._accounts = accounts
        self._previous_delay: dict[int, int] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []

    @contextlib.contextmanager
    def _cursor(self, n: int) -> Iterator[tuple[Any, Flavor]]:
        conn = self._connect(n)
        try:
            cur = conn.cursor()
            yield cur, server_flavor(cur)
        finally:
            conn.close()

    def _denied(self, n: int, action: str, exc: Exception) -> ValueError:
        return ValueError(
            f"cannot {action} replica{n} as {self._accounts.get(n, 'its account')}: {describe_error(exc)}; "
            "use an account with REPLICATION SLAVE ADMIN (or SUPER) or leave out the injection"
        )

    def sql_delay(self, n: int) -> int:
        """The replica's current ``SQL_Delay`` (``SHOW SLAVE STATUS``)."""
        with self._cursor(n) as (cur, flavor):
            status = replica_status(cur, flavor)
            if not status:
                raise ValueError(f"replica{n} is not a replica (SHOW SLAVE STATUS is empty)")
            return int(Flavor.sql_delay(status) or 0)

    def delay(self, n: int, seconds: int) -> None:
        """``STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=seconds; START SLAVE``, remembering the old delay."""
        try:
            previous = self.sql_delay(n)
            self._previous_delay.setdefault(n, previous)
            self._set_delay(n, seconds)
        except (pymysql.MySQLError, SQLAlchemyError) as exc:
            raise self._denied(n, "delay", exc) from None

    def _set_delay(self, n: int, seconds: int) -> None:
        with self._cursor(n) as (cur, flavor):
            set_delay(cur, flavor, seconds)

    def pause(self, n: int) -> None:
        self._thread_sql(n, "STOP SLAVE SQL_THREAD", stop_sql_thread)

    def resume(self, n: int) -> None:
        self._thread_sql(n, "START SLAVE SQL_THREAD", start_sql_thread)

    def _thread_sql(self, n: int, statement: str, action: Callable[[Any, Flavor], None]) -> None:
        """``action`` on replica ``n``; a failure (named as ``statement``) becomes a warning."""
        with self._lock:
            try:
                with self._cursor(n) as (cur, flavor):
                    action(cur, flavor)
            except (pymysql.MySQLError, SQLAlchemyError, OSError) as exc:
                self.errors.append(f"replica{n}: {statement} failed: {describe_error(exc)}")

    def restore(self) -> None:
        """Put every delayed replica back to the delay it had before the bench."""
        for n, seconds in self._previous_delay.items():
            try:
                self._set_delay(n, seconds)
            except (pymysql.MySQLError, SQLAlchemyError, OSError) as exc:
                self.errors.append(
                    f"replica{n}: could not restore MASTER_DELAY={seconds}: {describe_error(exc)}"
                )
        self._previous_delay.clear()


class _PauseSchedule:
    """Timer threads that stop replicas' SQL threads at START and start them at START+LENGTH."""

    def __init__(self, replication: _Replication, pauses: Sequence[Pause]) -> None:
        self._replication = replication
        self._pauses = pauses
        self._timers: list[threading.Timer] = []

    def start(self) -> None:
        for p in self._pauses:
            for delay, action in ((p.start, self._replication.pause), (p.end, self._replication.resume)):
                timer = threading.Timer(delay, action, args=(p.replica,))
                timer.daemon = True
                timer.start()
                self._timers.append(timer)

    def finish(self) -> None:
        """Cancel what has not fired yet and resume every paused replica in any case."""
        for timer in self._timers:
            timer.cancel()
        for timer in self._timers:
            timer.join(10)
        for n in sorted({p.replica for p in self._pauses}):
            self._replication.resume(n)
