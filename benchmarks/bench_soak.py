"""Soak under faults: 32 threads for 60 s while replicas and the primary are killed, paused,
broken and frozen on a schedule, against a real sandbox (1 primary + 2 replicas).

Prints, per read-your-writes mode: operations, read and write errors by kind, read-your-writes
violations, stale reads (a row acknowledged longer ago than max_lag + 1 s not visible), the share
of reads on replicas, and whether every acknowledged write reached the primary and every replica
(count and checksum after catch-up).

    python benchmarks/bench_soak.py [--seconds 60] [--threads 32] [--modes session,causal]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time

import rwsplit
from rwsplit.sandbox import Sandbox
from rwsplit.testing import ConsistencyLoad, create_table, verify_replicated

# (fraction of the run, action, server): every fault is undone later in the schedule.
SCHEDULE = [
    (0.10, "kill", 1),
    (0.20, "start", 1),
    (0.25, "pause_replica", 2),
    (0.35, "resume_replica", 2),
    (0.40, "break_replica", 1),
    (0.50, "repair_replica", 1),
    (0.55, "kill", "primary"),
    (0.65, "start", "primary"),
    (0.70, "freeze", 2),
    (0.80, "thaw", 2),
]


def _run_schedule(sb: Sandbox, seconds: float, log: list[str], stop: threading.Event) -> None:
    started = time.monotonic()
    for fraction, action, server in SCHEDULE:
        if stop.wait(max(0.0, started + fraction * seconds - time.monotonic())):
            return
        getattr(sb, action)(server)
        log.append(f"{time.monotonic() - started:5.1f}s {action} {server}")


def soak(sb: Sandbox, mode: str, seconds: float, threads: int) -> None:
    table = f"app.soak_{mode}"
    create_table(sb, table)
    engine = rwsplit.create_engine(
        sb.primary_url,
        replicas=sb.replica_urls,
        read_your_writes=mode,
        pool_size=threads,
        max_overflow=threads,
        connect_args={"read_timeout": 5, "write_timeout": 5},
    )
    log: list[str] = []
    stop = threading.Event()
    faults = threading.Thread(target=_run_schedule, args=(sb, seconds, log, stop), daemon=True)
    try:
        with ConsistencyLoad(engine, table, mode=mode, threads=threads, pause=0.005) as load:
            faults.start()
            time.sleep(seconds)
        faults.join()
    finally:
        stop.set()
        engine.dispose()
    r = load.results
    try:
        verify_replicated(sb, table, r, timeout=60)
        verified = (
            f"the latest {len(r.acked)} of {r.writes} acknowledged writes found on the primary; "
            "primary and both replicas identical (row count and checksum)"
        )
    except AssertionError as exc:
        verified = f"FAILED: {exc}"
    print(f"\nmode={mode}: {threads} threads, {seconds:.0f} s; faults: " + "; ".join(log))
    print(
        f"  operations          : {r.reads} reads ({100 * r.replica_reads / max(r.reads, 1):.1f} % on replicas), "
        f"{r.writes} acknowledged writes, {(r.reads + r.writes) / seconds:.0f} ops/s"
    )
    if r.read_seconds:
        print(f"  read latency        : p50 {statistics.median(r.read_seconds) * 1000:.2f} ms")
    print(f"  read errors         : {len(r.read_errors)} {r.error_kinds(r.read_errors)}")
    print(
        f"  write errors        : {len(r.write_errors)} {r.error_kinds(r.write_errors)} (the primary was down ~{0.1 * seconds:.0f} s)"
    )
    print(f"  read-your-writes    : {r.ryw_violations} violations")
    print(f"  stale reads         : {r.stale_reads} (row acknowledged > max_lag + 1 s earlier and not seen)")
    print(f"  durability          : {verified}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--modes", default="session,causal")
    args = parser.parse_args()
    logging.getLogger("rwsplit").setLevel(logging.ERROR)  # replicas marked down are expected here
    with Sandbox(replicas=2) as sb:
        for mode in args.modes.split(","):
            soak(sb, mode.strip(), args.seconds, args.threads)


if __name__ == "__main__":
    main()
