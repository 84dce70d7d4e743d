"""The bench's workload: the naive baseline session, the bench table and the worker loop."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, registry

from ..compat import flushing
from ..errors import RwsplitError, describe_error


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


class _Workload:
    """The per-run shared state of the workers: the model, the version counter, the stop flag."""

    def __init__(self, model: type[Any], keys: int, write_ratio: float) -> None:
        self.model = model
        self.keys = keys
        self.write_ratio = write_ratio
        self.stop = threading.Event()
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def next_version(self) -> int:
        with self._lock:
            return next(self._versions)

    def run(self, factory: Callable[[], Session], deadline: float, tally: _Tally, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set() and time.perf_counter() < deadline:
            key = rng.randint(1, self.keys)
            try:
                if rng.random() < self.write_ratio:
                    self._write_and_read_back(factory, key, tally)
                else:
                    with factory() as session:
                        self._read(session, key, tally)
            except (SQLAlchemyError, pymysql.MySQLError, RwsplitError) as exc:
                tally.errors += 1
                if tally.first_error is None:
                    tally.first_error = describe_error(exc)
                time.sleep(0.05)

    def _write_and_read_back(self, factory: Callable[[], Session], key: int, tally: _Tally) -> None:
        model = self.model
        with factory() as session:
            version = self.next_version()
            started = time.perf_counter()
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                sa.update(model)
                .where(model.id == key, model.version < version)
                .values(version=version)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            returned = time.perf_counter()
            tally.write_s.append(returned - started)
            tally.writes += 1
            if result.rowcount == 1:
                tally.commits.append((key, version, returned))
            got = self._read(session, key, tally)
            if got is None or got < version:
                tally.ryw_violations += 1

    def _read(self, session: Session, key: int, tally: _Tally) -> int | None:
        model = self.model
        started = time.perf_counter()
        got = session.scalar(sa.select(model.version).where(model.id == key))
        tally.read_s.append(time.perf_counter() - started)
        tally.reads += 1
        if (getattr(session, "last_target", None) or "primary") != "primary":
            tally.replica_reads += 1
        tally.observed.append((key, started, got))
        return got
