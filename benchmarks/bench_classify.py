"""Benchmark ``rwsplit.classify``: per-call cost, cache behaviour and memory bound.

Run ``python benchmarks/bench_classify.py`` (``--quick`` for a smoke run).  Each figure
is the median (and p99) over batches of the mean per-call time inside a batch, measured
with ``time.perf_counter_ns`` and the garbage collector paused.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, "") and str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from rwsplit.classifier import (
    CONSTRUCT_CACHE_SIZE,
    SQL_CACHE_SIZE,
    cache_clear,
    cache_info,
    classify,
)

TARGET_CACHED_US = 2.0
TARGET_FIRST_SEEN_4KB_US = 50.0
TARGET_CONSTRUCT_US = 5.0


class _Base(DeclarativeBase):
    pass


class User(_Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))
    addresses: Mapped[list[Address]] = relationship()


class Address(_Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    city: Mapped[str] = mapped_column(String(50))


def _four_kb_select(marker: int) -> str:
    """An ORM-style ~4 KB SELECT with joins, functions, literals and placeholders."""
    columns = ",\n       ".join(f"orders.col_{i} AS orders_col_{i}" for i in range(60))
    conditions = " \n  AND ".join(
        f"(orders.status_{i} = 'state-{i}' OR orders.amount_{i} > %(amount_{i})s)" for i in range(14)
    )
    return (
        f"SELECT {columns},\n       count(items.id) AS item_count,\n"
        "       coalesce(customers.nickname, customers.name) AS display_name,\n"
        "       json_extract(orders.meta, %(path_1)s) AS meta_1 \n"
        "FROM orders JOIN customers ON customers.id = orders.customer_id \n"
        "LEFT OUTER JOIN items ON items.order_id = orders.id \n"
        f"WHERE orders.id > {marker} AND orders.created_at > DATE_SUB(NOW(), INTERVAL 7 DAY) \n"
        f"  AND {conditions} \n"
        "  AND orders.region IN (__[POSTCOMPILE_region_1]) \n"
        "GROUP BY orders.id ORDER BY orders.created_at DESC \n LIMIT %(param_1)s"
    )


def _batches(run_batch: Callable[[int], None], batches: int, batch_size: int) -> tuple[float, float]:
    """Median and p99 (µs) of per-call means over ``batches`` timed batches."""
    means: list[float] = []
    gc.disable()
    try:
        for b in range(batches):
            start = time.perf_counter_ns()
            run_batch(b)
            means.append((time.perf_counter_ns() - start) / batch_size / 1000)
    finally:
        gc.enable()
    means.sort()
    p99 = means[min(len(means) - 1, round(0.99 * (len(means) - 1)))]
    return statistics.median(means), p99


def _repeat(call: Callable[[], Any], batch_size: int) -> Callable[[int], None]:
    def run(_: int) -> None:
        for _ in range(batch_size):
            call()

    return run


def _over(items: Sequence[Any], call: Callable[[Any], Any], batch_size: int) -> Callable[[int], None]:
    def run(b: int) -> None:
        for item in items[b * batch_size : (b + 1) * batch_size]:
            call(item)

    return run


def _report(label: str, result: tuple[float, float], target: float | None) -> float:
    median, p99 = result
    verdict = ""
    if target is not None:
        verdict = f"  target <= {target:g} us  {'PASS' if median <= target else 'MISS'}"
    print(f"  {label:<52} median {median:8.2f} us   p99 {p99:8.2f} us{verdict}")
    return median


def _rss_kib() -> int:
    """Resident set size of this process in KiB (0 if /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _construct_lines(build: Callable[[int], Any], batches: int, batch_size: int) -> None:
    """Report same-object, fresh-object and first-seen-shape costs for one construct."""
    same = build(0)
    classify(same)
    _report(
        "same object, repeated",
        _batches(_repeat(lambda: classify(same), batch_size), batches, batch_size),
        None,
    )
    fresh = [build(i) for i in range(batches * batch_size)]
    _report(
        "freshly built object each call (build not timed)",
        _batches(_over(fresh, classify, batch_size), batches, batch_size),
        None,
    )
    del fresh
    walk_size = 20
    walked = [build(i) for i in range(batches * walk_size)]

    def first_shape(item: Any) -> None:
        cache_clear()
        classify(item)

    _report(
        "first-seen shape (caches cleared before each call)",
        _batches(_over(walked, first_shape, walk_size), batches, walk_size),
        None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args(argv)
    batches, batch_size = (30, 100) if args.quick else (200, 200)
    unique_total = 20_000 if args.quick else 1_000_000

    print(
        f"rwsplit.classify benchmark ({'quick' if args.quick else 'full'}), Python {sys.version.split()[0]}"
    )
    print(f"SQL cache: {SQL_CACHE_SIZE} entries; construct cache: {CONSTRUCT_CACHE_SIZE}")
    print("\nSQL strings")
    short = "SELECT users.id, users.name \nFROM users \nWHERE users.id = %(pk_1)s"
    big = _four_kb_select(0)
    print(f"  (4 KB statement is {len(big)} characters)")
    results: dict[str, float] = {}

    cache_clear()
    classify(short)
    results["short cached"] = _report(
        "short SELECT, repeated (cached)",
        _batches(_repeat(lambda: classify(short), batch_size), batches, batch_size),
        TARGET_CACHED_US,
    )
    shorts = [
        f"SELECT users.id, users.name FROM users WHERE users.id = {i}" for i in range(batches * batch_size)
    ]
    cache_clear()
    results["short first"] = _report(
        "short SELECT, first seen (unique literal)",
        _batches(_over(shorts, classify, batch_size), batches, batch_size),
        None,
    )

    classify(big)
    results["4kb cached"] = _report(
        "4 KB SELECT, repeated (cached)",
        _batches(_repeat(lambda: classify(big), batch_size), batches, batch_size),
        TARGET_CACHED_US,
    )
    big_batches, big_size = (10, 50) if args.quick else (50, 100)
    bigs = [_four_kb_select(i + 1) for i in range(big_batches * big_size)]
    cache_clear()
    results["4kb first"] = _report(
        "4 KB SELECT, first seen (unique literal)",
        _batches(_over(bigs, classify, big_size), big_batches, big_size),
        TARGET_FIRST_SEEN_4KB_US,
    )
    del bigs

    print("\nSQLAlchemy construct: select(User).where(User.id == x)")
    stmt = select(User).where(User.id == 5)
    classify(stmt)
    results["orm same"] = _report(
        "same object, repeated",
        _batches(_repeat(lambda: classify(stmt), batch_size), batches, batch_size),
        TARGET_CONSTRUCT_US,
    )
    fresh = [select(User).where(User.id == i) for i in range(batches * batch_size)]
    fresh_total = _report(
        "freshly built object each call (build not timed)",
        _batches(_over(fresh, classify, batch_size), batches, batch_size),
        None,
    )
    del fresh
    keyed = [select(User).where(User.id == i) for i in range(batches * batch_size)]
    key_cost = _report(
        "  of which SQLAlchemy's cache key (memoized; execution reuses it)",
        _batches(_over(keyed, lambda s: s._generate_cache_key(), batch_size), batches, batch_size),
        None,
    )
    del keyed
    results["orm fresh"] = fresh_total - key_cost
    verdict = "PASS" if results["orm fresh"] <= TARGET_CONSTRUCT_US else "MISS"
    print(
        f"  {'fresh object, net of the key SQLAlchemy computes anyway':<52} median "
        f"{results['orm fresh']:8.2f} us               target <= {TARGET_CONSTRUCT_US:g} us  {verdict}"
    )
    executed = select(User).where(User.id == 7)
    executed._generate_cache_key()
    classify(executed)
    _report(
        "object whose cache key SQLAlchemy memoized (executed)",
        _batches(_repeat(lambda: classify(executed), batch_size), batches, batch_size),
        TARGET_CONSTRUCT_US,
    )
    build = _report(
        "  reference: building the construct itself",
        _batches(_repeat(lambda: select(User).where(User.id == 5), batch_size), batches, batch_size),
        None,
    )
    dialect = mysql.dialect()
    compile_size = 20
    compile_median = _report(
        "  reference: str(stmt.compile(dialect=mysql.dialect()))",
        _batches(
            _repeat(lambda: str(stmt.compile(dialect=dialect)), compile_size),
            batches,
            compile_size,
        ),
        None,
    )

    print("\nSQLAlchemy construct: join + aggregate")

    def joined(i: int) -> Any:
        return (
            select(User.name, func.count(Address.id))
            .join(Address, Address.user_id == User.id)
            .where(func.lower(User.email).like(f"%@example{i}.com"))
            .group_by(User.name)
        )

    _construct_lines(joined, batches, batch_size)

    print("\nSQLAlchemy construct: relationship join + subquery")

    def nested(i: int) -> Any:
        recent = select(Address.user_id).where(Address.id > i).subquery()
        return select(User).join(User.addresses).where(User.id.in_(select(recent.c.user_id)))

    _construct_lines(nested, batches, batch_size)
    print(
        f"\n  classify(select(User).where(...)) costs "
        f"{100 * fresh_total / compile_median:.1f} % of a MySQL compile for a fresh "
        f"object, {100 * results['orm same'] / compile_median:.1f} % for a repeated one "
        f"(building the statement costs {build:.2f} us)"
    )

    print(f"\nMemory bound: classify {unique_total:,} unique statements")
    cache_clear()
    gc.collect()
    before = _rss_kib()
    start = time.perf_counter()
    for i in range(unique_total):
        classify(f"SELECT a FROM t WHERE id = {i}")
    elapsed = time.perf_counter() - start
    gc.collect()
    after = _rss_kib()
    info = cache_info()
    print(
        f"  VmRSS before {before / 1024:8.1f} MiB, after {after / 1024:8.1f} MiB "
        f"(delta {(after - before) / 1024:+.1f} MiB)"
    )
    print(
        f"  SQL cache size {info.sql.currsize} / {info.sql.maxsize}; "
        f"{elapsed / unique_total * 1e6:.2f} us per statement including f-string"
    )

    misses = [
        name
        for name, target in (
            ("short cached", TARGET_CACHED_US),
            ("4kb cached", TARGET_CACHED_US),
            ("4kb first", TARGET_FIRST_SEEN_4KB_US),
            ("orm same", TARGET_CONSTRUCT_US),
            ("orm fresh", TARGET_CONSTRUCT_US),
        )
        if results[name] > target
    ]
    print("\nall targets met" if not misses else f"\ntargets missed: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
