"""rwsplit.drivers without a server: which drivers each factory accepts, the timeouts each gets,
and error numbers read from each driver's own exceptions (refused connections are real ones)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import aiomysql
import asyncmy
import asyncmy.errors
import mariadb
import MySQLdb
import pymysql
import pytest
import sqlalchemy as sa

from rwsplit.drivers import (
    DRIVERS,
    _pymysql_kernel_timeouts,
    _timeval,
    bounded_connect_args,
    driver_of,
    error_message,
    error_number,
)
from rwsplit.errors import describe_error

PW = "s3cr3t-PW"
SYNC = ("pymysql", "mysqldb", "mariadbconnector")
ASYNC = ("asyncmy", "aiomysql")


def _url(drivername: str) -> sa.URL:
    return sa.make_url(f"{drivername}://app:{PW}@db.example:3306/app")


def test_the_table_holds_the_five_drivers_in_their_modes() -> None:
    assert {n for n, d in DRIVERS.items() if not d.is_async} == set(SYNC)
    assert {n for n, d in DRIVERS.items() if d.is_async} == set(ASYNC)
    assert all(d.name == n for n, d in DRIVERS.items())


@pytest.mark.parametrize("backend", ["mysql", "mariadb"])
@pytest.mark.parametrize("name", SYNC + ASYNC)
def test_every_supported_driver_is_accepted_in_its_mode(backend: str, name: str) -> None:
    driver = driver_of(_url(f"{backend}+{name}"), "the primary", is_async=name in ASYNC)
    assert driver is DRIVERS[name]


@pytest.mark.parametrize("backend", ["mysql", "mariadb"])
def test_a_url_without_a_driver_means_mysqldb(backend: str) -> None:
    assert driver_of(_url(backend), "the primary", is_async=False).name == "mysqldb"
    with pytest.raises(ValueError, match="'mysqldb'.*rwsplit.create_engine"):
        driver_of(_url(backend), "the primary", is_async=True)


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("name", ["mysqlconnector", "cymysql", "pyodbc", "oursql"])
def test_unsupported_drivers_are_refused_with_the_supported_list(name: str, is_async: bool) -> None:
    with pytest.raises(ValueError) as err:
        driver_of(_url(f"mysql+{name}"), "replica #2", is_async=is_async)
    message = str(err.value)
    assert message.startswith("replica #2 uses the driver") and repr(name) in message
    assert "does not support" in message
    supported, other = (ASYNC, SYNC) if is_async else (SYNC, ASYNC)
    assert all(repr(d) in message for d in supported)
    assert not any(repr(d) in message for d in other)
    assert PW not in message and "db.example" not in message


@pytest.mark.parametrize("name", ASYNC)
def test_an_async_driver_given_to_the_sync_factory_names_create_async_engine(name: str) -> None:
    with pytest.raises(ValueError) as err:
        driver_of(_url(f"mysql+{name}"), "the primary", is_async=False)
    message = str(err.value)
    assert "the primary uses the async driver" in message and repr(name) in message
    assert "use rwsplit.create_async_engine" in message
    assert all(repr(d) in message for d in SYNC)
    assert PW not in message


@pytest.mark.parametrize("name", SYNC)
def test_a_sync_driver_given_to_the_async_factory_names_create_engine(name: str) -> None:
    with pytest.raises(ValueError) as err:
        driver_of(_url(f"mariadb+{name}"), "replica #1", is_async=True)
    message = str(err.value)
    assert "replica #1 uses the sync driver" in message and repr(name) in message
    assert "use rwsplit.create_engine" in message
    assert all(repr(d) in message for d in ASYNC)
    assert PW not in message


@pytest.mark.parametrize("name", SYNC)
def test_sync_drivers_get_connect_read_and_write_timeouts(name: str) -> None:
    assert bounded_connect_args(DRIVERS[name], {}) == {
        "connect_timeout": 2,
        "read_timeout": 60,
        "write_timeout": 60,
    }


def test_async_drivers_get_only_the_timeouts_their_connect_takes() -> None:
    assert bounded_connect_args(DRIVERS["asyncmy"], {}) == {"connect_timeout": 2, "read_timeout": 60}
    assert bounded_connect_args(DRIVERS["aiomysql"], {}) == {"connect_timeout": 2}


@pytest.mark.parametrize("name", SYNC + ASYNC)
def test_the_apps_connect_args_win_and_are_kept(name: str) -> None:
    given = {"connect_timeout": 7, "ssl": {"ca": "/x"}, "read_timeout": 3}
    kwargs = {"connect_args": given, "pool_size": 3}
    args = bounded_connect_args(DRIVERS[name], kwargs)
    assert args["connect_timeout"] == 7 and args["ssl"] == {"ca": "/x"} and args["read_timeout"] == 3
    assert given == {"connect_timeout": 7, "ssl": {"ca": "/x"}, "read_timeout": 3}  # not changed
    assert ("write_timeout" in args) == (name in SYNC)


# ------------------------------------------------------------------ error numbers
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refused(connect: Callable[[int], object]) -> BaseException:
    """The error a driver raises for a refused TCP connection."""
    port = _closed_port()
    with pytest.raises(Exception) as err:
        connect(port)
    return err.value


def _pymysql(port: int) -> object:
    return pymysql.connect(host="127.0.0.1", port=port, user="u", password=PW, connect_timeout=2)


def _mysqldb(port: int) -> object:
    return MySQLdb.connect(host="127.0.0.1", port=port, user="u", password=PW, connect_timeout=2)


def _mariadb(port: int) -> object:
    return mariadb.connect(host="127.0.0.1", port=port, user="u", password=PW, connect_timeout=2)


def _asyncmy(port: int) -> object:
    connecting = asyncmy.connect(host="127.0.0.1", port=port, user="u", password=PW, connect_timeout=2)
    return asyncio.run(connecting)


def _aiomysql(port: int) -> object:
    connecting = aiomysql.connect(host="127.0.0.1", port=port, user="u", password=PW, connect_timeout=2)
    return asyncio.run(connecting)


@pytest.mark.parametrize(
    ("connect", "kind", "number"),
    [
        (_pymysql, pymysql.err.OperationalError, 2003),
        (_mysqldb, MySQLdb.OperationalError, 2002),
        (_mariadb, mariadb.OperationalError, 2002),
        (_asyncmy, asyncmy.errors.OperationalError, 2003),
        (_aiomysql, pymysql.err.OperationalError, 2003),
    ],
    ids=["pymysql", "mysqldb", "mariadbconnector", "asyncmy", "aiomysql"],
)
def test_error_number_of_each_drivers_refused_connection(
    connect: Callable[[int], object], kind: type, number: int
) -> None:
    exc = _refused(connect)
    assert isinstance(exc, kind)
    assert error_number(exc) == number
    wrapped = sa.exc.OperationalError("SELECT 1", None, exc)  # type: ignore[arg-type]
    assert error_number(wrapped) == number
    message = describe_error(wrapped)
    assert message.startswith(f"({number}) Can't connect ")  # the number once, then the driver's text
    assert PW not in message


def test_error_numbers_from_constructed_driver_errors() -> None:
    gone = mariadb.InterfaceError("Lost connection to server during query")
    gone.errno = 2013  # what Connector/Python's C code sets on the errors it raises
    assert error_number(gone) == 2013 and error_message(gone) == "Lost connection to server during query"
    assert describe_error(gone) == "(2013) Lost connection to server during query"
    assert error_number(MySQLdb.ProgrammingError(1146, "Table 'app.x' doesn't exist")) == 1146
    timed_out = asyncmy.errors.OperationalError(2013, "Lost (read timeout)")
    assert describe_error(timed_out) == "(2013) Lost (read timeout)"


@pytest.mark.parametrize(
    "exc",
    [ConnectionRefusedError(111, "Connection refused"), ValueError(2013), KeyError(2003), RuntimeError("x")],
)
def test_errors_that_are_not_driver_errors_have_no_number(exc: BaseException) -> None:
    assert error_number(exc) is None
    assert describe_error(exc).startswith(f"{type(exc).__name__}: ")


def test_kernel_timevals_are_never_zero() -> None:
    """A zero ``timeval`` is the kernel's "no timeout": the smallest one PyMySQL accepts stays 1 µs."""
    import struct

    assert struct.unpack("ll", _timeval(1.5)) == (1, 500000)
    assert struct.unpack("ll", _timeval(60)) == (60, 0)
    assert struct.unpack("ll", _timeval(1e-7)) == (0, 1)


class _GreenSocket:
    """A cooperative library's socket (gevent, eventlet): wraps a real one, is not one."""

    def __init__(self) -> None:
        self._sock = socket.socket()

    def gettimeout(self) -> float:
        return 5.0


def test_kernel_timeouts_leave_sockets_that_are_not_real_ones_alone() -> None:
    """gevent's descriptors never block, so the kernel's timeout would never fire: left to PyMySQL."""

    class Connection:
        _read_timeout = _write_timeout = _current_timeout = 5.0
        _rfile = "untouched"

        def __init__(self) -> None:
            self._sock = _GreenSocket()

    conn = Connection()
    try:
        _pymysql_kernel_timeouts(conn)
        assert conn._rfile == "untouched"
    finally:
        conn._sock._sock.close()
