"""Routing under concurrency: throughput of rwsplit vs plain SQLAlchemy, all variants in one run.

A request is one session doing 1 ORM UPDATE (``session.execute(update(Item)…)``) + commit + 9
ORM point reads (``session.get``) of other rows; ``--threads`` threads (8) run requests back to
back for ``--warm`` (0.25) + ``--seconds`` (1) per variant and round, measured after the warm-up.
Every round runs every variant once, in an order rotated per round, on one sandbox (a primary + 2
replicas of real servers on loopback). A variant's ratio is its statements/s over plain
SQLAlchemy's in the same round (a Session on the primary's Engine with default options); the table
shows the median over ``--rounds`` (30) and the quartiles of the per-round ratios.

Many short rounds rather than a few long ones: on a shared machine the speed drifts over seconds,
so variants compared within a few seconds of each other see the same machine, and a median of 30
should move less than one of 3 or 5 (with 5 rounds of 4 s, one variant's median moved by up to 0.1
between runs, and single rounds by ±20 %; with 30 rounds of 1 s, by up to ±0.04).

Variants:

    plain            plain SQLAlchemy on the primary, default engine options (the baseline)
    plain_ping       the same with pool_pre_ping=True
    none             rwsplit, no replicas (everything on the primary)
    session          rwsplit, 2 replicas, read_your_writes="session"
    causal           rwsplit, 2 replicas, read_your_writes="causal"
    causal_noping    rwsplit, 2 replicas, "causal", pool_pre_ping=False

Then the single-threaded routing overhead as ``bench_routing.py`` measures it: 200 ORM point
reads in a fresh session, plain ``Session`` on a replica's Engine vs ``RoutingSession`` with that
replica as its only one (same pool_pre_ping as rwsplit's replica Engines), interleaved rounds.

The CPU column is this process's CPU time per statement (all its threads, the monitors' included),
"servers" the sandbox's servers' totalled over all rounds (Linux only), both over whole rounds: within
a run they move less than throughput with the load of other processes, and where throughput differs
while they do not, the difference is mostly waiting (the GIL, the network, the servers), not work.

``--variants`` may also name ``causal_select``: "causal" with each commit's GTID read by
``SELECT @@last_gtid`` instead of from the COMMIT's OK packet (the connections stop tracking it);
and, to tell what of "none"'s cost is where: ``engine_only``, a plain ``Session`` on the primary
Engine of a rwsplit engine without replicas (its pool, timeouts and wrapped dialect methods, no
routing), and ``unrouted``, a ``RoutingSession`` of such an engine whose ``get_bind`` returns the
primary without deciding (the session's state, events and ``execute`` wrapper as well).

    python benchmarks/bench_concurrency.py [--rounds 30] [--seconds 1] [--warm 0.25] [--threads 8]
        [--variants plain,none,...] [--driver pymysql] [--single-rounds 41] [--no-single]

Goals (issue 16): none ≥ 0.97, session ≥ 0.95, causal ≥ 0.93, single-threaded ≤ 1.03.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import rwsplit
from rwsplit import mysqld
from rwsplit.sandbox import Sandbox


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_conc_items"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(40))
    price: Mapped[int] = mapped_column()


READS = 9
STATEMENTS = 1 + READS  # per request; the COMMIT is not counted
ROWS_PER_THREAD = 200

VARIANTS: dict[str, str] = {
    "plain": "plain SQLAlchemy (baseline)",
    "plain_ping": "plain + pool_pre_ping=True",
    "none": "rwsplit, no replicas",
    "session": 'rwsplit, 2 replicas, "session"',
    "causal": 'rwsplit, 2 replicas, "causal"',
    "causal_noping": 'rwsplit, "causal", pool_pre_ping=False',
}
EXTRA: dict[str, str] = {  # not run unless named in --variants
    "causal_select": 'rwsplit, "causal", GTID by SELECT',
    "engine_only": "plain Session, rwsplit's primary Engine",
    "unrouted": "RoutingSession, get_bind undecided",
}
ALL = {**VARIANTS, **EXTRA}
GOALS: dict[str, float] = {"none": 0.97, "session": 0.95, "causal": 0.93}


def _with_driver(url: str, driver: str) -> str:
    return url.replace("mysql+pymysql://", f"mysql+{driver}://", 1)


class Variant:
    """One configuration: a sessionmaker and the engines to dispose."""

    def __init__(self, name: str, sb: Sandbox, driver: str) -> None:
        self.name = name
        primary = _with_driver(sb.primary_url, driver)
        replicas = [_with_driver(u, driver) for u in sb.replica_urls]
        self.routing: rwsplit.RoutingEngine | None = None
        self.plain: sa.Engine | None = None
        if name == "plain":
            self.plain = sa.create_engine(primary)
        elif name == "plain_ping":
            self.plain = sa.create_engine(primary, pool_pre_ping=True)
        elif name == "none":
            self.routing = rwsplit.create_engine(primary)
        elif name == "session":
            self.routing = rwsplit.create_engine(primary, replicas=replicas, read_your_writes="session")
        elif name == "causal":
            self.routing = rwsplit.create_engine(primary, replicas=replicas, read_your_writes="causal")
        elif name == "causal_noping":
            self.routing = rwsplit.create_engine(
                primary, replicas=replicas, read_your_writes="causal", pool_pre_ping=False
            )
        elif name == "causal_select":  # each commit's GTID read with a query, as before the OK packet
            self.routing = rwsplit.create_engine(primary, replicas=replicas, read_your_writes="causal")

            @sa.event.listens_for(self.routing.primary, "connect")
            def _untracked(dbapi_connection: object, _: object) -> None:
                cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
                cursor.execute("SET SESSION session_track_system_variables = ''")
                cursor.close()

        elif name in ("engine_only", "unrouted"):
            self.routing = rwsplit.create_engine(primary)
        else:
            raise ValueError(f"unknown variant {name!r}; known: {', '.join(ALL)}")
        self.make: Callable[[], Session]
        if self.plain is not None:
            self.make = sa.orm.sessionmaker(self.plain)
        elif name == "engine_only":
            self.make = sa.orm.sessionmaker(self.routing.primary)  # type: ignore[union-attr]
        elif name == "unrouted":
            self.make = rwsplit.sessionmaker(self.routing, class_=_Unrouted)  # type: ignore[arg-type]
        else:
            self.make = rwsplit.sessionmaker(self.routing)  # type: ignore[arg-type]

    def dispose(self) -> None:
        if self.plain is not None:
            self.plain.dispose()
        if self.routing is not None:
            self.routing.dispose()


class _Unrouted(rwsplit.RoutingSession):
    """Everything a RoutingSession does but the decision: every statement binds the primary."""

    def get_bind(self, mapper: object = None, **kw: object) -> sa.Engine:
        return self.routing_engine.primary


def _request(make: Callable[[], Session], rng: random.Random, base: int) -> None:
    pks = rng.sample(range(base, base + ROWS_PER_THREAD), READS + 1)
    with make() as s:
        s.execute(sa.update(Item).where(Item.id == pks[0]).values(price=Item.price + 1))
        s.commit()
        for pk in pks[1:]:
            item = s.get(Item, pk)
            assert item is not None and item.id == pk


def _servers_cpu(sandbox_dir: str) -> float | None:
    """CPU seconds the sandbox's servers have used so far: each writes its pid to
    ``<datadir>/mysqld.pid``; Linux's ``/proc`` has its time. None where neither is found."""
    total, found = 0.0, False
    for pid_file in Path(sandbox_dir).glob("*/mysqld.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            if not mysqld.pid_is_server(pid, str(pid_file.parent)):
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):  # gone meanwhile, no /proc, or a pid file being written
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        found = True
    return total if found else None


class _Round(NamedTuple):
    """What one variant did in one round."""

    rate: float  # statements/s in the measured window
    cpu: float  # this process's CPU seconds over the whole round
    servers_cpu: float | None  # the sandbox's servers' CPU seconds over the whole round
    statements: int  # every statement of the round, warm-up and tail included
    where: dict[str, int]


def _run(variant: Variant, threads: int, seconds: float, warm: float = 0.0, sandbox_dir: str = "") -> _Round:
    """``threads`` threads doing requests for ``warm`` + ``seconds``: the statements/s measured after
    the warm-up, and the CPU the whole round took (this process; the sandbox's servers).

    Each thread's rate is the requests it started after the warm-up (at least one) over the time
    from the first of them to the end of the last (the one under way at the deadline included):
    counting against the nominal ``seconds`` would add up to one request per thread to every
    variant alike, pulling a short round's ratios towards 1. Threads whose counted requests are
    done go on with uncounted ones until every thread's are, so that the last counted requests run
    under the same contention as the rest. The warm-up leaves out what only a round's start costs
    (the threads' release from the barrier, pools reopening the connections they closed when the
    last round ended), which a short round would otherwise charge unevenly.
    """
    start = threading.Barrier(threads + 1)
    began = [0.0]
    done = [0] * threads
    counted = [0] * threads
    spans = [0.0] * threads
    unfinished = [threads]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        rng = random.Random(i)
        base = 1 + i * ROWS_PER_THREAD
        start.wait()
        measured = began[0] + warm
        end = measured + seconds
        n = k = 0
        first: float | None = None
        now = time.perf_counter()
        try:
            while now < end or first is None:
                started = now
                _request(variant.make, rng, base)
                now = time.perf_counter()
                n += 1
                if started >= measured:
                    k += 1
                    if first is None:
                        first = started
            spans[i] = now - first
            with lock:
                unfinished[0] -= 1
            while unfinished[0] and not errors:  # keep the others' contention until they are done
                _request(variant.make, rng, base)
                n += 1
        except BaseException as exc:  # noqa: BLE001 (reported after the round)
            errors.append(exc)
            with lock:
                unfinished[0] = 0
        done[i], counted[i] = n, k

    if variant.routing is not None:
        variant.routing.stats(reset=True)
    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    servers = _servers_cpu(sandbox_dir) if sandbox_dir else None  # before the clocks start
    began[0] = time.perf_counter()
    cpu = time.process_time()
    start.wait()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu
    servers_after = _servers_cpu(sandbox_dir) if sandbox_dir else None
    if errors:
        raise RuntimeError(f"{variant.name}: {len(errors)} threads failed") from errors[0]
    where: dict[str, int] = {}
    if variant.routing is not None:
        stats = variant.routing.stats()
        where = {**stats.statements, **{f"kind:{k}": n for k, n in stats.kinds.items() if n}}
    rate = sum(k * STATEMENTS / span for k, span in zip(counted, spans, strict=True))
    servers_cpu = None if servers is None or servers_after is None else servers_after - servers
    return _Round(rate, cpu, servers_cpu, sum(done) * STATEMENTS, where)


# ------------------------------------------------------------------ single-threaded (bench_routing)
def _reads(session: Session, n: int) -> tuple[float, float]:
    """Wall and this thread's CPU seconds of ``n`` point reads in ``session``."""
    started, cpu = time.perf_counter(), time.thread_time()
    with session:
        for pk in range(1, n + 1):
            item = session.get(Item, pk)
            assert item is not None and item.id == pk
    return time.perf_counter() - started, time.thread_time() - cpu


def _single(sb: Sandbox, driver: str, rounds: int, reads: int) -> tuple[float, float, float, float]:
    """Medians of ``reads`` point reads: plain seconds, routing seconds, the per-round wall-time
    ratio and the per-round CPU-time ratio (the client's own work: far less noisy on a shared
    machine, and not diluted by the servers' time)."""
    routing_engine = rwsplit.create_engine(
        _with_driver(sb.primary_url, driver), replicas=[_with_driver(sb.replica_urls[0], driver)]
    )
    pre_ping = bool(getattr(routing_engine.replicas[0].pool, "_pre_ping", True))
    plain_engine = sa.create_engine(
        _with_driver(sb.replica_urls[0], driver), isolation_level="AUTOCOMMIT", pool_pre_ping=pre_ping
    )
    Plain = sa.orm.sessionmaker(plain_engine)
    Routing = rwsplit.sessionmaker(routing_engine)
    try:
        with Routing() as s:
            _reads(s, reads)
            assert s.last_target == "replica1", s.last_target
        _reads(Plain(), reads)
        plain_t, routing_t, ratios, cpu_ratios = [], [], [], []
        for i in range(rounds):
            if i % 2:
                (r, r_cpu), (p, p_cpu) = _reads(Routing(), reads), _reads(Plain(), reads)
            else:
                (p, p_cpu), (r, r_cpu) = _reads(Plain(), reads), _reads(Routing(), reads)
            plain_t.append(p)
            routing_t.append(r)
            ratios.append(r / p)
            cpu_ratios.append(r_cpu / p_cpu)
        return (
            statistics.median(plain_t),
            statistics.median(routing_t),
            statistics.median(ratios),
            statistics.median(cpu_ratios),
        )
    finally:
        routing_engine.dispose()
        plain_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--warm", type=float, default=0.25, help="seconds of each round not measured")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; plain is always run")
    parser.add_argument("--driver", default="pymysql", help="pymysql, mysqldb or mariadbconnector")
    parser.add_argument("--single-rounds", type=int, default=41)
    parser.add_argument("--no-single", action="store_true", help="skip the single-threaded comparison")
    args = parser.parse_args()
    names = ["plain"] + [v for v in args.variants.split(",") if v and v != "plain"]
    for v in names:
        if v not in ALL:
            parser.error(f"unknown variant {v!r}; known: {', '.join(ALL)}")
    if args.rounds < 1 or args.seconds <= 0 or args.threads < 1 or args.warm < 0:
        parser.error("--rounds, --seconds and --threads must be positive, --warm not negative")

    load = os.getloadavg()
    with Sandbox(replicas=2) as sb:
        setup = sa.create_engine(sb.primary_url)
        Base.metadata.create_all(setup)
        with setup.begin() as conn:
            conn.execute(
                sa.insert(Item),
                [
                    {"id": i, "name": f"item {i}", "price": i}
                    for i in range(1, args.threads * ROWS_PER_THREAD + 1)
                ],
            )
        setup.dispose()
        sb.wait_caught_up()

        variants = [Variant(v, sb, args.driver) for v in names]
        rates: dict[str, list[float]] = {v: [] for v in names}
        ratios: dict[str, list[float]] = {v: [] for v in names}
        cpus: dict[str, list[float]] = {v: [] for v in names}
        server_seconds: dict[str, float] = {v: 0.0 for v in names}  # totalled: a round's is a few ticks
        server_statements: dict[str, int] = {v: 0 for v in names}
        where: dict[str, dict[str, int]] = {v: {} for v in names}
        try:
            for variant in variants:  # warm pools, statement caches, the monitors
                _run(variant, args.threads, min(1.0, args.seconds))
            for r in range(args.rounds):
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                got: dict[str, float] = {}
                for variant in order:
                    got_round = _run(variant, args.threads, args.seconds, args.warm, str(sb.dir))
                    got[variant.name] = got_round.rate
                    cpus[variant.name].append(got_round.cpu / max(got_round.statements, 1) * 1e6)
                    if got_round.servers_cpu is not None:
                        server_seconds[variant.name] += got_round.servers_cpu
                        server_statements[variant.name] += got_round.statements
                    for k, n in got_round.where.items():
                        where[variant.name][k] = where[variant.name].get(k, 0) + n
                for v in names:
                    rates[v].append(got[v])
                    ratios[v].append(got[v] / got["plain"])
                print(
                    f"round {r + 1}: "
                    + ", ".join(f"{v} {got[v]:.0f}/s ({got[v] / got['plain']:.3f})" for v in names),
                    flush=True,
                )
        finally:
            for variant in variants:
                variant.dispose()

        single = None if args.no_single else _single(sb, args.driver, args.single_rounds, 200)

    print()
    print(
        f"{args.threads} threads; request = 1 ORM UPDATE + commit + {READS} ORM point reads; "
        f"driver {args.driver}; median of {args.rounds} rounds of {args.seconds:g} s "
        f"(after {args.warm:g} s unmeasured); "
        f"load average at start {load[0]:.2f} on {os.cpu_count()} cores"
    )
    print(
        f"  {'variant':<44} {'stmts/s':>8} {'ratio':>6} {'q1–q3':>11} {'CPU µs/stmt':>11} {'servers':>7}"
        f"  {'goal':<11} all rounds"
    )
    for v in names:
        ratio = statistics.median(ratios[v])
        goal = GOALS.get(v)
        verdict = "" if goal is None else f"≥{goal:.2f} {'PASS' if ratio >= goal else 'MISS'}"
        rounds = " ".join(f"{x:.3f}" for x in ratios[v])
        cpu = statistics.median(cpus[v])
        servers = f"{server_seconds[v] / server_statements[v] * 1e6:.0f}" if server_statements[v] else "n/a"
        quartiles = statistics.quantiles(ratios[v], method="inclusive") if len(ratios[v]) > 1 else None
        q1, _, q3 = quartiles or (ratio, ratio, ratio)
        spread = f"{q1:.3f}–{q3:.3f}"
        print(
            f"  {ALL[v]:<44} {statistics.median(rates[v]):>8.0f} {ratio:>6.3f} {spread:>11} {cpu:>11.0f}"
            f" {servers:>7}  {verdict:<11} {rounds}"
        )
    for v in names:
        if where[v]:
            targets = {k: n for k, n in where[v].items() if not k.startswith("kind:")}
            kinds = {k[5:]: n for k, n in where[v].items() if k.startswith("kind:")}
            total = sum(targets.values()) or 1
            shares = ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in sorted(targets.items()))
            kinds_text = ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in sorted(kinds.items()))
            print(f"  {v}: statements on {shares}; kinds {kinds_text}")
    if single is not None:
        plain_s, routing_s, ratio, cpu_ratio = single
        print(
            f"single-threaded, 200 ORM point reads per session, {args.single_rounds} interleaved rounds: "
            f"plain {plain_s * 1000:.2f} ms, rwsplit {routing_s * 1000:.2f} ms, median ratio {ratio:.3f} "
            f"(goal ≤ 1.03: {'PASS' if ratio <= 1.03 else 'MISS'}); "
            f"client CPU time median ratio {cpu_ratio:.3f}"
        )


if __name__ == "__main__":
    main()
