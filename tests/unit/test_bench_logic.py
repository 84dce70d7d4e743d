"""The lag benchmark without servers: configuration and --driver checks, staleness, exit code, Ctrl-C as
workers start (threads or asyncio tasks), reads by reason and their table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import cli

from rwsplit.bench import (
    DRIVERS,
    REASONS,
    BenchConfig,
    Delay,
    Pause,
    StalenessChecker,
    causal_waits,
    exit_code,
    parse_delay,
    parse_pause,
    parse_strategies,
    reads_by_reason,
    reason_table,
)
from rwsplit.bench.run import _Run, _workload_urls
from rwsplit.cli import _format_table
from rwsplit.observe import Observer, Stats
from rwsplit.router import Decision


def _result(**violations: int) -> dict[str, Any]:
    return {"strategies": {name: {"ryw_violations": n} for name, n in violations.items()}}


def test_exit_code_gates_on_rwsplit_strategies_only() -> None:
    assert exit_code(_result(primary=0, naive=57, session=0, causal=0)) == 0
    assert exit_code(_result(naive=3, session=1, causal=0)) == 1
    assert exit_code(_result(causal=2)) == 1
    assert exit_code(_result(naive=9)) == 0


def test_staleness_uses_when_commit_returned() -> None:
    checker = StalenessChecker(max_lag=1.0)
    checker.committed(7, 0, 0.0)
    checker.committed(7, 5, 10.0)  # COMMIT of version 5 returned at t=10
    checker.committed(7, 9, 12.0)
    assert checker.staleness(7, 0, 10.9) is None  # version 5 may be < 1 s old
    assert checker.staleness(7, 0, 11.5) == pytest.approx(1.5)
    assert checker.staleness(7, 5, 12.9) is None
    assert checker.staleness(7, 5, 13.5) == pytest.approx(1.5)
    assert checker.staleness(7, 9, 99.0) is None
    assert checker.staleness(7, None, 1.5) == pytest.approx(1.5)
    assert checker.staleness(8, 0, 99.0) is None


def test_a_later_version_bounds_the_commit_of_an_earlier_one() -> None:
    checker = StalenessChecker(max_lag=0.5)
    checker.committed(1, 3, 9.0)  # its thread was slow to record the time
    checker.committed(1, 4, 5.0)  # version 4 committed after 3, so 3 was in by t=5
    assert checker.staleness(1, 2, 5.6) == pytest.approx(0.6)
    assert checker.staleness(1, 3, 5.6) == pytest.approx(0.6)


def test_config_is_validated_at_construction() -> None:
    assert parse_delay("2=3") == Delay(2, 3)
    assert parse_pause("1@2.5+4") == Pause(1, 2.5, 4.0)
    assert parse_strategies(" naive , causal ") == ("naive", "causal")
    config = BenchConfig(duration=8, strategies=("naive", "causal"))
    assert config.seconds_per_strategy == 4
    assert config.injected_delays == (Delay(1, 1, default=True),)
    assert BenchConfig(default_lag=False).injected_delays == ()
    assert BenchConfig(pauses=(Pause(2, 1, 1),)).injected_delays == ()
    for kwargs, message in [
        ({"threads": True}, "--threads"),
        ({"write_ratio": -0.1}, "--write-ratio"),
        ({"duration": float("nan")}, "--duration"),
        ({"max_lag": -1}, "--max-lag"),
        ({"strategies": ()}, "no strategy"),
        ({"strategies": ("naive", "naive")}, "twice"),
        ({"pauses": (Pause(1, 30, 1),)}, "starts after"),
        ({"pauses": (Pause(1, 1, 5), Pause(1, 3, 1))}, "overlap"),
        ({"delays": (Delay(1, 1), Delay(1, 2))}, "one delay per replica"),
        ({"primary": "mysql+pymysql://a:b@h/db"}, "at least one --replica"),
        ({"primary": "mysql+pymysql://a:b@h/db", "replicas": ("mysql+pymysql://a:b@h/db",)}, "same server"),
        ({"primary": "mysql+pymysql://a:b@h", "replicas": ("mysql+pymysql://a:b@r/db",)}, "no database"),
        ({"json_path": Path("/nonexistent/dir/x.json")}, "does not exist"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            BenchConfig(**kwargs)
    assert "b@" not in repr(
        BenchConfig(primary="mysql+pymysql://a:b@h/db", replicas=("mysql+pymysql://a:b@r/db",))
    )


def test_ctrl_c_while_workers_start_is_a_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C inside Thread.start() (the phase's first moments) used to become RuntimeError: exit 1."""
    config = BenchConfig(threads=3, duration=1, strategies=("primary",))
    run = _Run(config, "mysql+pymysql://u@h/db", ["mysql+pymysql://u@h2/db"], None, lambda _: None, None)  # type: ignore[arg-type]
    stop = threading.Event()
    workload = SimpleNamespace(stop=stop, run=lambda *_: stop.wait(5))
    real_start = threading.Thread.start
    calls = []

    def start(thread: threading.Thread) -> None:
        calls.append(thread)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        run._phase(0, "primary", lambda: None, workload)  # type: ignore[arg-type]
    assert stop.is_set(), "late-starting workers must find the stop flag set"


def _idle_workload() -> SimpleNamespace:
    """A workload whose workers (threads or tasks) only wait for the stop flag."""
    stop = threading.Event()

    async def run_async(*_: object) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.02)

    return SimpleNamespace(stop=stop, run=lambda *_: stop.wait(30), run_async=run_async)


@pytest.mark.parametrize("driver", ["pymysql", "asyncmy"])
def test_an_interrupt_flag_ends_the_phase_even_if_the_keyboard_interrupt_was_swallowed(driver: str) -> None:
    """Ctrl-C sets the flag as well; a KeyboardInterrupt lost in a finalizer must not let the bench run on
    (worker threads, or asyncio tasks with an async driver)."""
    config = BenchConfig(threads=2, duration=60, strategies=("primary",), driver=driver)
    interrupted = threading.Event()
    run = _Run(
        config, "mysql+pymysql://u@h/db", ["mysql+pymysql://u@h2/db"], None, lambda _: None, None, interrupted
    )  # type: ignore[arg-type]
    assert run.workers.noun == ("tasks" if driver == "asyncmy" else "threads")
    workload = _idle_workload()
    threading.Timer(0.3, interrupted.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run._phase(0, "primary", lambda: None, workload)  # type: ignore[arg-type]
    finally:
        run.workers.close()
    assert time.monotonic() - started < 5
    assert workload.stop.is_set()


def test_a_task_that_crashes_fails_the_phase() -> None:
    """Failed operations are counted; anything else a worker task raises is a bug and ends the run."""
    config = BenchConfig(threads=3, duration=60, strategies=("primary",), driver="aiomysql")
    run = _Run(config, "mysql+pymysql://u@h/db", ["mysql+pymysql://u@h2/db"], None, lambda _: None, None)  # type: ignore[arg-type]
    workload = _idle_workload()

    async def crash(*_: object) -> None:
        raise RuntimeError("bug in a worker")

    workload.run_async = crash
    try:
        with pytest.raises(RuntimeError, match="bug in a worker"):
            run._phase(0, "primary", lambda: None, workload)  # type: ignore[arg-type]
    finally:
        run.workers.close()
    assert run.workers.loop.is_closed()


def test_driver_defaults_to_the_urls_own() -> None:
    primary, replica = "mysql+mysqldb://a:pw1@h/db", "mysql+mysqldb://a:pw1@r/db"
    assert BenchConfig().driver_name == "pymysql"  # a sandbox
    config = BenchConfig(primary=primary, replicas=(replica,))
    assert (config.driver_name, config.is_async, config.describe()["driver"]) == ("mysqldb", False, "mysqldb")
    assert _workload_urls(config, primary, [replica]) == (sa.make_url(primary), [sa.make_url(replica)])
    plain = BenchConfig(primary="mysql://a:pw1@h/db", replicas=("mysql://a:pw1@r/db",))
    assert plain.driver_name == "mysqldb"  # SQLAlchemy's default for mysql://
    assert (
        BenchConfig(driver="aiomysql").is_async
        and BenchConfig(driver="asyncmy").describe()["driver"] == "asyncmy"
    )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("backend", ["mysql", "mariadb"])
def test_driver_is_swapped_into_every_url(driver: str, backend: str) -> None:
    primary, replica = f"{backend}+pymysql://a:pw1@h:3307/db?charset=utf8mb4", f"{backend}://a:pw1@r/db"
    config = BenchConfig(primary=primary, replicas=(replica,), driver=driver)
    assert config.driver_name == driver and config.describe()["driver"] == driver
    assert config.is_async == (driver in ("asyncmy", "aiomysql"))
    urls = _workload_urls(config, primary, [replica])
    assert [u.drivername for u in (urls[0], *urls[1])] == [f"{backend}+{driver}"] * 2
    assert urls[0].get_dialect().driver == driver  # SQLAlchemy has this dialect
    assert (urls[0].host, urls[0].port, urls[0].password, urls[0].query) == (
        "h",
        3307,
        "pw1",
        {"charset": "utf8mb4"},
    )
    assert "pw1" not in json.dumps(config.describe())


def test_bad_drivers_are_named() -> None:
    for kwargs, message in [
        (
            {"driver": "psycopg"},
            "--driver 'psycopg' is not one of pymysql, mysqldb, mariadbconnector, asyncmy",
        ),
        ({"driver": "PyMySQL"}, "is not one of"),
        (
            {"primary": "mysql+pymysql://a:pw1@h/db", "replicas": ("mysql+asyncmy://a:pw1@r/db",)},
            "different drivers (asyncmy, pymysql); --driver NAME",
        ),
        (
            {"primary": "mysql+cymysql://a:pw1@h/db", "replicas": ("mysql+cymysql://a:pw1@r/db",)},
            "the server URLs use the driver 'cymysql'",
        ),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)) as caught:
            BenchConfig(**kwargs)
        assert "pw1" not in str(caught.value)
    mixed = BenchConfig(
        primary="mysql+pymysql://a:pw1@h/db", replicas=("mysql+asyncmy://a:pw1@r/db",), driver="mysqldb"
    )
    assert mixed.driver_name == "mysqldb"


def test_cli_names_the_accepted_drivers() -> None:
    proc = cli("bench", "--driver", "oracle")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rwsplit: error: Invalid value for '--driver': 'oracle'")
    for name in DRIVERS:
        assert repr(name) in lines[0]
    assert "--driver [pymysql|mysqldb|mariadbconnector|asyncmy|aiomysql]" in cli("bench", "--help").stdout


def test_the_cli_turns_a_swallowed_ctrl_c_into_keyboard_interrupt() -> None:
    from rwsplit.cli import _interruptible

    def swallowing(interrupted: threading.Event) -> str:
        with contextlib.suppress(KeyboardInterrupt):  # what "Exception ignored in __del__" amounts to
            signal.raise_signal(signal.SIGINT)
        return "finished"

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with pytest.raises(KeyboardInterrupt):
        _interruptible(swallowing)
    assert _interruptible(lambda interrupted: "finished") == "finished"
    assert signal.getsignal(signal.SIGINT) is before


def _routed(kinds: dict[str, int], waits: tuple[tuple[float, bool], ...] = ()) -> Stats:
    """An Observer's stats after routing ``n`` decisions of each kind and recording ``waits``."""
    observer = Observer(max_lag=1.0)
    for kind, n in kinds.items():
        decision = Decision("replica1" if kind in ("read", "causal") else "primary", kind, kind=kind)
        for _ in range(n):
            observer.routed(decision, None)
    for seconds, reached in waits:
        observer.waited("replica1", seconds, reached)
    return observer.stats()


def test_reads_by_reason_come_from_the_decision_kinds() -> None:
    stats = _routed({"read": 5, "causal": 4, "pinned": 2, "fallback": 1, "retry": 1, "write": 3, "lock": 1})
    reasons = reads_by_reason("causal", 999, stats)  # the engine's counts, not the bench's reads
    assert list(reasons) == list(REASONS)
    assert reasons == {
        "replica": 5,
        "causal": 4,
        "pinned": 2,
        "hint": 0,
        "fallback": 1,
        "retry": 1,
        "primary_strategy": 0,
    }
    assert sum(reasons.values()) == stats.reads == 13
    assert reasons["replica"] + reasons["causal"] == stats.replica_reads
    later = reads_by_reason("session", 0, _routed({"read": 2, "shadow": 3, "session": 1}))
    assert later["shadow"] == 3 and sum(later.values()) == 5  # a kind added later still adds up


def test_without_an_engine_the_strategy_says_where_reads_went() -> None:
    assert reads_by_reason("primary", 7, None) == {**dict.fromkeys(REASONS, 0), "primary_strategy": 7}
    assert reads_by_reason("naive", 7, None) == {**dict.fromkeys(REASONS, 0), "replica": 7}
    assert causal_waits(None) == {"count": 0, "timeouts": 0, "p50_ms": None, "p99_ms": None}


def test_causal_waits_in_milliseconds() -> None:
    waits = causal_waits(
        _routed({"causal": 2, "fallback": 1}, ((0.0021234, True), (0.004, True), (0.5, False)))
    )
    assert waits == {"count": 3, "timeouts": 1, "p50_ms": 4.0, "p99_ms": 500.0}
    assert causal_waits(_routed({"read": 1})) == {"count": 0, "timeouts": 0, "p50_ms": None, "p99_ms": None}


def _strategy(reasons: dict[str, int], waits: tuple[tuple[float, bool], ...] = ()) -> dict[str, Any]:
    stats = _routed(reasons, waits)
    return {"reads_by_reason": reads_by_reason("x", 0, stats), "causal_waits": causal_waits(stats)}


def test_reason_table_has_a_column_per_reason_present() -> None:
    result = {
        "strategies": {
            "primary": {
                "reads_by_reason": reads_by_reason("primary", 40, None),
                "causal_waits": causal_waits(None),
            },
            "session": _strategy({"read": 30, "pinned": 4, "fallback": 6, "write": 4}),
            "causal": _strategy(
                {"read": 25, "causal": 9, "fallback": 1}, ((0.002, True),) * 9 + ((1.0, False),)
            ),
        }
    }
    headers, rows = reason_table(result)
    assert headers == [
        "strategy",
        "replica",
        "causal",
        "pinned",
        "fallback",
        "primary_strategy",
        "waits",
        "wait_timeouts",
        "wait_p50_ms",
        "wait_p99_ms",
    ]
    lines = _format_table(headers, rows).splitlines()
    assert [line.split() for line in lines[2:]] == [
        ["primary", "0", "0", "0", "0", "40", "0", "0", "-", "-"],
        ["session", "30", "0", "4", "6", "0", "0", "0", "-", "-"],
        ["causal", "25", "9", "0", "1", "0", "10", "1", "2.0", "1000.0"],
    ]
    starts = [lines[0].index(h) for h in headers]  # every cell under its header
    assert all(line[i - 1 : i] in ("", " ") and line[i] != " " for line in lines[2:] for i in starts)
    only_primary = {"strategies": {"primary": result["strategies"]["primary"]}}
    assert reason_table(only_primary)[0][:2] == ["strategy", "primary_strategy"]
