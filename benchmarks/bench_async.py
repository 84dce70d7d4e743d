"""Async routing overhead: plain SQLAlchemy AsyncSession vs rwsplit AsyncRoutingSession, same replica.

Each round runs 200 ORM point reads by primary key (``await session.get``) in a fresh session
through each of: a plain ``AsyncSession`` bound to the replica's ``AsyncEngine`` with
SQLAlchemy's defaults; the same with the ``connect_args`` rwsplit gives its engines (its
default timeouts, under the names this driver takes); an ``AsyncRoutingSession`` whose engine
has that replica as its only replica. The order reverses every round. Prints the median time of
each and the medians of the per-round ratios; the routing overhead (target ≤ 1.05) is rwsplit
against the plain session with the same ``connect_args``.

    python benchmarks/bench_async.py [--driver asyncmy|aiomysql] [--rounds 21] [--reads 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import rwsplit
from rwsplit.drivers import DRIVERS, bounded_connect_args
from rwsplit.sandbox import Sandbox

ASYNC_DRIVERS = tuple(name for name, d in DRIVERS.items() if d.is_async)
PLAIN, PLAIN_ARGS, ROUTED = "plain", "plain, rwsplit's connect_args", "rwsplit"


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    price: Mapped[int] = mapped_column()


def fill(sb: Sandbox, rows: int) -> None:
    """``rows`` items on the primary, replicated."""
    setup = sa.create_engine(sb.primary_url)
    Base.metadata.create_all(setup)
    with setup.begin() as conn:
        conn.execute(
            sa.insert(Item), [{"id": i, "name": f"item {i}", "price": i * 10} for i in range(1, rows + 1)]
        )
    setup.dispose()
    sb.wait_caught_up()


def on_driver(url: str, driver: str) -> sa.URL:
    """A sandbox URL (PyMySQL) through ``driver``."""
    return sa.make_url(url).set(drivername=f"mysql+{driver}")


def rwsplit_connect_args(driver: str) -> dict[str, object]:
    """The ``connect_args`` rwsplit gives every engine it builds for ``driver`` (its timeouts)."""
    return bounded_connect_args(DRIVERS[driver], {})


async def reads_async(session: AsyncSession, n: int) -> float:
    """Seconds for ``n`` ``session.get`` by primary key in this (fresh) session."""
    started = time.perf_counter()
    async with session:
        for pk in range(1, n + 1):
            item = await session.get(Item, pk)
            assert item is not None and item.id == pk
    return time.perf_counter() - started


class AsyncArms:
    """Plain and routed sessions through one async driver, on one event loop (its connections'),
    each arm a call that times one session's reads."""

    def __init__(self, sb: Sandbox, driver: str, reads: int) -> None:
        self.loop = asyncio.new_event_loop()
        replica = on_driver(sb.replica_urls[0], driver)
        self.engines = [
            create_async_engine(replica, isolation_level="AUTOCOMMIT", pool_pre_ping=True),
            create_async_engine(
                replica,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=True,
                connect_args=rwsplit_connect_args(driver),
            ),
        ]
        self.routing = rwsplit.create_async_engine(on_driver(sb.primary_url, driver), replicas=[replica])
        makers: dict[str, Callable[[], AsyncSession]] = {
            PLAIN: async_sessionmaker(self.engines[0]),
            PLAIN_ARGS: async_sessionmaker(self.engines[1]),
            ROUTED: rwsplit.async_sessionmaker(self.routing),
        }
        self.arms = {
            name: (lambda make=make: self.loop.run_until_complete(reads_async(make(), reads)))
            for name, make in makers.items()
        }
        routed = makers[ROUTED]()
        self.loop.run_until_complete(reads_async(routed, 1))
        assert routed.last_target == "replica1", routed.last_target  # type: ignore[attr-defined]

    def close(self) -> None:
        self.loop.run_until_complete(self.routing.dispose())
        for engine in self.engines:
            self.loop.run_until_complete(engine.dispose())
        self.loop.close()


def interleave(arms: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each arm once per round (after a warm-up round), in reversed order every other round."""
    order = list(arms)
    for name in order:  # warm pools and statement caches
        arms[name]()
    times: dict[str, list[float]] = {name: [] for name in order}
    for i in range(rounds):
        for name in order if i % 2 == 0 else order[::-1]:
            times[name].append(arms[name]())
    return times


def ratio(times: dict[str, list[float]], arm: str, base: str) -> float:
    """The median of the per-round ratios ``arm / base``."""
    return statistics.median(a / b for a, b in zip(times[arm], times[base], strict=True))


def per_read_us(times: list[float], reads: int) -> float:
    return statistics.median(times) / reads * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--driver", choices=ASYNC_DRIVERS, default="asyncmy")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    if args.rounds < 15:
        parser.error("--rounds must be at least 15")
    with Sandbox(replicas=1) as sb:
        fill(sb, args.reads)
        arms = AsyncArms(sb, args.driver, args.reads)
        try:
            times = interleave(arms.arms, args.rounds)
        finally:
            arms.close()
    print(
        f"{args.reads} ORM point reads per session, {args.rounds} interleaved rounds, one replica, "
        f"{args.driver} (rwsplit's connect_args: {rwsplit_connect_args(args.driver)}):"
    )
    for name, label in (
        (PLAIN, "plain AsyncSession             "),
        (PLAIN_ARGS, "plain AsyncSession, same args  "),
        (ROUTED, "rwsplit AsyncRoutingSession    "),
    ):
        print(
            f"  {label}: median {statistics.median(times[name]) * 1000:8.2f} ms, "
            f"{per_read_us(times[name], args.reads):5.0f} µs per read"
        )
    overhead = ratio(times, ROUTED, PLAIN_ARGS)
    print(
        f"  median ratio rwsplit/plain, same connect_args: {overhead:.3f} (target ≤ 1.05): "
        f"{'PASS' if overhead <= 1.05 else 'MISS'}"
    )
    print(f"  median ratio rwsplit/plain, SQLAlchemy defaults: {ratio(times, ROUTED, PLAIN):.3f}")
    print(f"  median ratio of the connect_args alone (plain/plain): {ratio(times, PLAIN_ARGS, PLAIN):.3f}")


if __name__ == "__main__":
    main()
