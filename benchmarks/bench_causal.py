"""Causal reads: added read latency right after a write, and the share served by replicas.

Each flow writes a row version in a session, commits, and reads it back at once. Flows alternate
between ``read_your_writes="causal"`` and ``"off"`` (a plain lag-bounded replica read with no
guarantee: the baseline latency, and how often it is stale) and ``"session"`` (the pin: correct,
but the read costs the primary). Prints median and p99 read latency per mode, the causal mode's
added latency over the plain replica read (target ≤ 1 ms median on loopback) and the share of
post-write reads on replicas (target ≥ 90 %).

    python benchmarks/bench_causal.py [--flows 600]
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import rwsplit
from rwsplit.sandbox import Sandbox


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "bench_causal"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=600, help="flows per mode")
    args = parser.parse_args()
    modes = ("causal", "off", "session")
    with Sandbox(replicas=2) as sb:
        setup = sa.create_engine(sb.primary_url)
        Base.metadata.create_all(setup)
        setup.dispose()
        sb.wait_caught_up()
        engine = rwsplit.create_engine(sb.primary_url, replicas=sb.replica_urls, max_lag=5.0)
        Session = rwsplit.sessionmaker(engine)
        latency: dict[str, list[float]] = {m: [] for m in modes}
        on_replica = dict.fromkeys(modes, 0)
        stale = dict.fromkeys(modes, 0)
        try:
            for i in range(1, args.flows * len(modes) + 1):
                mode = modes[i % len(modes)]
                with Session(read_your_writes=mode) as s:
                    s.merge(Row(id=i % 50 + 1, version=i))
                    s.commit()
                    stmt = sa.select(Row.version).where(Row.id == i % 50 + 1)
                    started = time.perf_counter()
                    got = s.execute(stmt).scalar()
                    latency[mode].append(time.perf_counter() - started)
                    on_replica[mode] += s.last_target != "primary"
                    stale[mode] += got != i
        finally:
            engine.dispose()
    print(f"{args.flows} write→commit→read flows per mode, 1 primary + 2 replicas on loopback:")
    print(f"  {'mode':<9} {'read p50':>10} {'read p99':>10} {'on replicas':>12} {'stale reads':>12}")
    for m in modes:
        print(
            f"  {m:<9} {statistics.median(latency[m]) * 1000:>8.3f}ms {_pct(latency[m], 0.99) * 1000:>8.3f}ms"
            f" {100 * on_replica[m] / args.flows:>11.1f}% {stale[m]:>12}"
        )
    added50 = (statistics.median(latency["causal"]) - statistics.median(latency["off"])) * 1000
    added99 = (_pct(latency["causal"], 0.99) - _pct(latency["off"], 0.99)) * 1000
    share = 100 * on_replica["causal"] / args.flows
    print(
        f"causal vs plain replica read: +{added50:.3f} ms median (target ≤ 1 ms): {'PASS' if added50 <= 1 else 'MISS'}, "
        f"+{added99:.3f} ms p99"
    )
    print(
        f"causal post-write reads on replicas: {share:.1f}% (target ≥ 90 %): {'PASS' if share >= 90 else 'MISS'}"
    )


if __name__ == "__main__":
    main()
