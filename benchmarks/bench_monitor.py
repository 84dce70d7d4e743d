"""Monitor cost and reaction time, against a real sandbox (1 primary + 2 replicas).

Prints: queries per probe interval per server, CPU used by the monitor threads at the default
interval (target < 1 % of one core), and how long after a stalled replica's lag crosses the bound
the routing decision excludes it (median, p99) and readmits it after it catches up, for rwsplit's GTID
lag source next to ``Seconds_Behind_Master`` (what MaxScale and ProxySQL read).

    python benchmarks/bench_monitor.py [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import rwsplit
from rwsplit.sandbox import Sandbox


def _questions(sb: Sandbox, server: str) -> int:
    with sb.connect(server) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
        return int(cur.fetchone()[1])


def probe_cost(sb: Sandbox, seconds: float) -> None:
    engine = rwsplit.create_engine(sb.primary_url, replicas=sb.replica_urls)
    try:
        time.sleep(1)
        before = {n: _questions(sb, n) for n in sb.server_names}
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        after = {n: _questions(sb, n) for n in sb.server_names}
    finally:
        engine.dispose()
    intervals = (wall1 - wall0) / engine.monitor.interval
    print(f"probe cost at monitor_interval={engine.monitor.interval} s over {wall1 - wall0:.1f} s:")
    for n in sb.server_names:
        # each _questions() call itself counts once on its server
        per = (after[n] - before[n] - 1) / intervals
        print(f"  {n:<9} {per:.2f} queries per interval")
    cpu = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    print(f"  monitor CPU: {cpu:.2f} % of one core (target < 1 %): {'PASS' if cpu < 1 else 'MISS'}")


class _Writer:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with self.sb.connect() as conn, conn.cursor() as cur:
            while not self.stop.is_set():
                cur.execute("INSERT INTO app.bench_ticks (ts) VALUES (NOW(6))")
                self.stop.wait(0.005)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def reaction(sb: Sandbox, lag_source: str, rounds: int, max_lag: float) -> tuple[list[float], list[float]]:
    """Seconds from the true lag passing ``max_lag`` to exclusion, and from catch-up to readmission.

    The replica is stalled with ``FLUSH TABLES WITH READ LOCK``: its SQL thread keeps running
    but cannot commit, so only the lag tells the monitor anything is wrong.
    """
    engine = rwsplit.create_engine(
        sb.primary_url, replicas=sb.replica_urls, max_lag=max_lag, lag_source=lag_source
    )
    exclude, readmit = [], []

    def eligible() -> bool:
        return "replica1" in {r.name for r in engine.monitor.snapshot().eligible(max_lag)}

    try:
        time.sleep(1)
        for _ in range(rounds):
            while not eligible():
                time.sleep(0.005)
            with sb.connect("replica1") as lock, lock.cursor() as cur:
                cur.execute("FLUSH TABLES WITH READ LOCK")
                stalled_at = time.monotonic()
                deadline = stalled_at + 10
                while eligible() and time.monotonic() < deadline:
                    time.sleep(0.002)
                # writes every 5 ms: the true lag passes max_lag max_lag seconds after the stall
                exclude.append(time.monotonic() - (stalled_at + max_lag))
                cur.execute("UNLOCK TABLES")
                released_at = time.monotonic()
            sb.wait_caught_up(replicas=[1])
            caught_up_at = time.monotonic()
            deadline = caught_up_at + 10
            while not eligible() and time.monotonic() < deadline:
                time.sleep(0.002)
            readmit.append(time.monotonic() - max(released_at, caught_up_at))
            time.sleep(0.3)
    finally:
        engine.dispose()
    return exclude, readmit


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=20.0, help="probe cost measuring time")
    parser.add_argument("--max-lag", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="3 rounds, 5 s of probe cost")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 5.0
    with Sandbox(replicas=2) as sb:
        print(f"sandbox: {sb.server_names}")
        probe_cost(sb, args.seconds)
        with sb.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE app.bench_ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, ts DATETIME(6))")
        sb.wait_caught_up()
        writer = _Writer(sb)
        writer.thread.start()
        try:
            print(
                f"\nreaction to a stalled replica (writes every 5 ms, max_lag={args.max_lag} s, "
                f"{args.rounds} rounds):"
            )
            print(
                f"  {'lag source':<15} {'exclude p50':>12} {'exclude p99':>12} {'readmit p50':>12} {'readmit p99':>12}"
            )
            for source in ("gtid", "seconds_behind"):
                exc, adm = reaction(sb, source, args.rounds, args.max_lag)
                print(
                    f"  {source:<15} {statistics.median(exc) * 1000:>10.0f}ms {_pct(exc, 0.99) * 1000:>10.0f}ms"
                    f" {statistics.median(adm) * 1000:>10.0f}ms {_pct(adm, 0.99) * 1000:>10.0f}ms"
                )
        finally:
            writer.stop.set()
            writer.thread.join(5)
        print("\nexclude = time from the true lag passing max_lag until no new read may use the replica")
        print("readmit = time from the replica catching up until reads may use it again")


if __name__ == "__main__":
    main()
