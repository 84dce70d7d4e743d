"""Routed read latency per driver, next to the plain (unrouted) latency of the same driver.

For each driver rwsplit supports (PyMySQL, mysqlclient, MariaDB Connector/Python: ``Session``;
asyncmy, aiomysql: ``AsyncSession``), each round runs 200 ORM point reads by primary key in a
fresh session through: a plain session bound to the replica's engine (SQLAlchemy's defaults); the
same with the ``connect_args`` rwsplit gives its engines (its default timeouts, under the names
the driver takes); rwsplit's routing session whose engine has that replica as its only replica.
The order reverses every round. Prints the median µs per read of each and the medians of the
per-round ratios rwsplit/plain.

    python benchmarks/bench_drivers.py [--drivers pymysql,asyncmy,...] [--rounds 15] [--reads 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import sqlalchemy as sa
from bench_async import (
    PLAIN,
    PLAIN_ARGS,
    ROUTED,
    AsyncArms,
    Item,
    fill,
    interleave,
    on_driver,
    per_read_us,
    ratio,
    rwsplit_connect_args,
)
from sqlalchemy.orm import Session

import rwsplit
from rwsplit.drivers import DRIVERS
from rwsplit.sandbox import Sandbox


def reads(session: Session, n: int) -> float:
    """Seconds for ``n`` ``session.get`` by primary key in this (fresh) session."""
    started = time.perf_counter()
    with session:
        for pk in range(1, n + 1):
            item = session.get(Item, pk)
            assert item is not None and item.id == pk
    return time.perf_counter() - started


class SyncArms:
    """Plain and routed sessions through one sync driver, each arm a call that times one session's reads."""

    def __init__(self, sb: Sandbox, driver: str, n: int) -> None:
        replica = on_driver(sb.replica_urls[0], driver)
        self.engines = [
            sa.create_engine(replica, isolation_level="AUTOCOMMIT", pool_pre_ping=True),
            sa.create_engine(
                replica,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=True,
                connect_args=rwsplit_connect_args(driver),
            ),
        ]
        self.routing = rwsplit.create_engine(on_driver(sb.primary_url, driver), replicas=[replica])
        makers: dict[str, Callable[[], Session]] = {
            PLAIN: sa.orm.sessionmaker(self.engines[0]),
            PLAIN_ARGS: sa.orm.sessionmaker(self.engines[1]),
            ROUTED: rwsplit.sessionmaker(self.routing),
        }
        self.arms = {name: (lambda make=make: reads(make(), n)) for name, make in makers.items()}
        routed = makers[ROUTED]()
        reads(routed, 1)
        assert routed.last_target == "replica1", routed.last_target  # type: ignore[attr-defined]

    def close(self) -> None:
        self.routing.dispose()
        for engine in self.engines:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="comma-separated (default: all)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = [d for d in drivers if d not in DRIVERS]
    if unknown or not drivers:
        parser.error(f"--drivers: choose from {', '.join(DRIVERS)}")
    if args.rounds < 15:
        parser.error("--rounds must be at least 15")
    rows = []
    with Sandbox(replicas=1) as sb:
        fill(sb, args.reads)
        for driver in drivers:
            arms = (
                AsyncArms(sb, driver, args.reads)
                if DRIVERS[driver].is_async
                else SyncArms(sb, driver, args.reads)
            )
            try:
                times = interleave(arms.arms, args.rounds)
            finally:
                arms.close()
            rows.append(
                [
                    driver,
                    "async" if DRIVERS[driver].is_async else "sync",
                    *(f"{per_read_us(times[arm], args.reads):.0f}" for arm in (PLAIN, PLAIN_ARGS, ROUTED)),
                    f"{ratio(times, ROUTED, PLAIN_ARGS):.3f}",
                    f"{ratio(times, ROUTED, PLAIN):.3f}",
                ]
            )
    print(
        f"{args.reads} ORM point reads per session, {args.rounds} interleaved rounds, one replica; "
        "median µs per read; ratios: medians of the per-round ratios"
    )
    headers = ["driver", "mode", "plain", "plain+args", "rwsplit", "rwsplit/plain+args", "rwsplit/plain"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print("plain+args: the plain session with rwsplit's connect_args (its default timeouts):")
    for driver in drivers:
        print(f"  {driver}: {rwsplit_connect_args(driver)}")


if __name__ == "__main__":
    main()
