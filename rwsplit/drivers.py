"""What differs between the DBAPI drivers rwsplit supports: names, timeouts, error numbers.

Every driver-specific detail lives here, so that routing, failover and causal reads work the
same on PyMySQL, mysqlclient (MySQLdb), MariaDB Connector/Python, asyncmy and aiomysql.
"""

from __future__ import annotations

import _socket
import io
import signal
import socket
import ssl
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from .compat import wrap_dialect

__all__ = [
    "Driver",
    "DRIVERS",
    "driver_of",
    "bounded_connect_args",
    "error_number",
    "error_message",
    "use_kernel_timeouts",
]

# The waits rwsplit bounds by default (seconds), set under the names a driver's connect() takes.
DEFAULT_TIMEOUTS: Mapping[str, float] = {"connect_timeout": 2, "read_timeout": 60, "write_timeout": 60}
_ALL_TIMEOUTS = ("connect_timeout", "read_timeout", "write_timeout")


@dataclass(frozen=True)
class Driver:
    """One supported DBAPI driver: its SQLAlchemy name, mode, timeout keywords and pip package."""

    name: str  # as in mysql+<name>://
    is_async: bool
    timeouts: tuple[str, ...]  # which of connect/read/write_timeout its connect() accepts
    package: str  # what pip installs


DRIVERS: Mapping[str, Driver] = {
    d.name: d
    for d in (
        Driver("pymysql", False, _ALL_TIMEOUTS, "PyMySQL"),
        Driver("mysqldb", False, _ALL_TIMEOUTS, "mysqlclient"),
        Driver("mariadbconnector", False, _ALL_TIMEOUTS, "mariadb"),
        Driver("asyncmy", True, ("connect_timeout", "read_timeout"), "asyncmy"),
        Driver("aiomysql", True, ("connect_timeout",), "aiomysql"),
    )
}

_DEFAULT_DRIVER = "mysqldb"  # SQLAlchemy's driver for a plain mysql:// or mariadb:// URL


def _names(is_async: bool) -> str:
    return ", ".join(repr(d.name) for d in DRIVERS.values() if d.is_async == is_async)


def driver_of(url: URL, what: str, *, is_async: bool) -> Driver:
    """The driver of ``url``; ``ValueError`` naming ``what`` for one this factory cannot use.

    Checked when the engine is built: an unsupported or wrong-mode driver would otherwise
    fail only at the first query. Messages name the driver, never the URL (or its password).
    """
    name = url.drivername.partition("+")[2] or _DEFAULT_DRIVER
    driver = DRIVERS.get(name)
    factory = "rwsplit.create_async_engine" if is_async else "rwsplit.create_engine"
    if driver is None:
        raise ValueError(
            f"{what} uses the driver {name!r}, which rwsplit does not support; "
            f"{factory} supports {_names(is_async)} (e.g. mysql+{'asyncmy' if is_async else 'pymysql'}://…)"
        )
    if driver.is_async and not is_async:
        raise ValueError(
            f"{what} uses the async driver {name!r}: use rwsplit.create_async_engine for it, "
            f"or a sync driver ({_names(False)}) with rwsplit.create_engine"
        )
    if not driver.is_async and is_async:
        raise ValueError(
            f"{what} uses the sync driver {name!r}: use rwsplit.create_engine for it, "
            f"or an async driver ({_names(True)}) with rwsplit.create_async_engine"
        )
    return driver


def bounded_connect_args(driver: Driver, engine_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``connect_args`` with rwsplit's default timeouts added under the names ``driver`` accepts.

    Drivers wait forever on a server that stopped answering unless told otherwise; a timeout
    the driver does not know would make every connect fail, so only its own are set.
    """
    args = dict(engine_kwargs.get("connect_args") or {})
    for key in driver.timeouts:
        args.setdefault(key, DEFAULT_TIMEOUTS[key])
    return args


def error_number(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error (or of a SQLAlchemy error wrapping one).

    PyMySQL, MySQLdb, asyncmy and aiomysql put it in ``args[0]``; MariaDB Connector/Python in
    ``errno``. None for other errors (an ``OSError``'s errno is not a MySQL number).
    """
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError) or type(orig).__module__ == "builtins":
        return None
    errno = getattr(orig, "errno", None)
    if isinstance(errno, int) and not isinstance(errno, bool):
        return errno
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return args[0]
    return None


def error_message(exc: BaseException) -> str:
    """A driver error's message without its number (``args[1]``, or MariaDB's ``args[0]``)."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    texts = [a for a in args if isinstance(a, str)]
    return texts[0] if texts else str(orig)


# ------------------------------------------------------------------ PyMySQL socket timeouts
class _KernelTimedReads(io.RawIOBase):
    """Reads of a blocking socket whose timeout the kernel enforces (``SO_RCVTIMEO``).

    The kernel answers an expired timeout with EAGAIN, which :class:`socket.SocketIO` would turn
    into "no data yet"; here it is the ``TimeoutError`` PyMySQL gets from a Python-level timeout,
    so the driver raises its usual 2013 "Lost connection ... (timed out)".
    """

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError as exc:
            raise TimeoutError("timed out") from exc


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO``; never zero (the kernel's "no timeout")."""
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    return struct.pack("ll", whole, max(micros, 1) if whole == 0 else micros)


_TIMERS = tuple(
    getattr(signal, name)
    for name in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")
    if hasattr(signal, name)
)


def _periodic_signals() -> bool:
    """An interval timer is running: its signals would restart a kernel timeout at every tick
    (Python retries an interrupted ``recv`` with the full timeout), so reads could wait forever."""
    return any(signal.getitimer(timer)[1] > 0 for timer in _TIMERS)


def _pymysql_kernel_timeouts(connection: Any) -> None:
    """Move a PyMySQL connection's read/write timeouts from Python to the kernel.

    With a Python-level socket timeout every recv and send is preceded by a poll(), each
    releasing and re-taking the GIL: under 8 threads that cost ~10 % of throughput (README
    "Performance"). Moved only where the kernel's timeouts mean the same: equal read and write
    timeouts (PyMySQL then never calls ``settimeout`` again) on a real, plain TCP or Unix socket
    (not TLS; not gevent's or eventlet's, whose descriptors never block), and no interval timer
    running. A connection PyMySQL reconnects itself gets its Python-level timeouts back.
    """
    sock = getattr(connection, "_sock", None)
    read = getattr(connection, "_read_timeout", None)
    if (
        not isinstance(sock, _socket.socket)
        or isinstance(sock, ssl.SSLSocket)
        or read is None
        or read != getattr(connection, "_write_timeout", None)
        or getattr(connection, "_current_timeout", None) != read
        or sock.gettimeout() != read
        or _periodic_signals()
    ):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(read))
    sock.settimeout(None)
    connection._rfile = io.BufferedReader(_KernelTimedReads(sock))


def _pymysql_python_timeouts(connection: Any) -> None:
    """Give a connection on the kernel's timeouts PyMySQL's own back (an interval timer started)."""
    rfile = getattr(connection, "_rfile", None)
    if not (isinstance(rfile, io.BufferedReader) and isinstance(rfile.raw, _KernelTimedReads)):
        return
    sock = connection._sock
    sock.settimeout(connection._read_timeout)
    connection._rfile = sock.makefile("rb")


# driver name -> (move a new connection's timeouts to the kernel, give them back to the driver)
_KERNEL_TIMEOUTS: Mapping[str, tuple[Callable[[Any], None], Callable[[Any], None]]] = {
    "pymysql": (_pymysql_kernel_timeouts, _pymysql_python_timeouts)
}


def use_kernel_timeouts(engine: Engine, driver: Driver) -> None:
    """New connections of ``engine`` have their driver's socket timeouts enforced by the kernel,
    where the driver would poll before every read (PyMySQL; the C drivers already do it in C).

    A pooled connection goes back to the driver's own timeouts when it is checked out while an
    interval timer runs (started after it connected): each tick would restart the kernel's.
    """
    hooks = _KERNEL_TIMEOUTS.get(driver.name)
    if hooks is None:
        return
    apply, give_back = hooks

    def applying(connect: Callable[..., Any]) -> Callable[..., Any]:
        def connect_with_kernel_timeouts(*cargs: Any, **cparams: Any) -> Any:
            connection = connect(*cargs, **cparams)
            apply(connection)
            return connection

        return connect_with_kernel_timeouts

    wrap_dialect(engine, "connect", applying)

    @event.listens_for(engine, "checkout")
    def _timer_started(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if _periodic_signals():
            give_back(dbapi_connection)
