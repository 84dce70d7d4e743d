"""``rwsplit bench``: the same read/write workload under four routing strategies, with lag injection.

Each strategy runs for its share of the run against one bench table: ``primary`` (everything on
the primary), ``naive`` (SQLAlchemy's documented routing recipe: no lag bound, no pinning),
``session`` and ``causal`` (rwsplit's two read-your-writes modes). Workers write new versions of
random keys and read them back in the same session (read-your-writes check), and read random keys
(staleness check against the versions the bench committed and when). A sampler records every
replica's lag as rwsplit's monitor sees it. :func:`run_bench` returns the JSON-shaped result.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import itertools
import json
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, registry
from sqlalchemy.pool import NullPool

from ._validate import check_count, check_seconds
from .engine import coerce_servers
from .engine import create_engine as create_routing_engine
from .errors import RwsplitError
from .sandbox import Sandbox
from .session import sessionmaker as routing_sessionmaker

__all__ = [
    "STRATEGIES",
    "RWSPLIT_STRATEGIES",
    "Delay",
    "Pause",
    "BenchConfig",
    "BenchFailed",
    "check_servers",
    "NaiveSession",
    "StalenessChecker",
    "parse_delay",
    "parse_pause",
    "parse_strategies",
    "run_bench",
    "exit_code",
    "report_tables",
    "write_json",
]

STRATEGIES = ("primary", "naive", "session", "causal")
RWSPLIT_STRATEGIES = ("session", "causal")
PLOT_HINT = "--plot needs matplotlib, which is not installed: pip install 'rwsplit[plot]'"
SANDBOX_REPLICAS = 2

_MAX_SECONDS = 86400.0
_SAMPLE_INTERVAL = 0.1
_CONNECT_TIMEOUT = 3
_REPLICATE_TIMEOUT = 60.0
_INSERT_BATCH = 1000

Progress = Callable[[str], None]


class BenchFailed(RwsplitError):
    """The bench could not run to the end (the servers, not the options, are the problem)."""


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Delay:
    """``--delay-replica N=SECONDS``: replica N applies events SECONDS late (``MASTER_DELAY``)."""

    replica: int
    seconds: int
    default: bool = False


@dataclass(frozen=True)
class Pause:
    """``--pause-replica N@START+LENGTH``: replica N's SQL thread stops from START for LENGTH seconds."""

    replica: int
    start: float
    length: float

    @property
    def end(self) -> float:
        return self.start + self.length


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: {text!r} is not a finite number")
    return value


def _replica_number(text: str, option: str, spec: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{option} {spec!r}: the replica must be a number (1 for replica1), got {text!r}")
    return int(text)


def parse_delay(spec: str) -> Delay:
    """``"1=2"`` → ``Delay(replica=1, seconds=2)``; ``ValueError`` for anything else."""
    replica, sep, seconds = spec.partition("=")
    if not sep:
        raise ValueError(f"--delay-replica {spec!r}: expected N=SECONDS, e.g. 1=2")
    n = _replica_number(replica, "--delay-replica", spec)
    if not seconds.strip().isdigit() or int(seconds) > _MAX_SECONDS:
        raise ValueError(
            f"--delay-replica {spec!r}: SECONDS must be a whole number from 0 to {_MAX_SECONDS:.0f}"
        )
    return Delay(n, int(seconds))


def parse_pause(spec: str) -> Pause:
    """``"2@5+3"`` → ``Pause(replica=2, start=5.0, length=3.0)``; ``ValueError`` for anything else."""
    replica, at, window = spec.partition("@")
    start, plus, length = window.partition("+")
    if not at or not plus:
        raise ValueError(f"--pause-replica {spec!r}: expected N@START+LENGTH (seconds), e.g. 2@5+3")
    n = _replica_number(replica, "--pause-replica", spec)
    begin = _number(start, f"--pause-replica {spec!r}: START")
    span = _number(length, f"--pause-replica {spec!r}: LENGTH")
    if begin < 0 or span <= 0:
        raise ValueError(f"--pause-replica {spec!r}: START must be ≥ 0 and LENGTH > 0 seconds")
    return Pause(n, begin, span)


def parse_strategies(text: str) -> tuple[str, ...]:
    """``"naive,session"`` → ``("naive", "session")``; unknown or repeated names are a ValueError."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"--strategies names no strategy; choose from {', '.join(STRATEGIES)}")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--strategies names a strategy twice: {text!r}")
    return names


def _mask(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one bench run needs, checked at construction (``ValueError`` naming the option).

    No ``primary`` means: start a sandbox of 1 primary + 2 replicas and tear it down afterwards.
    ``duration`` is the whole run, split evenly between ``strategies``.
    """

    primary: str | None = field(default=None, repr=False)
    replicas: tuple[str, ...] = field(default=(), repr=False)
    threads: int = 8
    duration: float = 30.0
    write_ratio: float = 0.1
    keys: int = 1000
    max_lag: float = 1.0
    strategies: tuple[str, ...] = STRATEGIES
    delays: tuple[Delay, ...] = ()
    pauses: tuple[Pause, ...] = ()
    default_lag: bool = True
    json_path: Path | None = None
    plot_path: Path | None = None

    def __post_init__(self) -> None:
        check_count("--threads", self.threads, 1, 256)
        check_count("--keys", self.keys, 1, 1_000_000)
        duration = check_seconds("--duration", self.duration, allow_zero=False, upper=_MAX_SECONDS)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "max_lag", check_seconds("--max-lag", self.max_lag, upper=_MAX_SECONDS))
        ratio = self.write_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ValueError(f"--write-ratio must be a number from 0 to 1, got {ratio!r}")
        object.__setattr__(self, "write_ratio", float(ratio))
        object.__setattr__(self, "replicas", tuple(self.replicas))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        parse_strategies(",".join(self.strategies))
        self._check_servers()
        self._check_injections()
        self._check_outputs()

    def _check_servers(self) -> None:
        if self.primary is None:
            if self.replicas:
                raise ValueError("--replica needs --primary (or give neither to run in a sandbox)")
            return
        if not self.replicas:
            raise ValueError("--primary needs at least one --replica URL")
        primary, replicas = coerce_servers(
            self.primary, self.replicas, primary_label="--primary", replica_label="--replica"
        )
        for option, url in (("--primary", primary), *(("--replica", r) for r in replicas)):
            if not url.database:
                raise ValueError(f"{option} {_mask(url)} names no database; the bench table goes there")

    def _check_injections(self) -> None:
        count = self.replica_count
        for option, items in (("--delay-replica", self.delays), ("--pause-replica", self.pauses)):
            for item in items:
                if not 1 <= item.replica <= count:
                    raise ValueError(
                        f"{option}: there is no replica {item.replica} (replicas are 1 to {count})"
                    )
        delayed = [d.replica for d in self.delays]
        if len(set(delayed)) != len(delayed):
            raise ValueError("--delay-replica: one delay per replica")
        for d in self.delays:
            if d.seconds < 0 or d.seconds > _MAX_SECONDS:
                raise ValueError(f"--delay-replica: {d.seconds} is not a delay from 0 to 86400 seconds")
        pauses = sorted(self.pauses, key=lambda p: (p.replica, p.start))
        for p in pauses:
            if p.start >= self.duration:
                raise ValueError(
                    f"--pause-replica {p.replica}@{p.start:g}+{p.length:g} starts after the "
                    f"{self.duration:g} s run ends"
                )
        for a, b in itertools.pairwise(pauses):
            if a.replica == b.replica and b.start < a.end:
                raise ValueError(f"--pause-replica: pauses of replica {a.replica} overlap")

    def _check_outputs(self) -> None:
        for option, path in (("--json", self.json_path), ("--plot", self.plot_path)):
            if path is not None and not Path(path).parent.is_dir():
                raise ValueError(f"{option} {path}: directory {Path(path).parent} does not exist")
        if self.plot_path is not None and importlib.util.find_spec("matplotlib") is None:
            raise ValueError(PLOT_HINT)

    @property
    def sandbox(self) -> bool:
        """True when the bench starts (and tears down) its own sandbox."""
        return self.primary is None

    @property
    def replica_count(self) -> int:
        return len(self.replicas) if self.primary is not None else SANDBOX_REPLICAS

    @property
    def seconds_per_strategy(self) -> float:
        return self.duration / len(self.strategies)

    @property
    def injected_delays(self) -> tuple[Delay, ...]:
        """The delays applied: the given ones, or replica 1 by 1 s in an own sandbox without any."""
        if self.sandbox and self.default_lag and not self.delays and not self.pauses:
            return (Delay(1, 1, default=True),)
        return self.delays

    def injections(self) -> list[dict[str, Any]]:
        """The active injections, JSON-shaped."""
        out: list[dict[str, Any]] = [
            {"kind": "delay", "replica": f"replica{d.replica}", "seconds": d.seconds, "default": d.default}
            for d in self.injected_delays
        ]
        out += [
            {"kind": "pause", "replica": f"replica{p.replica}", "start": p.start, "length": p.length}
            for p in self.pauses
        ]
        return out

    def describe_injections(self) -> str:
        """One line saying which injections are active."""
        parts = [
            f"replica{d.replica} delayed {d.seconds} s"
            + (" (default in a sandbox; --no-default-lag turns it off)" if d.default else "")
            for d in self.injected_delays
        ]
        parts += [f"replica{p.replica} paused from {p.start:g} s for {p.length:g} s" for p in self.pauses]
        return "injections: " + ("; ".join(parts) if parts else "none")

    def describe(self) -> dict[str, Any]:
        """The options, JSON-shaped, with passwords masked."""
        masked_primary = None if self.primary is None else _mask(sa.make_url(self.primary))
        return {
            "threads": self.threads,
            "duration": self.duration,
            "seconds_per_strategy": self.seconds_per_strategy,
            "write_ratio": self.write_ratio,
            "keys": self.keys,
            "max_lag": self.max_lag,
            "strategies": list(self.strategies),
            "sandbox": self.sandbox,
            "primary": masked_primary,
            "replicas": [_mask(sa.make_url(r)) for r in self.replicas],
            "injections": self.injections(),
            "json": None if self.json_path is None else str(self.json_path),
            "plot": None if self.plot_path is None else str(self.plot_path),
        }


# ----------------------------------------------------------------------------- staleness


class StalenessChecker:
    """Tells which reads were staler than ``max_lag``, from the versions committed on the primary.

    A read that started at ``t`` and returned version ``v`` of a key is stale if a version ``> v``
    had certainly committed before ``t - max_lag``. The bench knows a commit happened no later than
    when ``COMMIT`` returned (and no earlier than when it was sent): using the return time means a
    reported stale read is always real, and a real one is missed only if the newer version committed
    less than one commit round trip before ``t - max_lag``. Versions of a key commit in version
    order (row lock), so version ``u`` committed no later than any larger version's bound.
    Every read is checked, read-backs included.
    """

    def __init__(self, max_lag: float) -> None:
        self.max_lag = max_lag
        self._commits: dict[int, list[tuple[int, float]]] = {}
        self._index: dict[int, tuple[list[int], list[float]]] | None = None

    def committed(self, key: int, version: int, returned_at: float) -> None:
        """Version ``version`` of ``key`` committed; ``COMMIT`` returned at ``returned_at``."""
        self._commits.setdefault(key, []).append((version, returned_at))
        self._index = None

    def _key_index(self, key: int) -> tuple[list[int], list[float]]:
        if self._index is None:
            self._index = {}
            for k, commits in self._commits.items():
                commits.sort()
                versions = [v for v, _ in commits]
                bounds = [t for _, t in commits]
                for i in range(len(bounds) - 2, -1, -1):
                    bounds[i] = min(bounds[i], bounds[i + 1])
                self._index[k] = (versions, bounds)
        return self._index.get(key, ([], []))

    def staleness(self, key: int, version: int | None, started: float) -> float | None:
        """Seconds since the first version the read missed had committed, if the read was stale."""
        versions, bounds = self._key_index(key)
        i = bisect.bisect_right(versions, -1 if version is None else version)
        if i < len(versions) and bounds[i] < started - self.max_lag:
            return started - bounds[i]
        return None


# ----------------------------------------------------------------------------- sessions


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
        if self._flushing or isinstance(clause, (sa.Update, sa.Delete, sa.Insert)):
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


# ----------------------------------------------------------------------------- workload


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
                    tally.first_error = _describe(exc)
                time.sleep(0.05)

    def _write_and_read_back(self, factory: Callable[[], Session], key: int, tally: _Tally) -> None:
        model = self.model
        with factory() as session:
            version = self.next_version()
            started = time.perf_counter()
            result = session.execute(
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


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if isinstance(orig, pymysql.MySQLError) and len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return f"{type(orig).__name__}: {orig}".splitlines()[0][:300]


# ----------------------------------------------------------------------------- injection


class _Replication:
    """Delays, pauses and restores replicas for lag injection, over a given admin connection."""

    def __init__(self, connect: Callable[[int], Any], accounts: Mapping[int, str]) -> None:
        self._connect = connect
        self._accounts = accounts
        self._previous_delay: dict[int, int] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []

    @contextlib.contextmanager
    def _cursor(self, n: int) -> Iterator[tuple[Any, bool]]:
        conn = self._connect(n)
        try:
            cur = conn.cursor()
            cur.execute("SELECT VERSION()")
            mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
            yield cur, mariadb
        finally:
            conn.close()

    @staticmethod
    def _sql(statement: str, mariadb: bool) -> str:
        if mariadb:
            return statement
        return statement.replace(
            "CHANGE MASTER TO MASTER_DELAY", "CHANGE REPLICATION SOURCE TO SOURCE_DELAY"
        ).replace("SLAVE", "REPLICA")

    def _denied(self, n: int, action: str, exc: Exception) -> ValueError:
        return ValueError(
            f"cannot {action} replica{n} as {self._accounts.get(n, 'its account')}: {_describe(exc)}; "
            "use an account with REPLICATION SLAVE ADMIN (or SUPER) or leave out the injection"
        )

    def sql_delay(self, n: int) -> int:
        """The replica's current ``SQL_Delay`` (``SHOW SLAVE STATUS``)."""
        with self._cursor(n) as (cur, mariadb):
            cur.execute(self._sql("SHOW SLAVE STATUS", mariadb))
            row = cur.fetchone()
            if row is None:
                raise ValueError(f"replica{n} is not a replica (SHOW SLAVE STATUS is empty)")
            status = dict(zip([d[0] for d in cur.description], row, strict=True))
            return int(status.get("SQL_Delay") or 0)

    def delay(self, n: int, seconds: int) -> None:
        """``STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=seconds; START SLAVE``, remembering the old delay."""
        try:
            previous = self.sql_delay(n)
            self._previous_delay.setdefault(n, previous)
            self._set_delay(n, seconds)
        except (pymysql.MySQLError, SQLAlchemyError) as exc:
            raise self._denied(n, "delay", exc) from None

    def _set_delay(self, n: int, seconds: int) -> None:
        with self._cursor(n) as (cur, mariadb):
            cur.execute(self._sql("STOP SLAVE", mariadb))
            try:
                cur.execute(self._sql(f"CHANGE MASTER TO MASTER_DELAY={int(seconds)}", mariadb))
            finally:
                cur.execute(self._sql("START SLAVE", mariadb))

    def pause(self, n: int) -> None:
        self._thread_sql(n, "STOP SLAVE SQL_THREAD")

    def resume(self, n: int) -> None:
        self._thread_sql(n, "START SLAVE SQL_THREAD")

    def _thread_sql(self, n: int, statement: str) -> None:
        with self._lock:
            try:
                with self._cursor(n) as (cur, mariadb):
                    cur.execute(self._sql(statement, mariadb))
            except (pymysql.MySQLError, SQLAlchemyError, OSError) as exc:
                self.errors.append(f"replica{n}: {statement} failed: {_describe(exc)}")

    def restore(self) -> None:
        """Put every delayed replica back to the delay it had before the bench."""
        for n, seconds in self._previous_delay.items():
            try:
                self._set_delay(n, seconds)
            except (pymysql.MySQLError, SQLAlchemyError, OSError) as exc:
                self.errors.append(f"replica{n}: could not restore MASTER_DELAY={seconds}: {_describe(exc)}")
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


# ----------------------------------------------------------------------------- lag sampling


class _LagSampler:
    """Reads one rwsplit engine's monitor snapshot every 0.1 s: (t, replica, lag, eligible)."""

    def __init__(self, monitor: Any, max_lag: float, t0: float) -> None:
        self._monitor = monitor
        self._max_lag = max_lag
        self._t0 = t0
        self._stop = threading.Event()
        self.samples: list[tuple[float, str, float | None, bool]] = []
        self._thread = threading.Thread(target=self._run, name="rwsplit-bench-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = self._monitor.snapshot()
            t = time.perf_counter() - self._t0
            for r in snap.replicas:
                lag = r.raw_lag if r.raw_lag is not None else r.lag
                self.samples.append((t, r.name, lag, snap.is_eligible(r.name, self._max_lag)))
            self._stop.wait(_SAMPLE_INTERVAL)


# ----------------------------------------------------------------------------- the run


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _latency(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {"p50": _ms(_percentile(ordered, 0.5)), "p99": _ms(_percentile(ordered, 0.99))}


def _engine_kwargs(config: BenchConfig) -> dict[str, Any]:
    return {
        "pool_pre_ping": True,
        "pool_size": config.threads,
        "max_overflow": config.threads,
        "connect_args": {"connect_timeout": _CONNECT_TIMEOUT},
    }


def check_servers(primary: str, replicas: Sequence[str]) -> None:
    """Connect and ``SELECT 1`` on every server with a short timeout, so bad URLs fail fast.

    ``ValueError`` names the first server that failed, its URL masked.
    """
    servers = [("the primary", primary)] + [(f"replica{i}", r) for i, r in enumerate(replicas, 1)]
    for name, text in servers:
        url = sa.make_url(text)
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": _CONNECT_TIMEOUT})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, pymysql.MySQLError, OSError) as exc:
            raise ValueError(f"cannot connect to {name} {_mask(url)}: {_describe(exc)}") from None
        finally:
            engine.dispose()


def _wait_replicated(replicas: Mapping[str, Engine], table: sa.Table, keys: int) -> None:
    deadline = time.monotonic() + _REPLICATE_TIMEOUT
    count = sa.select(sa.func.count()).select_from(table)
    for name, engine in replicas.items():
        while True:
            try:
                with engine.connect() as conn:
                    if conn.execute(count).scalar() == keys:
                        break
            except SQLAlchemyError:
                pass
            if time.monotonic() > deadline:
                raise BenchFailed(
                    f"{name} did not replicate the bench table {table.name} within "
                    f"{_REPLICATE_TIMEOUT:.0f} s; is it replicating from this primary?"
                )
            time.sleep(0.1)


def _account(url: URL) -> str:
    return f"{url.username or '(no user)'}@{url.host or 'localhost'}"


class _Run:
    """One bench run against given servers: table, engines, injection, phases, results."""

    def __init__(
        self,
        config: BenchConfig,
        primary: str,
        replicas: Sequence[str],
        replication: _Replication,
        notify: Progress,
        progress: Progress | None,
    ) -> None:
        self.config = config
        self.primary_url = sa.make_url(primary)
        self.replica_urls = [sa.make_url(r) for r in replicas]
        self.replication = replication
        self.notify = notify
        self.progress = progress
        self.table = _bench_table(f"rwsplit_bench_{secrets.token_hex(4)}")
        self.checker = StalenessChecker(config.max_lag)
        self.tallies: dict[str, _Tally] = {}
        self.walls: dict[str, float] = {}
        self.t0 = 0.0
        self.phases: list[tuple[str, float, float]] = []
        self.stale_events: list[tuple[str, float, float]] = []
        self.samples: list[tuple[float, str, float | None, bool]] = []
        self.warnings: list[str] = []

    def execute(self) -> dict[str, Any]:
        config = self.config
        kwargs = _engine_kwargs(config)
        primary = sa.create_engine(self.primary_url, **kwargs)
        names = [f"replica{i}" for i in range(1, len(self.replica_urls) + 1)]
        replicas = {n: sa.create_engine(u, **kwargs) for n, u in zip(names, self.replica_urls, strict=True)}
        routing = None
        created = False
        pauses = _PauseSchedule(self.replication, config.pauses)
        sampler = None
        try:
            self.table.create(primary, checkfirst=False)
            created = True
            self.notify(f"created table {self.table.name}")
            self._fill(primary)
            _wait_replicated(replicas, self.table, config.keys)
            routing = create_routing_engine(
                self.primary_url, replicas=self.replica_urls, max_lag=config.max_lag, **kwargs
            )
            for d in config.injected_delays:
                self.replication.delay(d.replica, d.seconds)
            self.notify(config.describe_injections())
            model = _mapped_class(self.table)
            factories = self._factories(primary, replicas, routing)
            workload = _Workload(model, config.keys, config.write_ratio)
            self.t0 = time.perf_counter()
            sampler = _LagSampler(routing.monitor, config.max_lag, self.t0)
            sampler.start()
            pauses.start()
            for i, name in enumerate(config.strategies):
                self._phase(i, name, factories[name], workload)
        finally:
            if sampler is not None:
                sampler.stop()
                self.samples = sampler.samples
            pauses.finish()
            self.replication.restore()
            if created:
                self._drop(primary)
            if routing is not None:
                routing.dispose()
            for engine in (primary, *replicas.values()):
                engine.dispose()
            self.warnings += self.replication.errors
        return self._result()

    def _fill(self, primary: Engine) -> None:
        rows = [{"id": k, "version": 0} for k in range(1, self.config.keys + 1)]
        with primary.begin() as conn:
            for start in range(0, len(rows), _INSERT_BATCH):
                conn.execute(self.table.insert(), rows[start : start + _INSERT_BATCH])
        returned = time.perf_counter()
        for k in range(1, self.config.keys + 1):
            self.checker.committed(k, 0, returned)

    def _drop(self, primary: Engine) -> None:
        try:
            with primary.connect() as conn:
                conn.exec_driver_sql(f"DROP TABLE `{self.table.name}`")
            self.notify(f"dropped table {self.table.name}")
        except SQLAlchemyError as exc:
            self.warnings.append(f"could not drop table {self.table.name}: {_describe(exc)}")

    def _factories(
        self, primary: Engine, replicas: Mapping[str, Engine], routing: Any
    ) -> dict[str, Callable[[], Session]]:
        return {
            "primary": sa.orm.sessionmaker(bind=primary),
            "naive": sa.orm.sessionmaker(class_=NaiveSession, primary=primary, replicas=replicas),
            "session": routing_sessionmaker(routing, read_your_writes="session"),
            "causal": routing_sessionmaker(routing, read_your_writes="causal"),
        }

    def _phase(self, index: int, name: str, factory: Callable[[], Session], workload: _Workload) -> None:
        config = self.config
        length = config.seconds_per_strategy
        self.notify(f"running {name} for {length:g} s ({index + 1}/{len(config.strategies)})")
        tallies = [_Tally() for _ in range(config.threads)]
        started = time.perf_counter()
        deadline = started + length
        threads = [
            threading.Thread(
                target=workload.run,
                args=(factory, deadline, tally, secrets.randbits(32)),
                name=f"rwsplit-bench-{name}-{i}",
                daemon=True,
            )
            for i, tally in enumerate(tallies)
        ]
        try:
            for t in threads:
                t.start()
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(0.25)
                if self.progress is not None:
                    elapsed = min(length, time.perf_counter() - started)
                    ops = sum(t.reads + t.writes for t in tallies)
                    self.progress(
                        f"[{index + 1}/{len(config.strategies)}] {name:<8} {elapsed:5.1f}/{length:g} s  "
                        f"{ops} ops"
                    )
        finally:
            workload.stop.set()
            for t in threads:
                t.join(10)
            workload.stop.clear()
        ended = time.perf_counter()
        self.phases.append((name, started - self.t0, ended - self.t0))
        self.walls[name] = ended - started
        merged = _Tally()
        for t in tallies:
            merged.reads += t.reads
            merged.writes += t.writes
            merged.replica_reads += t.replica_reads
            merged.ryw_violations += t.ryw_violations
            merged.errors += t.errors
            merged.first_error = merged.first_error or t.first_error
            merged.read_s += t.read_s
            merged.write_s += t.write_s
            merged.observed += t.observed
            for key, version, returned in t.commits:
                self.checker.committed(key, version, returned)
        self.tallies[name] = merged
        if merged.errors:
            self.warnings.append(f"{name}: {merged.errors} failed operations, first: {merged.first_error}")

    def _result(self) -> dict[str, Any]:
        strategies: dict[str, Any] = {}
        for name, tally in self.tallies.items():
            wall = self.walls[name]
            stale = 0
            for key, started, version in tally.observed:
                age = self.checker.staleness(key, version, started)
                if age is not None:
                    stale += 1
                    self.stale_events.append((name, started - self.t0, age))
            strategies[name] = {
                "reads": tally.reads,
                "writes": tally.writes,
                "replica_reads": tally.replica_reads,
                "ryw_violations": tally.ryw_violations,
                "stale_reads": stale,
                "ops_per_s": round((tally.reads + tally.writes) / wall, 1) if wall > 0 else 0.0,
                "read_ms": _latency(tally.read_s),
                "write_ms": _latency(tally.write_s),
            }
        replicas: dict[str, Any] = {}
        for i in range(1, len(self.replica_urls) + 1):
            name = f"replica{i}"
            rows = [(lag, eligible) for _, n, lag, eligible in self.samples if n == name]
            lags = sorted(lag for lag, _ in rows if lag is not None)
            excluded = sum(1 for (_, a), (_, b) in itertools.pairwise(rows) if a and not b)
            replicas[name] = {
                "lag_ms": {
                    "p50": _ms(_percentile(lags, 0.5)),
                    "p99": _ms(_percentile(lags, 0.99)),
                    "max": _ms(lags[-1] if lags else None),
                },
                "excluded": excluded,
            }
        config = self.config.describe()
        config["primary"] = _mask(self.primary_url)
        config["replicas"] = [_mask(u) for u in self.replica_urls]
        config["table"] = self.table.name
        return {"config": config, "strategies": strategies, "replicas": replicas}


def run_bench(
    config: BenchConfig,
    *,
    notify: Progress | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the bench and return the ``--json``-shaped result; draws ``config.plot_path`` too.

    ``notify`` gets one-line notices (sandbox, table, phases, injections, warnings); ``progress``
    a status line about four times a second. Bad options or unreachable servers raise
    ``ValueError``; a run that cannot finish raises :class:`BenchFailed`. The bench table and every
    injection are removed again whatever happens, the sandbox (if it started one) torn down.
    """
    say = notify or (lambda _message: None)
    if config.sandbox:
        sb = Sandbox(replicas=SANDBOX_REPLICAS)
        say(f"starting a sandbox (1 primary + {SANDBOX_REPLICAS} replicas) in {sb.dir}")
        with sb:
            replication = _Replication(lambda n: sb.connect(n), {})
            run = _Run(config, sb.primary_url, sb.replica_urls, replication, say, progress)
            result = run.execute()
            say("stopping the sandbox")
    else:
        assert config.primary is not None
        check_servers(config.primary, config.replicas)
        urls = [sa.make_url(r) for r in config.replicas]
        admins = {
            i: sa.create_engine(u, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            for i, u in enumerate(urls, 1)
        }
        try:
            replication = _Replication(
                lambda n: admins[n].raw_connection(), {i: _account(u) for i, u in enumerate(urls, 1)}
            )
            run = _Run(config, config.primary, config.replicas, replication, say, progress)
            result = run.execute()
        finally:
            for engine in admins.values():
                engine.dispose()
    for warning in run.warnings:
        say(f"warning: {warning}")
    if config.plot_path is not None:
        _plot(config.plot_path, run)
        say(f"plot written to {config.plot_path}")
    return result


# ----------------------------------------------------------------------------- output


def exit_code(result: Mapping[str, Any]) -> int:
    """1 if an rwsplit strategy (``session``/``causal``) read a write of its own session stale, else 0."""
    strategies = result.get("strategies", {})
    return int(any(strategies.get(name, {}).get("ryw_violations", 0) > 0 for name in RWSPLIT_STRATEGIES))


def report_tables(
    result: Mapping[str, Any],
) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """Headers and rows of the strategy table and of the replica table."""
    strategy_headers = [
        "strategy",
        "reads",
        "writes",
        "replica_reads",
        "ryw_violations",
        "stale_reads",
        "ops_per_s",
        "read_p50_ms",
        "read_p99_ms",
        "write_p50_ms",
        "write_p99_ms",
    ]
    strategy_rows = [
        [
            name,
            s["reads"],
            s["writes"],
            s["replica_reads"],
            s["ryw_violations"],
            s["stale_reads"],
            f"{s['ops_per_s']:.0f}",
            _fmt(s["read_ms"]["p50"]),
            _fmt(s["read_ms"]["p99"]),
            _fmt(s["write_ms"]["p50"]),
            _fmt(s["write_ms"]["p99"]),
        ]
        for name, s in result["strategies"].items()
    ]
    replica_headers = ["replica", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "excluded"]
    replica_rows = [
        [name, _fmt(r["lag_ms"]["p50"]), _fmt(r["lag_ms"]["p99"]), _fmt(r["lag_ms"]["max"]), r["excluded"]]
        for name, r in result["replicas"].items()
    ]
    return strategy_headers, strategy_rows, replica_headers, replica_rows


def _fmt(ms: float | None) -> str | None:
    return None if ms is None else f"{ms:.1f}"


def write_json(result: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def _plot(path: Path, run: _Run) -> None:
    """Each replica's lag over time, the max_lag line, the strategy phases and stale reads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    for i in range(1, len(run.replica_urls) + 1):
        name = f"replica{i}"
        points = [(t, lag * 1000) for t, n, lag, _ in run.samples if n == name and lag is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{name} lag", linewidth=1.2)
    ax.axhline(run.config.max_lag * 1000, color="red", linestyle="--", label="max_lag")
    ax.set_ylim(bottom=0)
    markers = itertools.cycle(["x", "+", "1", "."])
    for name, start, end in run.phases:
        ax.axvspan(start, end, alpha=0.05, color="grey")
        ax.text((start + end) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", fontsize=9)
        events = [(t, age * 1000) for s, t, age in run.stale_events if s == name]
        if events:
            ax.scatter(
                [e[0] for e in events],
                [e[1] for e in events],
                marker=next(markers),
                s=14,
                label=f"stale reads: {name} ({len(events)})",
            )
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("lag / staleness (ms)")
    ax.set_title("rwsplit bench: replica lag and stale reads", pad=20)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
