"""A concurrent read/write workload that checks rwsplit's guarantees, for fault tests and soaks.

``ConsistencyLoad`` runs writer threads (insert a row, commit, read it back in the same session:
read-your-writes) and reader threads (read a random acknowledged row in a fresh session: a row
acknowledged longer ago than ``max_lag`` + ``slack`` must be visible) against a routing engine,
and counts what each saw. :func:`verify_replicated` then checks that every acknowledged write is
on the primary and, after catch-up, identical on every replica.

    with ConsistencyLoad(engine, "app.rows", threads=8) as load:
        sandbox.kill(1); ...
    verify_replicated(sandbox, "app.rows", load.results)
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .engine import RoutingEngine
from .errors import RwsplitError
from .sandbox import Sandbox
from .session import sessionmaker

__all__ = ["ConsistencyLoad", "LoadResults", "create_table", "verify_replicated", "checksum"]

_TRACKED = 20_000


def create_table(sandbox: Sandbox, table: str) -> None:
    """The table :class:`ConsistencyLoad` writes to (``db.name``), created on the primary and replicated."""
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, v VARCHAR(40), at DOUBLE)")
    sandbox.wait_caught_up()


@dataclass
class LoadResults:
    """What the workload saw; error lists hold the message and traceback of each failure.

    ``acked`` keeps the latest 20,000 acknowledged writes and ``read_seconds`` a sample of as many
    latencies, so a long run's bookkeeping does not grow without bound.
    """

    acked: dict[int, tuple[str, float]] = field(default_factory=dict)
    read_errors: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    ryw_violations: int = 0
    stale_reads: int = 0
    reads: int = 0
    replica_reads: int = 0
    writes: int = 0
    read_seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error_kinds(self, errors: list[str]) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for e in errors:
            kind = e.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


class ConsistencyLoad:
    """Half the threads write and read back, half read random acknowledged rows."""

    def __init__(
        self,
        engine: RoutingEngine,
        table: str,
        *,
        mode: str = "session",
        threads: int = 8,
        slack: float = 1.0,
        pause: float = 0.002,
    ) -> None:
        self.engine = engine
        self.table = table
        self.mode = mode
        self.slack = slack
        self.pause = pause
        self.results = LoadResults()
        self._stop = threading.Event()
        self._ids = iter(range(random.randrange(1, 10**12), 10**13))
        self._id_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._writer if i % 2 == 0 else self._reader, daemon=True)
            for i in range(threads)
        ]
        self._insert = sa.text(f"INSERT INTO {table} VALUES (:i, :v, :t)")
        self._select = sa.text(f"SELECT v FROM {table} WHERE id = :i")

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    def _failed(self, errors: list[str], exc: BaseException) -> None:
        with self.results.lock:
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}\n{traceback.format_exc()}")

    def _writer(self) -> None:
        Session = sessionmaker(self.engine)
        r = self.results
        while not self._stop.is_set():
            pk, value = self._next_id(), f"v{random.random():.12f}"
            try:
                with Session(read_your_writes=self.mode) as s:
                    s.execute(self._insert, {"i": pk, "v": value, "t": time.time()})
                    s.commit()
                    with r.lock:
                        r.acked[pk] = (value, time.time())
                        r.writes += 1
                        if len(r.acked) > _TRACKED:  # bounded bookkeeping: a long soak stays flat
                            del r.acked[next(iter(r.acked))]
                    if s.execute(self._select, {"i": pk}).scalar() != value:
                        with r.lock:
                            r.ryw_violations += 1
            except (sa.exc.SQLAlchemyError, RwsplitError) as exc:
                self._failed(r.write_errors, exc)
                self._stop.wait(0.05)
            self._stop.wait(self.pause * 2)

    def _reader(self) -> None:
        Session = sessionmaker(self.engine)
        r = self.results
        bound = self.engine.policy.max_lag + self.slack
        while not self._stop.is_set():
            with r.lock:
                pk = random.choice(list(r.acked)) if r.acked else None
                value, acked_at = r.acked[pk] if pk is not None else (None, 0.0)
            started = time.time()
            try:
                with Session(read_your_writes=self.mode) as s:
                    got: Any = s.execute(self._select if pk else sa.text("SELECT 1"), {"i": pk}).scalar()
                    elapsed = time.time() - started
                    with r.lock:
                        r.reads += 1
                        r.replica_reads += s.last_target != "primary"
                        if len(r.read_seconds) < _TRACKED:
                            r.read_seconds.append(elapsed)
                        else:
                            r.read_seconds[r.reads % _TRACKED] = elapsed
                        if pk is not None and got != value and started - acked_at > bound:
                            r.stale_reads += 1
            except (sa.exc.SQLAlchemyError, RwsplitError) as exc:
                self._failed(r.read_errors, exc)
            self._stop.wait(self.pause)

    def __enter__(self) -> ConsistencyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("a workload thread hung for more than 60 s after stop")


def checksum(sandbox: Sandbox, server: str, table: str) -> tuple[int, int]:
    """(row count, sum of CRC32 of every row) of ``table`` on one server."""
    with sandbox.connect(server) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT(id, ':', v))), 0) FROM {table}")
        count, total = cur.fetchone() or (0, 0)
        return int(count), int(total)


def verify_replicated(sandbox: Sandbox, table: str, results: LoadResults, timeout: float = 30) -> None:
    """Every acknowledged write is on the primary; after catch-up every replica equals the primary."""
    sandbox.wait_caught_up(timeout=timeout)
    with sandbox.connect("primary") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {table}")
        on_primary = dict(cur.fetchall())
    missing = [pk for pk, (value, _) in results.acked.items() if on_primary.get(pk) != value]
    if missing:
        raise AssertionError(f"{len(missing)} acknowledged writes are missing on the primary")
    expected = checksum(sandbox, "primary", table)
    for name in sandbox.server_names[1:]:
        got = checksum(sandbox, name, table)
        if got != expected:
            raise AssertionError(f"{name} differs from the primary: {got} != {expected}")
