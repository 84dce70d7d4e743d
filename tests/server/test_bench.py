"""``rwsplit bench``: the JSON report, the checkers, injection clean-up and bad input, on real servers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bench_run import HAS_MATPLOTLIB as _HAS_MATPLOTLIB
from bench_run import Run, Servers
from bench_run import bench as _bench
from bench_run import slave_status as _slave_status
from bench_run import with_account as _with_account

from rwsplit.bench import DRIVERS, PLOT_HINT, REASONS, STRATEGIES, exit_code
from rwsplit.sandbox import Sandbox


def _bench_tables(sandbox: Sandbox, server: str | int) -> list[str]:
    with sandbox.connect(server) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES FROM app LIKE 'rwsplit\\_bench\\_%'")
        return [row[0] for row in cur.fetchall()]


def _assert_clean(sandbox: Sandbox) -> None:
    """No delay left, both replication threads running, no bench table anywhere."""
    sandbox.wait_caught_up(timeout=30)
    for n in (1, 2):
        status = _slave_status(sandbox, n)
        assert int(status["SQL_Delay"]) == 0
        assert status["Slave_SQL_Running"] == "Yes" and status["Slave_IO_Running"] == "Yes"
    for server in ("primary", 1, 2):
        assert _bench_tables(sandbox, server) == []


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_percentiles(where: str, value: object, keys: tuple[str, ...]) -> None:
    assert isinstance(value, dict) and set(value) == set(keys), where
    for k in keys:
        assert value[k] is None or (_is_number(value[k]) and value[k] >= 0), f"{where}.{k}"


def validate_report(report: object, strategies: list[str], replicas: list[str]) -> None:
    """The fixed JSON schema of ``--json``: every key and every type."""
    assert isinstance(report, dict) and set(report) == {"config", "strategies", "replicas"}
    config = report["config"]
    assert isinstance(config, dict)
    for key, kind in {
        "driver": str,
        "threads": int,
        "duration": float,
        "write_ratio": float,
        "keys": int,
        "max_lag": float,
        "strategies": list,
        "sandbox": bool,
        "primary": str,
        "replicas": list,
        "injections": list,
    }.items():
        assert isinstance(config[key], kind), key
    assert config["strategies"] == strategies
    assert config["driver"] in DRIVERS
    for url in [config["primary"], *config["replicas"]]:
        assert ":***@" in url and sa.make_url(url).get_driver_name() == config["driver"]
    for inj in config["injections"]:
        assert inj["kind"] in ("delay", "pause") and inj["replica"] in replicas
    assert isinstance(report["strategies"], dict) and list(report["strategies"]) == strategies
    for name, s in report["strategies"].items():
        assert set(s) == {
            "reads",
            "writes",
            "replica_reads",
            "ryw_violations",
            "stale_reads",
            "ops_per_s",
            "read_ms",
            "write_ms",
            "reads_by_reason",
            "causal_waits",
        }, name
        for key in ("reads", "writes", "replica_reads", "ryw_violations", "stale_reads"):
            assert isinstance(s[key], int) and not isinstance(s[key], bool) and s[key] >= 0, f"{name}.{key}"
        assert _is_number(s["ops_per_s"]) and s["ops_per_s"] >= 0
        assert s["replica_reads"] <= s["reads"] and s["ryw_violations"] <= s["writes"]
        _check_percentiles(f"{name}.read_ms", s["read_ms"], ("p50", "p99"))
        _check_percentiles(f"{name}.write_ms", s["write_ms"], ("p50", "p99"))
        _check_reasons(name, s)
    assert isinstance(report["replicas"], dict) and list(report["replicas"]) == replicas
    for name, r in report["replicas"].items():
        assert set(r) == {"lag_ms", "excluded"}, name
        _check_percentiles(f"{name}.lag_ms", r["lag_ms"], ("p50", "p99", "max"))
        assert isinstance(r["excluded"], int) and not isinstance(r["excluded"], bool)


def _check_reasons(name: str, s: dict[str, Any]) -> None:
    """``reads_by_reason`` adds up to ``reads``; its replica reasons to ``replica_reads``; every
    causal wait ended in a causal read or (timed out) a fallback."""
    reasons, waits = s["reads_by_reason"], s["causal_waits"]
    assert isinstance(reasons, dict) and list(reasons) == list(REASONS), name
    for reason, n in reasons.items():
        assert isinstance(n, int) and not isinstance(n, bool) and n >= 0, f"{name}.{reason}"
    assert sum(reasons.values()) == s["reads"], (name, reasons)
    assert reasons["replica"] + reasons["causal"] == s["replica_reads"], (name, reasons)
    assert isinstance(waits, dict) and set(waits) == {"count", "timeouts", "p50_ms", "p99_ms"}, name
    assert isinstance(waits["count"], int) and 0 <= waits["timeouts"] <= waits["count"], name
    assert waits["count"] == reasons["causal"] + waits["timeouts"], (name, waits, reasons)
    assert waits["timeouts"] <= reasons["fallback"], (name, waits, reasons)
    for q in ("p50_ms", "p99_ms"):
        assert (waits[q] is None) == (waits["count"] == 0), f"{name}.causal_waits.{q}"
        assert waits[q] is None or (_is_number(waits[q]) and waits[q] >= 0), f"{name}.causal_waits.{q}"


def test_json_report_matches_the_schema(short_run: Run) -> None:
    validate_report(short_run.report, ["primary", "naive", "session", "causal"], ["replica1", "replica2"])
    for s in short_run.report["strategies"].values():
        assert s["reads"] > 0 and s["writes"] > 0 and s["ops_per_s"] > 0
        assert s["read_ms"]["p50"] is not None and s["write_ms"]["p99"] is not None


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_driver_runs_every_strategy(
    driver: str, servers: Servers, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A short run through each driver (async ones as asyncio tasks): the report names the driver,
    every strategy read and wrote without errors, rwsplit read replicas and nothing stale."""
    report = tmp_path / f"{driver}.json"
    proc = _bench(
        *servers.args(),
        "--driver",
        driver,
        "--duration",
        "6",
        "--threads",
        "3",
        "--write-ratio",
        "0.3",
        "--delay-replica",
        "1=2",
        "--json",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    workers = "tasks" if driver in ("asyncmy", "aiomysql") else "threads"
    assert f"driver {driver}, 3 {workers}," in proc.stdout
    assert "failed operations" not in proc.stderr and "warning" not in proc.stderr, proc.stderr
    data = json.loads(report.read_text())
    validate_report(data, list(STRATEGIES), ["replica1", "replica2"])
    assert data["config"]["driver"] == driver
    assert sa.make_url(data["config"]["primary"]).drivername == f"mysql+{driver}"
    strategies = data["strategies"]
    for name in STRATEGIES:
        assert strategies[name]["reads"] > 0 and strategies[name]["writes"] > 0, name
    assert strategies["primary"]["replica_reads"] == 0
    assert strategies["naive"]["ryw_violations"] > 0  # it read replica1, 2 s behind
    for name in ("session", "causal"):
        assert strategies[name]["replica_reads"] > 0, name
        assert strategies[name]["stale_reads"] == 0 and strategies[name]["ryw_violations"] == 0, name
    _check_breakdown(strategies)
    causal = strategies["causal"]  # replica2 is current: read-backs wait for it, none times out
    assert causal["causal_waits"]["count"] > 0 and causal["reads_by_reason"]["causal"] > 0
    assert servers.password not in proc.stdout + proc.stderr + report.read_text()
    _assert_clean(sandbox)


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_driver_fails_fast_on_a_wrong_password(driver: str, sandbox: Sandbox) -> None:
    replicas = [a for r in sandbox.replica_urls for a in ("--replica", r)]
    proc = _bench(
        "--primary", _with_account(sandbox.primary_url, "app", _SECRET), *replicas, "--driver", driver
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"rwsplit: error: cannot connect to the primary mysql+{driver}://app:***@")
    assert "(1045) Access denied" in lines[0]
    assert _SECRET not in proc.stderr + proc.stdout


def _check_breakdown(strategies: dict[str, Any]) -> None:
    """What each strategy's reads_by_reason must say, beyond the schema."""
    primary, naive, session, causal = (strategies[n] for n in STRATEGIES)
    assert primary["reads_by_reason"]["primary_strategy"] == primary["reads"]
    assert naive["reads_by_reason"]["replica"] == naive["reads"]
    for s in (primary, naive):
        assert s["causal_waits"] == {"count": 0, "timeouts": 0, "p50_ms": None, "p99_ms": None}
    # session mode pins a session to the primary once it wrote: every read-back
    assert session["reads_by_reason"]["pinned"] == session["writes"] > 0
    assert session["causal_waits"]["count"] == 0
    assert causal["reads_by_reason"]["pinned"] == 0  # causal mode never pins
    for s in (primary, naive, session, causal):
        assert s["reads_by_reason"]["hint"] == s["reads_by_reason"]["retry"] == 0


def test_reads_by_reason_explain_where_reads_went(short_run: Run) -> None:
    """Both replicas 3 s behind (max_lag 1 s): what kept session and causal reads on the primary."""
    strategies = short_run.report["strategies"]
    _check_breakdown(strategies)
    for name in ("session", "causal"):
        s = strategies[name]
        reasons = s["reads_by_reason"]
        assert reasons["pinned"] + reasons["fallback"] == s["reads"] - s["replica_reads"], (name, reasons)
        assert reasons["fallback"] > 0, (name, reasons)  # no replica within max_lag


def test_table_lists_strategies_then_replicas(short_run: Run) -> None:
    lines = short_run.proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy "))
    assert lines[header].split()[:6] == [
        "strategy",
        "reads",
        "writes",
        "replica_reads",
        "ryw_violations",
        "stale_reads",
    ]
    assert [line.split()[0] for line in lines[header + 2 : header + 6]] == [
        "primary",
        "naive",
        "session",
        "causal",
    ]
    caption = lines.index("reads by reason, causal waits:")
    assert caption > header + 6
    reasons = lines[caption + 1].split()
    assert reasons[0] == "strategy" and reasons[-4:] == [
        "waits",
        "wait_timeouts",
        "wait_p50_ms",
        "wait_p99_ms",
    ]
    assert set(reasons[1:-4]) <= set(REASONS) and {"primary_strategy", "replica", "pinned"} <= set(reasons)
    strategies = short_run.report["strategies"]
    for line in lines[caption + 3 : caption + 7]:
        name, *cells = line.split()
        counts = dict(zip(reasons[1:-4], map(int, cells), strict=False))
        assert sum(counts.values()) == strategies[name]["reads"], line
        assert counts == {r: n for r, n in strategies[name]["reads_by_reason"].items() if r in counts}
        assert int(cells[len(counts)]) == strategies[name]["causal_waits"]["count"]
    replica_header = next(i for i, line in enumerate(lines) if line.startswith("replica "))
    assert lines[replica_header].split() == ["replica", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "excluded"]
    assert "injections: replica1 delayed 3 s; replica2 delayed 3 s" in short_run.proc.stdout


def test_naive_routing_reads_its_own_writes_stale(short_run: Run) -> None:
    naive = short_run.report["strategies"]["naive"]
    assert naive["replica_reads"] == naive["reads"]
    assert naive["ryw_violations"] > 0


def test_rwsplit_strategies_read_their_own_writes(short_run: Run) -> None:
    for name in ("session", "causal"):
        assert short_run.report["strategies"][name]["ryw_violations"] == 0, name
    assert exit_code(short_run.report) == 0


def test_primary_strategy_reads_only_the_primary(short_run: Run) -> None:
    primary = short_run.report["strategies"]["primary"]
    assert primary["replica_reads"] == 0
    assert primary["ryw_violations"] == 0 and primary["stale_reads"] == 0


def test_injected_delay_shows_in_the_lag_figures(short_run: Run) -> None:
    for name in ("replica1", "replica2"):
        lag = short_run.report["replicas"][name]["lag_ms"]
        assert lag["p99"] is not None and lag["p99"] >= 1000, name
        assert lag["max"] >= lag["p99"] >= lag["p50"]
    injections = short_run.report["config"]["injections"]
    assert {(i["replica"], i["seconds"]) for i in injections} == {("replica1", 3), ("replica2", 3)}


def test_plot_is_drawn_or_the_extra_is_named(short_run: Run, tmp_path: Path) -> None:
    if _HAS_MATPLOTLIB:
        assert short_run.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return
    proc = _bench("--duration", "1", "--plot", str(tmp_path / "lag.png"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"rwsplit: error: {PLOT_HINT}"]
    assert "pip install 'rwsplit[plot]'" in proc.stderr


def test_injections_are_removed_and_the_table_dropped(short_run: Run, sandbox: Sandbox) -> None:
    table = short_run.report["config"]["table"]
    assert re.fullmatch(r"rwsplit_bench_[0-9a-f]{8}", table)
    assert f"dropped table {table}" in short_run.proc.stderr
    _assert_clean(sandbox)


def test_ctrl_c_drops_the_table_and_removes_the_delay(servers: Servers, sandbox: Sandbox) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rwsplit.cli", "bench", *servers.args()]
        + ["--duration", "60", "--threads", "2", "--delay-replica", "2=3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "running naive" in line:
                break
        assert any("running naive" in line for line in seen), "".join(seen)
        assert int(_slave_status(sandbox, 2)["SQL_Delay"]) == 3
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert any(line.startswith("rwsplit bench: dropped table") for line in [*seen, *err.splitlines()])
    _assert_clean(sandbox)


def test_injection_needs_an_account_that_may_change_replication(sandbox: Sandbox) -> None:
    args = ["--primary", sandbox.primary_url]
    for r in sandbox.replica_urls:
        args += ["--replica", r]
    proc = _bench(*args, "--duration", "2", "--delay-replica", "1=1")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rwsplit: error: cannot delay replica1 as app@127.0.0.1") and "(1227)" in last
    assert "Traceback" not in proc.stderr
    assert sa.make_url(sandbox.primary_url).password not in proc.stderr
    _assert_clean(sandbox)


_SECRET = "Sekr1t-pw-do-not-print"


def _bad_cases(sandbox: Sandbox) -> list[tuple[list[str], str]]:
    primary = sandbox.primary_url
    replicas = ["--replica", sandbox.replica_urls[0], "--replica", sandbox.replica_urls[1]]
    good = ["--primary", primary, *replicas]
    wrong_pw = _with_account(primary, "app", _SECRET)
    return [
        (["--primary", f"mysql+pymysql://app:{_SECRET}@127.0.0.1:1/app", *replicas], "cannot connect"),
        (["--primary", wrong_pw, *replicas], "Access denied"),
        (["--primary", f"not a url {_SECRET}", *replicas], "not a valid SQLAlchemy URL"),
        (["--primary", f"postgresql://u:{_SECRET}@h/db", *replicas], "MySQL/MariaDB only"),
        ([*good, "--duration", "0"], "--duration"),
        ([*good, "--duration", "-3"], "--duration"),
        ([*good, "--write-ratio", "1.5"], "--write-ratio"),
        ([*good, "--threads", "0"], "--threads"),
        ([*good, "--keys", "0"], "--keys"),
        ([*good, "--strategies", "primary,magic"], "unknown strategy 'magic'"),
        ([*good, "--delay-replica", "1:2"], "N=SECONDS"),
        ([*good, "--delay-replica", "1=-2"], "SECONDS"),
        ([*good, "--pause-replica", "1@5"], "N@START+LENGTH"),
        ([*good, "--pause-replica", "1@x+2"], "not a number"),
        ([*good, "--delay-replica", "3=1"], "no replica 3"),
        ([*good, "--pause-replica", "0@1+1"], "no replica 0"),
        ([*replicas], "--replica needs --primary"),
        (["--delay-replica", "3=1"], "no replica 3"),
    ]


def test_bad_input_is_one_line_and_exit_2(sandbox: Sandbox) -> None:
    app_password = sa.make_url(sandbox.primary_url).password
    assert app_password
    for args, message in _bad_cases(sandbox):
        started = time.monotonic()
        proc = _bench(*args, timeout=60)
        shown = [a.replace(app_password, "***").replace(_SECRET, "***") for a in args]
        assert proc.returncode == 2, (shown, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (shown, proc.stderr)
        assert "Traceback" not in proc.stderr
        for secret in (app_password, _SECRET):
            assert secret not in proc.stderr + proc.stdout
        assert time.monotonic() - started < 30
    _assert_clean(sandbox)


def test_without_servers_it_runs_in_its_own_sandbox(tmp_path: Path) -> None:
    report = tmp_path / "own.json"
    proc = _bench("--duration", "3", "--threads", "3", "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^strategy +reads +writes +replica_reads +ryw_violations", proc.stdout, re.M)
    assert re.search(r"^replica +lag_p50_ms", proc.stdout, re.M)
    assert "replica1 delayed 1 s (default in a sandbox" in proc.stdout
    data = json.loads(report.read_text())
    validate_report(data, ["primary", "naive", "session", "causal"], ["replica1", "replica2"])
    assert data["config"]["sandbox"] is True
    for name in ("session", "causal"):
        assert data["strategies"][name]["ryw_violations"] == 0
        assert data["strategies"][name]["replica_reads"] > 0
    directory = re.search(r"starting a sandbox .* in (\S+)", proc.stderr)
    assert directory is not None and not os.path.exists(directory.group(1))
