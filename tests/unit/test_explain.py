"""``rwsplit explain`` without servers (classification only), its input checks, ``status --watch``'s
arguments, and the watch loop against servers that are not there."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import cli as _cli

import rwsplit
from rwsplit.cli import cli, main
from rwsplit.explain import MAX_SQL_BYTES, read_statement, why_not_eligible
from rwsplit.state import ServerReport

SECRET = "S3cret-pw-Zq81"


def explain(*args: str, input: bytes | str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["explain", *args], input=input)
    return result.exit_code, result.output


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "sql, target, effect, reason",
    [
        ("SELECT id FROM users WHERE id = 1", "replica", "read", "read"),
        ("INSERT INTO users (name) VALUES ('a')", "primary", "write", "write: INSERT"),
        ("SELECT * FROM users WHERE id = 1 FOR UPDATE", "primary", "lock", "locking read: FOR UPDATE"),
        ("SET @a = 1", "primary", "session", "session state: SET"),
        ("SELECT 1; DELETE FROM users", "primary", "write", "multi-statement, part 2: write: DELETE"),
    ],
)
def test_classification_as_text_and_json(sql: str, target: str, effect: str, reason: str) -> None:
    assert rwsplit.classify(sql) == rwsplit.Route(target, reason, effect)  # type: ignore[arg-type]
    code, out = explain(sql)
    assert code == 0, out
    assert out.splitlines() == [
        f"statement:       {sql}",
        f"classification:  {target} (effect: {effect}), reason: {reason}",
    ]
    code, out = explain("--json", sql)
    assert code == 0, out
    assert json.loads(out) == {
        "statement": sql,
        "classification": {"target": target, "reason": reason, "effect": effect},
        "route": None,
        "server_floor": None,
        "servers": [],
    }


def test_read_only_functions_are_repeatable() -> None:
    sql = "SELECT price_of(1), stock_of(2)"
    assert json.loads(explain("--json", sql)[1])["classification"]["target"] == "primary"
    only_one = json.loads(explain("--json", "--read-only-function", "price_of", sql)[1])
    assert only_one["classification"] == {
        "target": "primary",
        "reason": "unknown function (stored function or UDF?): stock_of",
        "effect": "write",
    }
    both = ["--read-only-function", "PRICE_OF", "--read-only-function", "stock_of"]
    assert json.loads(explain("--json", *both, sql)[1])["classification"]["target"] == "replica"


def test_sql_from_stdin() -> None:
    code, out = explain("--json", "-", input="SELECT a\n  FROM t\n  FOR UPDATE\n")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["statement"] == "SELECT a\n  FROM t\n  FOR UPDATE\n"
    assert doc["classification"]["effect"] == "lock"
    code, out = explain("-", input="SELECT a\n  FROM t\n")  # the text form shows it on one line
    assert out.splitlines()[0] == "statement:       SELECT a FROM t"


def test_a_long_statement_is_shortened_in_text_only() -> None:
    sql = "SELECT " + ", ".join(f"c{i}" for i in range(100)) + " FROM t"
    code, out = explain(sql)
    assert code == 0 and out.splitlines()[0].endswith("...") and len(out.splitlines()[0]) == 17 + 120
    assert json.loads(explain("--json", sql)[1])["statement"] == sql


def test_read_statement_limits() -> None:
    exactly = b"SELECT 1 " + b"-" * (MAX_SQL_BYTES - 9)
    assert len(read_statement("-", io.BytesIO(exactly))) == MAX_SQL_BYTES
    with pytest.raises(ValueError, match="longer than 1 MiB"):
        read_statement("-", io.BytesIO(exactly + b"x"))
    with pytest.raises(ValueError, match="longer than 1 MiB"):
        read_statement("SELECT 'é" + "x" * (MAX_SQL_BYTES - 10) + "'", io.BytesIO())  # é is 2 bytes
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_statement("-", io.BytesIO(b"SELECT '\xff'"))
    for empty in ("", "  \n\t"):
        with pytest.raises(ValueError, match="empty"):
            read_statement(empty, io.BytesIO())
        with pytest.raises(ValueError, match="empty"):
            read_statement("-", io.BytesIO(empty.encode()))


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["explain", ""], None, "the SQL statement is empty"),
        (["explain", " \n "], None, "the SQL statement is empty"),
        (["explain", "-"], "", "the SQL statement is empty"),
        (["explain", "-"], "SELECT 1 -- " + "x" * MAX_SQL_BYTES, "longer than 1 MiB"),
        (["explain"], None, "Missing argument 'SQL'"),
        (["explain", "--read-only-function", " ", "SELECT 1"], None, "function name cannot be empty"),
        (["explain", "--mode", "causal", "SELECT 1"], None, "--mode needs --primary URL or --sandbox DIR"),
        (["explain", "--max-lag", "5", "SELECT 1"], None, "--max-lag needs --primary URL or --sandbox DIR"),
        (["explain", "--mode", "eventual", "SELECT 1"], None, "'eventual' is not one of"),
        (["explain", "--replica", "mysql+pymysql://u@h/d", "SELECT 1"], None, "--replica needs --primary"),
        (["explain", "--sandbox", "/x", "--primary", "mysql://u@h/d", "SELECT 1"], None, "not both"),
        (["explain", "--primary", f"postgresql://u:{SECRET}@h/d", "SELECT 1"], None, "MySQL/MariaDB only"),
        (["explain", "--primary", f"nonsense:{SECRET}", "SELECT 1"], None, "not a valid SQLAlchemy URL"),
        (["explain", "--primary", "mysql+pymysql://u@h/d", "--max-lag", "-1", "SELECT 1"], None, "-1"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--watch", "0"], None, "must be > 0"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--watch", "nan"], None, "must be > 0"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--watch", "1e9"], None, "at most 86400"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--watch", "x"], None, "--watch"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--count", "2"], None, "--count needs --watch"),
        (["status", "--primary", "mysql+pymysql://u@h/d", "--watch", "--count", "0"], None, "--count"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    stdin: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((stdin or "").encode())))
    with pytest.raises(SystemExit) as exited:
        main(args)  # the entry point, in this process
    out, err = capsys.readouterr()
    assert exited.value.code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rwsplit: error: ") and message in lines[0], lines
    assert SECRET not in err


def test_bad_input_through_the_installed_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rwsplit.cli", "explain", "-"],
        input="  \n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "rwsplit: error: Invalid value for SQL: the SQL statement is empty (see: rwsplit explain --help)\n"
    )


def test_missing_sandbox_exits_1(tmp_path) -> None:
    result = _cli("explain", "--sandbox", str(tmp_path / "none"), "SELECT 1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"rwsplit: error: no rwsplit sandbox in {tmp_path / 'none'} (no rwsplit-sandbox.json); "
        "start one with up"
    ]


def test_unreachable_primary_exits_1_with_one_line() -> None:
    url = f"mysql+pymysql://app:{SECRET}@127.0.0.1:{closed_port()}/app"
    result = _cli("explain", "--primary", url, "SELECT 1")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("rwsplit: error: cannot reach the primary (mysql+pymysql://app:***@127.0.0.1:")
    assert "Can't connect" in lines[0] and SECRET not in result.stderr


def test_watch_prints_count_tables_of_unreachable_servers() -> None:
    urls = [f"mysql+pymysql://app:{SECRET}@127.0.0.1:{closed_port()}/app" for _ in range(2)]
    result = _cli("status", "--primary", urls[0], "--replica", urls[1], "--watch", "0.2", "--count", "3")
    assert result.returncode == 0, result.stderr
    tables = result.stdout.split("\n\n")
    assert len(tables) == 3
    for table in tables:
        lines = table.strip().splitlines()
        assert lines[0].startswith("rwsplit status at ") and lines[0].endswith(", every 0.2 s")
        assert lines[1].split()[:4] == ["server", "role", "url", "reachable"]
        assert [(line.split()[0], line.split()[3]) for line in lines[3:]] == [
            ("primary", "no"),
            ("replica1", "no"),
        ]
    jsonl = _cli("status", "--primary", urls[0], "--watch", "0.1", "--count", "2", "--json")
    assert jsonl.returncode == 0, jsonl.stderr
    docs = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(docs) == 2 and all([r["reachable"] for r in doc] == [False] for doc in docs)
    for out in (result, jsonl):
        assert SECRET not in out.stdout + out.stderr


def _report(**kw: object) -> ServerReport:
    row = {
        "name": "replica1",
        "role": "replica",
        "url": "mysql+pymysql://app:***@h/app",
        "reachable": True,
        "replicating": True,
        "lag": 0.0,
        "lag_source": "gtid",
        "measured_at": 0.0,
        "gtid": "0-1-5",
        "in_flight": 0,
        "eligible": False,
        "error": None,
    }
    return ServerReport(**{**row, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"eligible": True}, None),
        ({"role": "primary", "reachable": False}, None),
        ({"reachable": False, "error": "(2003) refused"}, "not reachable: (2003) refused"),
        ({"reachable": False}, "not reachable"),
        ({"replicating": False}, "replication stopped (IO or SQL thread not running)"),
        ({"lag": None}, "lag not measured yet"),
        ({"lag": 2.5}, "lag 2.500 s > max_lag 1 s"),
        ({"error": "tripped: 3 failed reads"}, "tripped: 3 failed reads"),
        ({}, "lag only a lower bound or too old, or taken out after failed reads"),
    ],
)
def test_why_not_eligible(kw: dict[str, object], why: str | None) -> None:
    assert why_not_eligible(_report(**kw), 1.0) == why
