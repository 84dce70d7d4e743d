"""One bench run: set up the table and engines, inject lag, run each strategy's phase, clean up."""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..engine import RoutingEngine
from ..errors import RwsplitError, describe_error
from ..observe import Stats
from ..sandbox import Sandbox
from ..urls import mask_url
from .config import RWSPLIT_STRATEGIES, SANDBOX_REPLICAS, BenchConfig, with_driver
from .injection import _PauseSchedule, _Replication
from .report import _plot, causal_waits, reads_by_reason
from .staleness import StalenessChecker, _LagSampler
from .workers import Factory, workers_for
from .workload import _bench_table, _mapped_class, _Tally, _Workload

_CONNECT_TIMEOUT = 3
_REPLICATE_TIMEOUT = 60.0
_INSERT_BATCH = 1000

Progress = Callable[[str], None]


class BenchFailed(RwsplitError):
    """The bench could not run to the end (the servers, not the options, are the problem)."""


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


def _workload_urls(config: BenchConfig, primary: str, replicas: Sequence[str]) -> tuple[URL, list[URL]]:
    """The servers' URLs with ``config.driver`` swapped in (as given without one)."""
    urls = [sa.make_url(u) for u in (primary, *replicas)]
    if config.driver is not None:
        urls = [with_driver(u, config.driver) for u in urls]
    return urls[0], urls[1:]


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def check_servers(primary: str, replicas: Sequence[str], config: BenchConfig | None = None) -> None:
    """Connect and ``SELECT 1`` on every server with a short timeout, so bad URLs fail fast;
    through ``config``'s driver, if given.

    ``ValueError`` names the first server that failed, its URL masked.
    """
    config = config or BenchConfig(primary=primary, replicas=tuple(replicas), duration=1)
    primary_url, replica_urls = _workload_urls(config, primary, replicas)
    servers = [("the primary", primary_url)] + [(f"replica{i}", r) for i, r in enumerate(replica_urls, 1)]
    workers = workers_for(config)
    try:
        for name, url in servers:
            engine = workers.engine(
                url, poolclass=NullPool, connect_args={"connect_timeout": _CONNECT_TIMEOUT}
            )
            try:
                workers.call(_select_one, engine)
            except (SQLAlchemyError, pymysql.MySQLError, OSError) as exc:
                raise ValueError(f"cannot connect to {name} {mask_url(url)}: {describe_error(exc)}") from None
            finally:
                workers.call(engine.dispose)
    finally:
        workers.close()


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
        interrupted: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.interrupted = interrupted or threading.Event()
        self.primary_url, self.replica_urls = _workload_urls(config, primary, replicas)
        self.workers = workers_for(config)
        self.replication = replication
        self.notify = notify
        self.progress = progress
        self.table = _bench_table(f"rwsplit_bench_{secrets.token_hex(4)}")
        self.checker = StalenessChecker(config.max_lag)
        self.tallies: dict[str, _Tally] = {}
        self.routed: dict[str, Stats | None] = {}  # the routing engine's counts during each phase
        self.walls: dict[str, float] = {}
        self.t0 = 0.0
        self.phases: list[tuple[str, float, float]] = []
        self.stale_events: list[tuple[str, float, float]] = []
        self.samples: list[tuple[float, str, float | None, bool]] = []
        self.warnings: list[str] = []

    def execute(self) -> dict[str, Any]:
        config = self.config
        workers = self.workers
        kwargs = _engine_kwargs(config)
        names = [f"replica{i}" for i in range(1, len(self.replica_urls) + 1)]
        primary: Engine | None = None
        replicas: dict[str, Engine] = {}
        routing = None
        created = False
        pauses = _PauseSchedule(self.replication, config.pauses)
        sampler = None
        try:
            primary = workers.engine(self.primary_url, **kwargs)
            replicas = {n: workers.engine(u, **kwargs) for n, u in zip(names, self.replica_urls, strict=True)}
            workers.call(self.table.create, primary)
            created = True
            self.notify(f"created table {self.table.name}")
            workers.call(self._fill, primary)
            workers.call(_wait_replicated, replicas, self.table, config.keys)
            routing = workers.routing(self.primary_url, self.replica_urls, max_lag=config.max_lag, **kwargs)
            for d in config.injected_delays:
                self.replication.delay(d.replica, d.seconds)
            self.notify(config.describe_injections())
            model = _mapped_class(self.table)
            factories = workers.factories(primary, replicas, routing)
            dbapi_error = primary.dialect.loaded_dbapi.Error
            workload = _Workload(model, config.keys, config.write_ratio, (dbapi_error,))
            self.t0 = time.perf_counter()
            sampler = _LagSampler(routing.monitor, config.max_lag, self.t0)
            sampler.start()
            pauses.start()
            for i, name in enumerate(config.strategies):
                counted = routing if name in RWSPLIT_STRATEGIES else None
                self._phase(i, name, factories[name], workload, counted)
        finally:
            if sampler is not None:
                sampler.stop()
                self.samples = sampler.samples
            pauses.finish()
            self.replication.restore()
            if created:
                assert primary is not None
                workers.call(self._drop, primary)
            if routing is not None:
                workers.call(routing.dispose)
            for engine in (primary, *replicas.values()):
                if engine is not None:
                    workers.call(engine.dispose)
            workers.close()
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
            self.warnings.append(f"could not drop table {self.table.name}: {describe_error(exc)}")

    def _phase(
        self,
        index: int,
        name: str,
        factory: Factory,
        workload: _Workload,
        routing: RoutingEngine | None = None,
    ) -> None:
        """Run one strategy; ``routing``: the engine whose decisions it counts (rwsplit strategies)."""
        config = self.config
        length = config.seconds_per_strategy
        self.notify(f"running {name} for {length:g} s ({index + 1}/{len(config.strategies)})")
        tallies = [_Tally() for _ in range(config.threads)]
        if routing is not None:
            routing.stats(reset=True)
        started = time.perf_counter()

        def tick() -> None:
            if self.interrupted.is_set():  # a Ctrl-C whose KeyboardInterrupt something swallowed
                raise KeyboardInterrupt
            if self.progress is not None:
                elapsed = min(length, time.perf_counter() - started)
                ops = sum(t.reads + t.writes for t in tallies)
                self.progress(
                    f"[{index + 1}/{len(config.strategies)}] {name:<8} {elapsed:5.1f}/{length:g} s  {ops} ops"
                )

        self.workers.run(workload, factory, started + length, tallies, name, tick)
        workload.stop.clear()  # only for the next phase: after a Ctrl-C, late starters must stop at once
        ended = time.perf_counter()
        stats = self.routed[name] = None if routing is None else routing.stats()
        self.phases.append((name, started - self.t0, ended - self.t0))
        self.walls[name] = ended - started
        merged = _Tally()
        for part in tallies:
            merged.reads += part.reads
            merged.writes += part.writes
            merged.replica_reads += part.replica_reads
            merged.ryw_violations += part.ryw_violations
            merged.errors += part.errors
            merged.first_error = merged.first_error or part.first_error
            merged.read_s += part.read_s
            merged.write_s += part.write_s
            merged.observed += part.observed
            for key, version, returned in part.commits:
                self.checker.committed(key, version, returned)
        self.tallies[name] = merged
        if merged.errors:
            self.warnings.append(f"{name}: {merged.errors} failed operations, first: {merged.first_error}")
        if stats is not None and stats.reads != merged.reads:
            self.warnings.append(
                f"{name}: rwsplit routed {stats.reads} reads, {merged.reads} completed "
                "(failed or retried reads); reads_by_reason counts the routed ones"
            )

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
                "reads_by_reason": reads_by_reason(name, tally.reads, self.routed.get(name)),
                "causal_waits": causal_waits(self.routed.get(name)),
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
        config["primary"] = mask_url(self.primary_url)
        config["replicas"] = [mask_url(u) for u in self.replica_urls]
        config["table"] = self.table.name
        return {"config": config, "strategies": strategies, "replicas": replicas}


def run_bench(
    config: BenchConfig,
    *,
    notify: Progress | None = None,
    progress: Progress | None = None,
    interrupted: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the bench and return the ``--json``-shaped result; draws ``config.plot_path`` too.

    ``notify`` gets one-line notices (sandbox, table, phases, injections, warnings); ``progress``
    a status line about four times a second. Setting ``interrupted`` ends the run as a Ctrl-C
    does. Bad options or unreachable servers raise ``ValueError``; a run that cannot finish raises
    :class:`BenchFailed`. The bench table and every injection are removed again whatever happens,
    the sandbox (if it started one) torn down.
    """
    say = notify or (lambda _message: None)
    if config.sandbox:
        sb = Sandbox(replicas=SANDBOX_REPLICAS)
        say(f"starting a sandbox (1 primary + {SANDBOX_REPLICAS} replicas) in {sb.dir}")
        with sb:
            replication = _Replication(lambda n: sb.connect(n), {})
            run = _Run(config, sb.primary_url, sb.replica_urls, replication, say, progress, interrupted)
            result = run.execute()
            say("stopping the sandbox")
    else:
        assert config.primary is not None
        check_servers(config.primary, config.replicas, config)
        # injections through PyMySQL (as rwsplit's monitor), whatever the workload's driver
        urls = [with_driver(sa.make_url(r), "pymysql") for r in config.replicas]
        admins = {
            i: sa.create_engine(u, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            for i, u in enumerate(urls, 1)
        }
        try:
            replication = _Replication(
                lambda n: admins[n].raw_connection(), {i: _account(u) for i, u in enumerate(urls, 1)}
            )
            run = _Run(config, config.primary, config.replicas, replication, say, progress, interrupted)
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
