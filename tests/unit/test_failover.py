"""rwsplit.failover without servers: Retry validates its bounds and is immutable; every driver's
connection and timeout errors are told from statement errors; the primary's connect backoff never
blocks an event loop."""

from __future__ import annotations

import asyncio
import socket
import time

import asyncmy.errors
import mariadb
import MySQLdb
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from rwsplit.errors import PrimaryUnavailable
from rwsplit.failover import (
    _AT_CONNECT,
    _ELAPSED,
    Retry,
    _timed_out,
    at_connect,
    is_connection_error,
    retrying_connect,
    wait_not_reached,
)

PW = "s3cr3t-PW"


@pytest.mark.parametrize(
    "kwargs",
    [{"replica_attempts": -1}, {"primary_attempts": 0}, {"backoff": -1}, {"primary_timeout": 0}],
)
def test_retry_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(**kwargs)


def test_retry_is_immutable() -> None:
    r = Retry()
    with pytest.raises(AttributeError):
        r.replica_attempts = 5  # type: ignore[misc]


# ------------------------------------------------------------------ which errors mean "connection failed"
def _mariadb(cls: type, errno: int, message: str) -> BaseException:
    """A MariaDB Connector/Python error as its C code raises it (the number in ``errno``)."""
    exc: BaseException = cls(message)
    exc.errno = errno  # type: ignore[attr-defined]
    return exc


LOST = "Lost connection to server during query"
PYMYSQL_LOST = "Lost connection to MySQL server during query"
CONNECTION_ERRORS = [
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)"),
    pymysql.err.OperationalError(2006, "MySQL server has gone away"),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'"),
    pymysql.err.InterfaceError(0, ""),
    MySQLdb.OperationalError(2013, LOST),
    MySQLdb.OperationalError(2002, "Can't connect to server on '127.0.0.1' (115)"),
    MySQLdb.OperationalError(4031, "The client was disconnected by the server because of inactivity."),
    MySQLdb.InterfaceError(0, ""),
    _mariadb(mariadb.InterfaceError, 2013, LOST),
    _mariadb(mariadb.OperationalError, 2002, "Can't connect to server on '127.0.0.1' (115)"),
    _mariadb(mariadb.OperationalError, 1927, "Connection was killed"),
    asyncmy.errors.OperationalError(2013, "Lost connection to MySQL server during query (read timeout)"),
    asyncmy.errors.InterfaceError(0, "Not connected"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
    TimeoutError(),
    asyncio.TimeoutError(),
]
STATEMENT_ERRORS = [
    pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
    pymysql.err.OperationalError(1045, "Access denied for user 'app'"),
    pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"),
    MySQLdb.ProgrammingError(1146, "Table 'app.nope' doesn't exist"),
    MySQLdb.OperationalError(1205, "Lock wait timeout exceeded"),
    _mariadb(mariadb.ProgrammingError, 1064, "You have an error in your SQL syntax"),
    _mariadb(mariadb.OperationalError, 1205, "Lock wait timeout exceeded"),
    asyncmy.errors.ProgrammingError(1146, "Table 'app.nope' doesn't exist"),
    ValueError("bad"),
]


@pytest.mark.parametrize("exc", CONNECTION_ERRORS, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")
def test_connection_errors_of_every_driver(exc: BaseException) -> None:
    assert is_connection_error(exc)
    assert is_connection_error(sa.exc.OperationalError("SELECT 1", None, exc))  # type: ignore[arg-type]


@pytest.mark.parametrize("exc", STATEMENT_ERRORS, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")
def test_statement_errors_of_every_driver(exc: BaseException) -> None:
    assert not is_connection_error(exc)
    assert not is_connection_error(sa.exc.DBAPIError("SELECT 1", None, exc))  # type: ignore[arg-type]
    invalidated = sa.exc.DBAPIError("SELECT 1", None, exc, connection_invalidated=True)  # type: ignore[arg-type]
    assert is_connection_error(invalidated)  # SQLAlchemy saw the connection die under it


def test_any_error_raised_while_opening_a_replica_connection_counts() -> None:
    exc = pymysql.err.OperationalError(1045, "Access denied for user 'app'")
    setattr(exc, _AT_CONNECT, True)
    assert is_connection_error(exc) and at_connect(sa.exc.OperationalError("", None, exc))  # type: ignore[arg-type]


def _elapsed(exc: BaseException, seconds: float) -> BaseException:
    setattr(exc, _ELAPSED, seconds)
    return exc


@pytest.mark.parametrize(
    ("exc", "timed_out"),
    [
        (pymysql.err.OperationalError(2013, f"{PYMYSQL_LOST} (timed out)"), True),
        (pymysql.err.OperationalError(2013, PYMYSQL_LOST), False),
        (asyncmy.errors.OperationalError(2013, f"{PYMYSQL_LOST} (read timeout)"), True),
        # MySQLdb and Connector/Python say the same for a killed server: how long the read ran tells.
        (MySQLdb.OperationalError(2013, LOST), False),
        (_elapsed(MySQLdb.OperationalError(2013, LOST), 2.01), True),
        (_elapsed(MySQLdb.OperationalError(2013, LOST), 0.02), False),
        (_elapsed(_mariadb(mariadb.InterfaceError, 2013, LOST), 2.0), True),
        (_elapsed(_mariadb(mariadb.InterfaceError, 2013, LOST), 0.3), False),
        (_elapsed(MySQLdb.OperationalError(2006, "MySQL server has gone away"), 5.0), False),
        (_elapsed(MySQLdb.ProgrammingError(1064, "syntax (timed out)"), 5.0), False),
    ],
)
def test_timed_out_reads_of_every_driver(exc: BaseException, timed_out: bool) -> None:
    assert _timed_out(exc, 2.0) is timed_out
    assert _timed_out(sa.exc.OperationalError("SELECT 1", None, exc), 2.0) is timed_out  # type: ignore[arg-type]


# ------------------------------------------------------------------ primary connect backoff
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RETRY = Retry(primary_attempts=4, backoff=0.1, max_backoff=1.0, primary_timeout=10.0)  # waits 0.1+0.2+0.4


def test_sync_primary_connects_back_off_then_raise_primary_unavailable() -> None:
    engine = sa.create_engine(f"mysql+pymysql://app:{PW}@127.0.0.1:{_closed_port()}/app")
    retrying_connect(engine, RETRY, "the-primary")
    started = time.monotonic()
    expected = r"the-primary unreachable after 4 attempts.*\(2003\)"
    with pytest.raises(PrimaryUnavailable, match=expected) as err:
        engine.connect()
    assert time.monotonic() - started >= 0.65
    assert PW not in str(err.value)


def test_async_primary_connects_back_off_without_blocking_the_event_loop() -> None:
    """The backoff of an async dialect awaits: other tasks keep running while it waits."""

    async def main() -> tuple[int, float]:
        engine = create_async_engine(f"mysql+asyncmy://app:{PW}@127.0.0.1:{_closed_port()}/app")
        retrying_connect(engine.sync_engine, RETRY, "the-primary")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        started, before = time.monotonic(), ticks
        try:
            with pytest.raises(PrimaryUnavailable, match=r"unreachable after 4 attempts.*\(2003\)"):
                async with engine.connect():
                    pass
        finally:
            task.cancel()
            await engine.dispose()
        return ticks - before, time.monotonic() - started

    ticks, took = asyncio.run(main())
    assert took >= 0.65
    assert ticks >= 30, f"the event loop ran {ticks} times in {took:.2f} s of backoff"


_NOT_REACHED = "Variable 'sql_mode' can't be set to the value of 'RWSPLIT_CAUSAL_WAIT_NOT_REACHED'"


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(1231, _NOT_REACHED),
        MySQLdb.OperationalError(1231, _NOT_REACHED),
        _mariadb(mariadb.OperationalError, 1231, _NOT_REACHED),
        asyncmy.errors.OperationalError(1231, _NOT_REACHED),
    ],
    ids=lambda e: f"{type(e).__module__}.{type(e).__name__}",
)
def test_a_timed_out_wait_sent_with_its_read_is_told_from_every_driver(exc: BaseException) -> None:
    assert wait_not_reached(exc)
    assert wait_not_reached(sa.exc.OperationalError("SET STATEMENT …", None, exc))  # type: ignore[arg-type]
    assert not is_connection_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(1231, "Variable 'sql_mode' can't be set to the value of 'NOPE'"),
        pymysql.err.OperationalError(1064, f"near '{_NOT_REACHED}'"),  # the word, another error
        ValueError(_NOT_REACHED),
        *STATEMENT_ERRORS,
        *CONNECTION_ERRORS,
    ],
    ids=lambda e: f"{type(e).__module__}.{type(e).__name__}",
)
def test_other_errors_are_not_a_timed_out_wait(exc: BaseException) -> None:
    assert not wait_not_reached(exc)


def test_the_wait_sent_with_a_read_is_rendered_from_the_positions_numbers() -> None:
    from rwsplit.flavor import MARIADB, MYSQL, WAIT_NOT_REACHED
    from rwsplit.gtid import parse_mariadb

    prefix = MARIADB.wait_prefix(parse_mariadb("1-2-7, 0-1-5"), 0.05)
    assert prefix == (
        "SET STATEMENT sql_mode = IF(MASTER_GTID_WAIT('0-1-5,1-2-7', 0.050000) = 0, @@sql_mode, "
        f"'{WAIT_NOT_REACHED}') FOR "
    )
    assert MARIADB.wait_prefix(parse_mariadb(""), 1) is None  # nothing to wait for
    assert MYSQL.wait_prefix(parse_mariadb("0-1-5"), 1) is None  # MySQL has no SET STATEMENT
    assert "%" not in prefix and "?" not in prefix  # safe before any driver's paramstyle
