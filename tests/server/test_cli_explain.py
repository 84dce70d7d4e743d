"""``rwsplit explain`` on the sandbox (where a statement goes now, and why) and ``rwsplit status --watch``.
Every output is checked for the sandbox's passwords."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import REPLICAS
from helpers import cli as _cli

from rwsplit.sandbox import Sandbox

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def run(sandbox: Sandbox, caught_up: Callable[..., None]) -> Iterator[Run]:
    """The CLI in a subprocess (replicas caught up first); at teardown, no output held a password."""
    passwords = json.loads(sandbox.state_file.read_text())["passwords"].values()
    assert passwords and all(len(p) >= 8 for p in passwords)
    outputs: list[str] = []
    caught_up()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = _cli(*args)
        outputs.append(result.stdout + result.stderr)
        return result

    yield cli
    assert outputs
    for out in outputs:
        for password in passwords:
            assert password not in out


def explain_json(run: Run, *args: str) -> dict:
    result = run("explain", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows_of(table: list[str]) -> list[dict[str, str]]:
    """A printed table's rows as {header: cell}; columns start where their headers do."""
    starts = [i for i, c in enumerate(table[0]) if c != " " and (i == 0 or table[0][i - 1] == " ")]
    names = table[0].split()
    return [
        {n: line[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for line in table[2:]
    ]


def urls(sandbox: Sandbox) -> list[str]:
    return ["--primary", sandbox.primary_url, *(a for u in sandbox.replica_urls for a in ("--replica", u))]


def test_a_read_goes_to_a_replica(sandbox: Sandbox, run: Run) -> None:
    doc = explain_json(run, "--sandbox", str(sandbox.dir), "SELECT name FROM users WHERE id = 1")
    assert doc["classification"] == {"target": "replica", "reason": "read", "effect": "read"}
    assert doc["route"]["target"] in REPLICAS and doc["route"]["reason"] == "read"
    servers = doc["servers"]
    assert [(s["name"], s["role"]) for s in servers] == [
        ("primary", "primary"),
        ("replica1", "replica"),
        ("replica2", "replica"),
    ]
    assert all(s["reachable"] and s["eligible"] and s["lag"] is not None for s in servers)
    assert all("***" in s["url"] for s in servers)
    text = run("explain", "--sandbox", str(sandbox.dir), "SELECT name FROM users WHERE id = 1")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1] == "classification:  replica (effect: read), reason: read"
    assert lines[2].startswith("server floor:    mariadb ")
    assert lines[3] in {f"route now:       {r}, reason: read" for r in REPLICAS}
    assert lines[4] == "                 (a new session: read_your_writes=session, max_lag=1 s)"
    table = lines[lines.index("") + 1 :]
    assert table[0].split()[:5] == ["server", "role", "url", "reachable", "lag_ms"]
    assert [(row["server"], row["reachable"], row["eligible"]) for row in rows_of(table)] == [
        ("primary", "yes", "yes"),
        ("replica1", "yes", "yes"),
        ("replica2", "yes", "yes"),
    ]


@pytest.mark.parametrize(
    "sql, reason, effect",
    [
        ("INSERT INTO users (name) VALUES ('x')", "write: INSERT", "write"),
        ("SELECT name FROM users WHERE id = 1 FOR UPDATE", "locking read: FOR UPDATE", "lock"),
        ("SELECT GET_LOCK('a', 1)", "side-effecting function: GET_LOCK", "session"),
    ],
)
def test_writes_and_locks_go_to_the_primary(
    sandbox: Sandbox, run: Run, sql: str, reason: str, effect: str
) -> None:
    doc = explain_json(run, *urls(sandbox), sql)
    assert doc["classification"] == {"target": "primary", "reason": reason, "effect": effect}
    assert doc["route"] == {"target": "primary", "reason": reason}
    assert [s["eligible"] for s in doc["servers"]] == [True, True, True]


def test_the_servers_version_floor_decides_version_gated_functions(sandbox: Sandbox, run: Run) -> None:
    sql = "SELECT JSON_VALUE(doc, '$.a') FROM docs"
    alone = explain_json(run, sql)  # servers unknown: a version-gated built-in may be a stored function
    assert alone["classification"]["target"] == "primary" and alone["server_floor"] is None
    on_servers = explain_json(run, "--sandbox", str(sandbox.dir), sql)
    assert on_servers["server_floor"].startswith("mariadb ")
    assert on_servers["classification"]["target"] == "replica"
    assert on_servers["route"]["target"] in REPLICAS


def test_read_only_functions_reach_the_engine(sandbox: Sandbox, run: Run) -> None:
    sql = "SELECT app.price_of(1)"
    assert explain_json(run, "--sandbox", str(sandbox.dir), sql)["route"]["target"] == "primary"
    declared = explain_json(run, "--sandbox", str(sandbox.dir), "--read-only-function", "app.price_of", sql)
    assert declared["classification"]["target"] == "replica"
    assert declared["route"]["target"] in REPLICAS


def test_a_paused_replica_is_not_eligible_and_reads_go_to_the_other(sandbox: Sandbox, run: Run) -> None:
    sandbox.pause_replica(1)
    try:
        doc = explain_json(run, *urls(sandbox), "SELECT 1")
        text = run("explain", *urls(sandbox), "SELECT 1")
    finally:
        sandbox.resume_replica(1)
        sandbox.wait_caught_up(timeout=15)
    assert doc["route"] == {"target": "replica2", "reason": "read"}
    assert [(s["name"], s["eligible"], s["replicating"]) for s in doc["servers"]] == [
        ("primary", True, None),
        ("replica1", False, False),
        ("replica2", True, True),
    ]
    assert "route now:       replica2, reason: read" in text.stdout.splitlines()
    assert "replica1 not eligible: replication stopped (IO or SQL thread not running)" in text.stdout


@pytest.mark.usefixtures("paused_replicas")
def test_with_both_replicas_paused_a_read_goes_to_the_primary(sandbox: Sandbox, run: Run) -> None:
    doc = explain_json(run, "--sandbox", str(sandbox.dir), "--max-lag", "5", "SELECT 1")
    assert doc["classification"]["target"] == "replica"
    assert doc["route"] == {"target": "primary", "reason": "no eligible replica within 5s"}
    assert [s["eligible"] for s in doc["servers"]] == [True, False, False]
    text = run("explain", "--sandbox", str(sandbox.dir), "--mode", "causal", "SELECT 1").stdout
    assert "route now:       primary, reason: no eligible replica within 1s" in text
    assert "(a new session: read_your_writes=causal, max_lag=1 s)" in text
    for name in REPLICAS:
        assert f"{name} not eligible: replication stopped" in text


def test_a_lagging_replica_is_not_eligible(sandbox: Sandbox, run: Run, on_primary) -> None:
    sandbox.delay_replica(2, 30)
    try:
        on_primary("CREATE TABLE IF NOT EXISTS cli_explain_lag (id INT PRIMARY KEY)")
        on_primary("DROP TABLE cli_explain_lag")
        time.sleep(1.5)  # replica2 now misses writes older than max_lag
        doc = explain_json(run, "--sandbox", str(sandbox.dir), "SELECT 1")
        text = run("explain", "--sandbox", str(sandbox.dir), "SELECT 1").stdout
    finally:
        sandbox.delay_replica(2, 0)
        sandbox.wait_caught_up(timeout=15)
    assert doc["route"] == {"target": "replica1", "reason": "read"}
    lagging = doc["servers"][2]
    assert lagging["name"] == "replica2" and not lagging["eligible"]
    # Over max_lag, or (a fresh process's monitor has a short timeline) only a lower bound of it,
    # which can be 1.0 exactly: the reason then says so.
    assert "replica2 not eligible: " in text, text
    if lagging["lag"] is not None and lagging["lag"] <= 1.0:
        assert "replica2 not eligible: lag only a lower bound or too old" in text, text


def test_unreachable_primary_and_unreachable_replica(sandbox: Sandbox, run: Run) -> None:
    replica = sandbox.replica_urls[0]
    dead = replica.rsplit(":", 1)[0] + ":1/app"  # the real password, a port nobody listens on
    result = run("explain", "--primary", dead, "--replica", replica, "SELECT 1")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rwsplit: error: cannot reach the primary (")
    doc = explain_json(run, "--primary", sandbox.primary_url, "--replica", dead, "SELECT 1")
    assert doc["route"]["target"] == "primary"
    assert doc["route"]["reason"] == "no eligible replica within 1s"
    assert [(s["reachable"], s["eligible"]) for s in doc["servers"]] == [(True, True), (False, False)]
    assert "Can't connect" in doc["servers"][1]["error"]


def test_status_watch_prints_one_table_per_refresh(sandbox: Sandbox, run: Run) -> None:
    started = time.monotonic()
    result = run("status", "--sandbox", str(sandbox.dir), "--watch", "0.5", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.5
    tables = result.stdout.split("\n\n")
    assert len(tables) == 2
    for table in tables:
        lines = table.strip().splitlines()
        assert lines[0].startswith("rwsplit status at ") and lines[0].endswith(", every 0.5 s")
        assert lines[1].split()[:5] == ["server", "role", "url", "reachable", "lag_ms"]
        assert [(row["server"], row["reachable"], row["eligible"]) for row in rows_of(lines[1:])] == [
            ("primary", "yes", "yes"),
            ("replica1", "yes", "yes"),
            ("replica2", "yes", "yes"),
        ]
    jsonl = run("status", *urls(sandbox), "--watch", "--count", "3", "--json")
    assert jsonl.returncode == 0, jsonl.stderr
    docs = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(docs) == 3
    assert all([r["name"] for r in doc] == ["primary", "replica1", "replica2"] for doc in docs)
    assert docs[0][1]["measured_at"] < docs[2][1]["measured_at"]  # refreshed, not repeated


def test_status_watch_ends_with_exit_0_on_ctrl_c(sandbox: Sandbox) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rwsplit.cli", "status", "--sandbox", str(sandbox.dir), "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("rwsplit status at ")  # watching
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == ""
    assert out.count("rwsplit status at ") >= 2
    for password in json.loads(sandbox.state_file.read_text())["passwords"].values():
        assert password not in out
