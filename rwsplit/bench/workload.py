"""The bench's workload: the naive baseline session, the bench table and the worker loop."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, registry

from ..compat import flushing
from ..errors import RwsplitError, describe_error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


_BACKOFF = 0.05  # seconds a worker pauses after a failed operation


class NaiveSession(Session):
    """SQLAlchemy's documented routing recipe: flushes and DML on the primary, the rest on a random replica.

    No lag bound and no read-your-writes pinning: the baseline the rwsplit strategies are measured
    against.
    """

    def __init__(self, *, primary: Engine, replicas: Mapping[str, Engine], **kw: Any) -> None:
        super().__init__(**kw)
        self._naive_primary = primary
        self._naive_replicas = list(replicas.items())
        self.last_target: str | None = None

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
        if flushing(self) or isinstance(clause, (sa.Update, sa.Delete, sa.Insert)):
            self.last_target = "primary"
            return self._naive_primary
        self.last_target, engine = random.choice(self._naive_replicas)
        return engine


def _bench_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        mysql_engine="InnoDB",
    )


def _mapped_class(table: sa.Table) -> type[Any]:
    """An ORM class mapped (imperatively) to this run's table, whose name is random."""
    cls = type("BenchRow", (), {"__doc__": f"One key of {table.name}."})
    registry().map_imperatively(cls, table)
    return cls


@dataclass
class _Tally:
    """What one worker saw during one strategy; merged after the workers stopped."""

    reads: int = 0
    writes: int = 0
    replica_reads: int = 0
    ryw_violations: int = 0
    errors: int = 0
    first_error: str | None = None
    read_s: list[float] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)
    observed: list[tuple[int, float, int | None]] = field(default_factory=list)
    commits: list[tuple[int, int, float]] = field(default_factory=list)


_Step = tuple[str, sa.Executable | None]


class _Workload:
    """The per-run shared state of the workers: the model, the version counter, the stop flag.

    One iteration's decisions and bookkeeping are :meth:`_iteration`, a generator yielding the
    session calls to make; :meth:`run` (a thread) and :meth:`run_async` (an asyncio task) only make
    them, on a ``Session`` or an ``AsyncSession``.
    """

    def __init__(
        self, model: type[Any], keys: int, write_ratio: float, errors: tuple[type[BaseException], ...] = ()
    ) -> None:
        self.model = model
        self.keys = keys
        self.write_ratio = write_ratio
        self.errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            pymysql.MySQLError,
            RwsplitError,
            *errors,
        )
        self.stop = threading.Event()
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def next_version(self) -> int:
        with self._lock:
            return next(self._versions)

    def run(self, factory: Callable[[], Session], deadline: float, tally: _Tally, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set() and time.perf_counter() < deadline:
            try:
                with factory() as session:
                    steps = self._iteration(rng, session, tally)
                    reply = None
                    while (step := steps.send(reply)) is not None:
                        method, statement = step
                        reply = getattr(session, method)(*_args(statement))
            except self.errors as exc:
                self._failed(tally, exc)
                time.sleep(_BACKOFF)

    async def run_async(
        self, factory: Callable[[], AsyncSession], deadline: float, tally: _Tally, seed: int
    ) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set() and time.perf_counter() < deadline:
            try:
                async with factory() as session:
                    steps = self._iteration(rng, session.sync_session, tally)
                    reply = None
                    while (step := steps.send(reply)) is not None:
                        method, statement = step
                        reply = await getattr(session, method)(*_args(statement))
            except self.errors as exc:
                self._failed(tally, exc)
                await asyncio.sleep(_BACKOFF)

    @staticmethod
    def _failed(tally: _Tally, exc: BaseException) -> None:
        tally.errors += 1
        if tally.first_error is None:
            tally.first_error = describe_error(exc)

    def _iteration(
        self, rng: random.Random, session: Session, tally: _Tally
    ) -> Generator[_Step | None, Any, None]:
        """One operation on a random key: a read, or (``write_ratio``) a write read back in the same
        session. Yields ``(method, statement)`` session calls and receives their results; yields
        ``None`` when done. ``session`` is the sync session, for ``last_target`` only."""
        key = rng.randint(1, self.keys)
        if rng.random() < self.write_ratio:
            yield from self._write_and_read_back(session, key, tally)
        else:
            yield from self._read(session, key, tally)
        yield None

    def _write_and_read_back(self, session: Session, key: int, tally: _Tally) -> Generator[_Step, Any, None]:
        model = self.model
        version = self.next_version()
        started = time.perf_counter()
        result: CursorResult[Any] = yield (
            "execute",
            sa.update(model)
            .where(model.id == key, model.version < version)
            .values(version=version)
            .execution_options(synchronize_session=False),
        )
        yield ("commit", None)
        returned = time.perf_counter()
        tally.write_s.append(returned - started)
        tally.writes += 1
        if result.rowcount == 1:
            tally.commits.append((key, version, returned))
        got = yield from self._read(session, key, tally)
        if got is None or got < version:
            tally.ryw_violations += 1

    def _read(self, session: Session, key: int, tally: _Tally) -> Generator[_Step, Any, int | None]:
        model = self.model
        started = time.perf_counter()
        got: int | None = yield ("scalar", sa.select(model.version).where(model.id == key))
        tally.read_s.append(time.perf_counter() - started)
        tally.reads += 1
        if (getattr(session, "last_target", None) or "primary") != "primary":
            tally.replica_reads += 1
        tally.observed.append((key, started, got))
        return got


def _args(statement: sa.Executable | None) -> tuple[sa.Executable, ...]:
    return () if statement is None else (statement,)
