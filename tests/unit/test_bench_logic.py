"""The lag benchmark without servers: configuration checks, staleness, exit code, Ctrl-C as workers start."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rwsplit.bench import (
    BenchConfig,
    Delay,
    Pause,
    StalenessChecker,
    exit_code,
    parse_delay,
    parse_pause,
    parse_strategies,
)
from rwsplit.bench.run import _Run


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


def test_an_interrupt_flag_ends_the_phase_even_if_the_keyboard_interrupt_was_swallowed() -> None:
    """Ctrl-C sets the flag as well; a KeyboardInterrupt lost in a finalizer must not let the bench run on."""
    config = BenchConfig(threads=2, duration=60, strategies=("primary",))
    interrupted = threading.Event()
    run = _Run(
        config, "mysql+pymysql://u@h/db", ["mysql+pymysql://u@h2/db"], None, lambda _: None, None, interrupted
    )  # type: ignore[arg-type]
    stop = threading.Event()
    workload = SimpleNamespace(stop=stop, run=lambda *_: stop.wait(30))
    threading.Timer(0.3, interrupted.set).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run._phase(0, "primary", lambda: None, workload)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert stop.is_set()


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
