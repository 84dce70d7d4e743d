"""Routing overhead: plain SQLAlchemy Session vs rwsplit RoutingSession, same replica, same run.

Each round runs 200 ORM point reads by primary key (``session.get``) in a fresh session, once
through a plain ``sqlalchemy.orm.Session`` bound to the replica's engine and once through a
``RoutingSession`` whose engine has that replica as its only replica; the order alternates per
round. Prints the median time of each and the median of the per-round ratios (target ≤ 1.03),
then the per-statement cost of the routing decision alone, without a database round trip: in a
tight loop, and right after a plain point read (the CPU caches as a read leaves them: what the
decision costs inside a real read, several times the tight loop's figure).

    python benchmarks/bench_routing.py [--rounds 21] [--reads 200] [--decision-log]

``--decision-log`` turns the ``rwsplit.route`` decision log on (DEBUG, formatted to /dev/null), to
show what it costs when enabled; by default it is off, as in production.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import rwsplit
from rwsplit.sandbox import Sandbox


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    price: Mapped[int] = mapped_column()


def _reads(session: Session, n: int) -> float:
    started = time.perf_counter()
    with session:
        for pk in range(1, n + 1):
            item = session.get(Item, pk)
            assert item is not None and item.id == pk
    return time.perf_counter() - started


def _per_call_us(fn: Callable[[], object], repeat: int = 20000) -> float:
    batches = []
    for _ in range(7):
        started = time.perf_counter_ns()
        for _ in range(repeat // 7):
            fn()
        batches.append((time.perf_counter_ns() - started) / (repeat // 7) / 1000)
    return statistics.median(batches)


def _after_read_us(fn: Callable[[], object], plain: Session, repeat: int = 1500) -> float:
    """Median µs of ``fn`` called right after a plain point read, less a no-op timed the same way:
    the caches as a real read leaves them, not as a tight loop keeps them."""

    def noop() -> None:
        return None

    timings: dict[Callable[[], object], list[int]] = {fn: [], noop: []}
    for i in range(repeat):
        for call in (fn, noop) if i % 2 else (noop, fn):
            plain.expunge(plain.get(Item, 1 + i % 100))
            started = time.perf_counter_ns()
            call()
            timings[call].append(time.perf_counter_ns() - started)
    return (statistics.median(timings[fn]) - statistics.median(timings[noop])) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--decision-log", action="store_true", help="DEBUG on for rwsplit.route")
    args = parser.parse_args()
    if args.decision_log:
        sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
        sink.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        route_log = logging.getLogger("rwsplit.route")
        route_log.addHandler(sink)
        route_log.setLevel(logging.DEBUG)
        route_log.propagate = False
    if args.rounds < 15:
        parser.error("--rounds must be at least 15")
    with Sandbox(replicas=1) as sb:
        setup = sa.create_engine(sb.primary_url)
        Base.metadata.create_all(setup)
        with setup.begin() as conn:
            conn.execute(
                sa.insert(Item),
                [{"id": i, "name": f"item {i}", "price": i * 10} for i in range(1, args.reads + 1)],
            )
        setup.dispose()
        sb.wait_caught_up()

        plain_engine = sa.create_engine(sb.replica_urls[0], isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        routing_engine = rwsplit.create_engine(sb.primary_url, replicas=sb.replica_urls)
        Plain = sa.orm.sessionmaker(plain_engine)
        Routing = rwsplit.sessionmaker(routing_engine)
        try:
            with Routing() as s:  # warm both pools and statement caches
                _reads(s, args.reads)
                assert s.last_target == "replica1", s.last_target
            _reads(Plain(), args.reads)
            plain_t, routing_t, ratios = [], [], []
            for i in range(args.rounds):
                if i % 2:
                    r, p = _reads(Routing(), args.reads), _reads(Plain(), args.reads)
                else:
                    p, r = _reads(Plain(), args.reads), _reads(Routing(), args.reads)
                plain_t.append(p)
                routing_t.append(r)
                ratios.append(r / p)
            ratio = statistics.median(ratios)
            log_state = "on (DEBUG)" if args.decision_log else "off"
            print(
                f"{args.reads} ORM point reads per session, {args.rounds} interleaved rounds, one replica, "
                f"decision log {log_state}:"
            )
            print(f"  plain sqlalchemy Session : median {statistics.median(plain_t) * 1000:8.2f} ms")
            print(f"  rwsplit RoutingSession   : median {statistics.median(routing_t) * 1000:8.2f} ms")
            print(
                f"  median ratio routing/plain: {ratio:.3f} (target ≤ 1.03): {'PASS' if ratio <= 1.03 else 'MISS'}"
            )
            print(
                f"  per read: plain {statistics.median(plain_t) / args.reads * 1e6:.0f} µs, "
                f"routing {statistics.median(routing_t) / args.reads * 1e6:.0f} µs"
            )

            stmt = sa.select(Item).where(Item.id == 5)
            state = routing_engine._new_state()
            decide = routing_engine.router.decide
            print("routing decision alone (no database round trip), median per call:")
            print(
                f"  router.decide(select(Item).where(Item.id == 5)) : {_per_call_us(lambda: decide(stmt, state)):.2f} µs"
            )
            text = sa.text("SELECT name FROM bench_items WHERE id = :id")
            print(
                f"  router.decide(text(...))                         : {_per_call_us(lambda: decide(text, state)):.2f} µs"
            )
            with Routing() as s:
                print(
                    f"  RoutingSession.get_bind(clause=...)              : "
                    f"{_per_call_us(lambda: s.get_bind(clause=stmt)):.2f} µs"
                )
            # What a real read leaves of the CPU caches makes the same call several times dearer.
            captured: list[object] = []

            def capture(orm: sa.orm.ORMExecuteState) -> None:
                captured.append(orm.statement)

            with Routing() as s, Plain() as plain:
                sa.event.listen(s, "do_orm_execute", capture)
                s.get(Item, 1)  # the statement session.get builds, as get_bind sees it
                sa.event.remove(s, "do_orm_execute", capture)
                get_clause = captured[-1]
                cold = _after_read_us(lambda: s.get_bind(clause=get_clause), plain)
            print(
                f"  RoutingSession.get_bind, right after a plain point read: {cold:.2f} µs "
                f"(the in-situ cost: {cold / (statistics.median(plain_t) / args.reads * 1e6) * 100:.1f} % of a read)"
            )
        finally:
            routing_engine.dispose()
            plain_engine.dispose()


if __name__ == "__main__":
    main()
