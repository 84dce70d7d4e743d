"""Load: 64 threads share one routing engine for 30 s, next to the same load on the primary alone.

Checks what a long busy run must not do: deadlock, error, leak connections (every server's
``Threads_connected`` back to its baseline after ``dispose()``), leave the monitor running, or
grow memory (resident set sampled every 2 s). The same workload with no replicas (everything on
the primary) gives the reference throughput.

    python benchmarks/bench_load.py [--seconds 30] [--threads 64]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import rwsplit
from rwsplit.sandbox import Sandbox
from rwsplit.testing import ConsistencyLoad, create_table


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _connections(sb: Sandbox) -> dict[str, int]:
    counts = {}
    for name in sb.server_names:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            counts[name] = int(cur.fetchone()[1]) - 1  # not counting this connection
    return counts


def _sampled(load: ConsistencyLoad, seconds: float) -> list[float]:
    rss = [_rss_mib()]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        rss.append(_rss_mib())
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    with Sandbox(replicas=2) as sb:
        create_table(sb, "app.load_rows")
        baseline = _connections(sb)
        print(f"{args.threads} threads, {args.seconds:.0f} s each; connections before: {baseline}")

        engine = rwsplit.create_engine(
            sb.primary_url, replicas=sb.replica_urls, pool_size=args.threads, max_overflow=0
        )
        with ConsistencyLoad(engine, "app.load_rows", threads=args.threads, pause=0.001) as load:
            rss = _sampled(load, args.seconds)
            during = _connections(sb)
        engine.dispose()
        time.sleep(0.5)
        after = _connections(sb)
        monitors = [t.name for t in threading.enumerate() if t.name.startswith("rwsplit-monitor")]
        r = load.results
        errors = len(r.read_errors) + len(r.write_errors)
        print(
            f"rwsplit : {(r.reads + r.writes) / args.seconds:7.0f} ops/s ({r.reads} reads, "
            f"{100 * r.replica_reads / max(r.reads, 1):.1f} % on replicas, {r.writes} writes), "
            f"read p50 {statistics.median(r.read_seconds) * 1000:.2f} ms, errors {errors}, "
            f"read-your-writes violations {r.ryw_violations}"
        )
        print(
            f"  connections during {during}, after dispose {after}: "
            f"{'back to baseline' if after == baseline else 'LEAK'}"
        )
        print(f"  monitor threads after dispose: {monitors or 'none'}")
        third = max(1, len(rss) // 3)
        print(
            f"  resident memory MiB: start {rss[0]:.1f}, first third max {max(rss[:third]):.1f}, "
            f"last third max {max(rss[-third:]):.1f}, end {rss[-1]:.1f}"
        )

        reference = rwsplit.create_engine(sb.primary_url, pool_size=args.threads, max_overflow=0)
        with ConsistencyLoad(reference, "app.load_rows", threads=args.threads, pause=0.001) as ref:
            time.sleep(args.seconds)
        reference.dispose()
        p = ref.results
        print(
            f"primary only, no replicas (same workload): {(p.reads + p.writes) / args.seconds:7.0f} ops/s, "
            f"read p50 {statistics.median(p.read_seconds) * 1000:.2f} ms, "
            f"errors {len(p.read_errors) + len(p.write_errors)}"
        )


if __name__ == "__main__":
    main()
