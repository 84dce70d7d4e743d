"""Failover: the Retry policy, which errors mean "connection failed", and the retry loops.

As urllib3's ``util/retry.py``: the immutable policy, the error classification it retries on,
and the loops that apply it (replica reads tried elsewhere, primary connects with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only

from ._validate import check_count, check_seconds
from .classifier import PRIMARY
from .compat import wrap_dialect
from .drivers import error_message, error_number
from .errors import PrimaryUnavailable, describe_error
from .flavor import WAIT_NOT_REACHED

if TYPE_CHECKING:
    from .consistency_state import ConsistencyState
    from .engine import RoutingEngine
    from .monitor import Monitor

__all__ = ["Retry", "is_connection_error"]

RETRIED_ON_PRIMARY = "replica read failed; retried on the primary"  # the hint of the last retry

# Server shutdown, connection killed, can't connect (socket/TCP), server gone, lost connection,
# lost connection reading, disconnected for inactivity (MySQL 8).
_CONNECTION_ERRNOS = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
_LOST_CONNECTION = 2013  # CR_SERVER_LOST: also what every driver raises when read_timeout expires
_ER_WRONG_VALUE_FOR_VAR = 1231  # what a timed-out wait sent with its read fails with (Flavor.wait_prefix)
_AT_CONNECT = "_rwsplit_at_connect"  # set on a driver error raised while opening a replica connection
_ELAPSED = "_rwsplit_elapsed"  # set on a driver error raised by a replica statement: its seconds
_READ_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Retry:
    """How hard to try before giving up (immutable, like urllib3's ``Retry``).

    ``replica_attempts``/``replica_timeout``: other replicas tried (at most that many, for at most
    that long) for a read that failed with a connection error before it goes to the primary.
    ``primary_attempts``/``backoff``/``max_backoff``/``primary_timeout``: new
    connections to the primary are retried with exponential backoff until either bound is hit,
    then :class:`~rwsplit.errors.PrimaryUnavailable` is raised. A statement that may have reached
    the primary is never re-sent.
    """

    replica_attempts: int = 2
    replica_timeout: float = 5.0
    primary_attempts: int = 4
    backoff: float = 0.1
    max_backoff: float = 1.0
    primary_timeout: float = 3.0

    def __post_init__(self) -> None:
        check_count("Retry.replica_attempts", self.replica_attempts, 0, 100)
        check_seconds("Retry.replica_timeout", self.replica_timeout, allow_zero=False)
        check_count("Retry.primary_attempts", self.primary_attempts, 1, 100)
        check_seconds("Retry.backoff", self.backoff)
        check_seconds("Retry.max_backoff", self.max_backoff)
        check_seconds("Retry.primary_timeout", self.primary_timeout, allow_zero=False)

    def _primary_connects(self, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
        """Connection errors of a new primary connection, retried with bounded exponential backoff
        (``sleep`` waits between attempts)."""
        return tenacity.Retrying(
            sleep=sleep,
            stop=tenacity.stop_after_attempt(self.primary_attempts)
            | tenacity.stop_after_delay(self.primary_timeout),
            wait=tenacity.wait_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception(is_connection_error),
            reraise=True,
        )

    def _replica_reads(self) -> tenacity.Retrying:
        """A read whose replica failed, tried on other replicas within the replica bounds."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.replica_attempts)
            | tenacity.stop_after_delay(self.replica_timeout),
            retry=tenacity.retry_if_exception_type(_ReplicaReadFailed),
            reraise=True,
        )


class _ReplicaReadFailed(Exception):
    """A read failed on a replica's connection: the one exception tenacity retries elsewhere."""


# ------------------------------------------------------------------ error classification
def is_connection_error(exc: BaseException) -> bool:
    """True for errors that say the connection failed (not the statement), whatever the driver.

    Any error while opening a replica connection counts (refused, too many connections, access
    denied …): no statement ran, so the read may go elsewhere. Otherwise: SQLAlchemy saw a
    disconnect, the driver raised an ``InterfaceError`` (MariaDB Connector/Python's lost
    connection), a connection error number, or a socket error or timeout.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is not None:
            exc = exc.orig
    if getattr(exc, _AT_CONNECT, False):
        return True
    if any(cls.__name__ == "InterfaceError" for cls in type(exc).__mro__):
        return True
    if error_number(exc) in _CONNECTION_ERRNOS:
        return True
    return isinstance(exc, (OSError, asyncio.TimeoutError))


def at_connect(exc: BaseException) -> bool:
    """Did this error come from opening a new replica connection (marked at ``do_connect``)?"""
    return bool(getattr(getattr(exc, "orig", exc), _AT_CONNECT, False))


def _timed_out(exc: BaseException, read_timeout: float) -> bool:
    """A statement ran past ``read_timeout`` (errno 2013, lost connection).

    PyMySQL says "(timed out)" and asyncmy "(read timeout)"; MySQLdb and MariaDB Connector/Python
    raise the same 2013 as for a killed server, told apart by how long the statement ran
    (recorded by :func:`mark_connect_errors`).
    """
    orig = getattr(exc, "orig", None) or exc
    if error_number(orig) != _LOST_CONNECTION:
        return False
    message = error_message(orig)
    if "timed out" in message or "read timeout" in message:
        return True
    elapsed = getattr(orig, _ELAPSED, None)
    return isinstance(elapsed, float) and elapsed >= 0.9 * read_timeout


def _slow_statement(monitor: Monitor, replica: Engine, name: str, exc: BaseException) -> bool:
    """A timed-out read on a replica the monitor probed fine after the read began: the statement
    was slow (the caller's error), the server is alive. A frozen server fails its probes."""
    read_timeout = _READ_TIMEOUTS.get(replica, 60.0)
    if not _timed_out(exc, read_timeout):
        return False
    state = monitor.snapshot().replica(name)
    if state is None or not state.reachable or state.tripped or state.measured_at is None:
        return False
    return state.measured_at > time.time() - read_timeout


def mark_connect_errors(engine: Engine, read_timeout: float) -> None:
    """Errors while opening a replica connection are marked, whatever the driver raises; errors
    of its statements carry how long the statement ran.

    The dialect's own ``connect``/``do_execute`` are wrapped (not ``do_connect``/``do_execute``
    listeners): an event listener would make SQLAlchemy dispatch dialect events on every
    statement of that engine. ``read_timeout`` (the driver's, 60 s when it has none) tells a
    slow statement from a dead server (:func:`_slow_statement`).
    """

    def marking(connect: Callable[..., Any]) -> Callable[..., Any]:
        def marked_connect(*cargs: Any, **cparams: Any) -> Any:
            try:
                return connect(*cargs, **cparams)
            except Exception as exc:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, _AT_CONNECT, True)
                raise

        return marked_connect

    # Fixed arguments, as SQLAlchemy passes them (the context last, positionally): ~0.4 µs less
    # per statement than *args/**kwargs.
    def timing(execute: Callable[..., Any]) -> Callable[..., Any]:
        def timed_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> Any:
            started = time.monotonic()
            try:
                return execute(cursor, statement, parameters, context)
            except Exception as exc:
                _mark_elapsed(exc, started)
                raise

        return timed_execute

    def timing_no_params(execute: Callable[..., Any]) -> Callable[..., Any]:
        def timed_execute(cursor: Any, statement: str, context: Any = None) -> Any:
            started = time.monotonic()
            try:
                return execute(cursor, statement, context)
            except Exception as exc:
                _mark_elapsed(exc, started)
                raise

        return timed_execute

    wrap_dialect(engine, "connect", marking)
    wrap_dialect(engine, "do_execute", timing)
    wrap_dialect(engine, "do_execute_no_params", timing_no_params)
    _READ_TIMEOUTS[engine] = read_timeout


def _mark_elapsed(exc: BaseException, started: float) -> None:
    """Note on a statement's error how long the statement ran (see :func:`_slow_statement`)."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _ELAPSED, time.monotonic() - started)


# ------------------------------------------------------------------ retry loops
def _event_loop_sleep(seconds: float) -> None:
    """Sleep without blocking the event loop: an async dialect connects inside SQLAlchemy's
    greenlet, which may await the loop."""
    await_only(asyncio.sleep(seconds))


def retrying_connect(engine: Engine, retry: Retry, masked: str) -> None:
    """New primary connections retry connection errors with bounded backoff, then PrimaryUnavailable.

    The dialect's ``connect`` is wrapped, not hooked with a ``do_connect`` listener: a dialect
    listener makes SQLAlchemy dispatch dialect events on every statement of the engine, and the
    app's own ``do_connect`` listeners (a fresh password or token per connect) still run first.
    For an async dialect (``engine`` is then an ``AsyncEngine``'s ``sync_engine``) the backoff
    awaits ``asyncio.sleep``: ``time.sleep`` would stop every task of the event loop.
    """
    sleep = _event_loop_sleep if engine.dialect.is_async else time.sleep

    def retrying(connect: Callable[..., Any]) -> Callable[..., Any]:
        def retried_connect(*cargs: Any, **cparams: Any) -> Any:
            started = time.monotonic()
            attempts = retry._primary_connects(sleep)
            try:
                return attempts(connect, *cargs, **cparams)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                tries = attempts.statistics.get("attempt_number", 1)
                raise PrimaryUnavailable(
                    f"primary {masked} unreachable after {tries} attempts in "
                    f"{time.monotonic() - started:.1f} s: {describe_error(exc)}"
                ) from None

        return retried_connect

    wrap_dialect(engine, "connect", retrying)


def replica_failed(
    engine: RoutingEngine,
    state: ConsistencyState,
    target: str,
    exc: BaseException,
    forget: Callable[[str], None],
) -> bool:
    """A replica's connection failed under a statement: True once it is out, at once for everyone
    and for good for this transaction; False for a slow statement on a live replica (its
    connection is only forgotten)."""
    forget_only = _slow_statement(engine.monitor, engine.engines[target], target, exc)
    if not forget_only:
        engine._report_replica_failure(target, exc)
        state.replica_failed(target)
    forget(target)
    return not forget_only


def _replica_out(
    engine: RoutingEngine,
    state: ConsistencyState,
    exc: BaseException,
    last_target: Callable[[], str | None],
    forget: Callable[[str], None],
) -> bool:
    """The last attempt failed on a replica's connection and that replica is now out: the read may
    go elsewhere. False for errors of the statement, of the primary, or of a slow statement."""
    target = last_target()
    if target is None or target == PRIMARY or not is_connection_error(exc):
        return False
    out = replica_failed(engine, state, target, exc, forget)
    if out:
        engine._observer.failed_over(target, describe_error(exc))
    return out


def wait_not_reached(error: BaseException) -> bool:
    """Whether a statement failed because the causal wait sent with it timed out
    (:func:`rwsplit.causal.arm_wait`): the read did not run, so it is safe to run elsewhere."""
    return error_number(error) == _ER_WRONG_VALUE_FOR_VAR and WAIT_NOT_REACHED in error_message(error)


def recover_read(
    engine: RoutingEngine,
    state: ConsistencyState,
    error: DBAPIError,
    attempt: Callable[[str | None], Any],
    last_target: Callable[[], str | None],
    forget: Callable[[str], None],
) -> Any:
    """After a failed statement: re-raise, or retry a failed replica read elsewhere.

    ``attempt(hint)`` runs the statement once more, routed afresh (``hint`` sends it to the
    primary); ``last_target()`` says where the last attempt went; ``forget(name)`` drops that
    replica's dead connection. Other replicas are tried within ``Retry.replica_attempts``/
    ``replica_timeout``, then the primary. Nothing that failed on the primary is re-sent.

    A read whose causal wait went with it and timed out did not run: the state gave that position
    up, so routed afresh it goes where the position is known applied, else to the primary.
    """
    if wait_not_reached(error):
        try:
            return attempt(None)
        except DBAPIError as again:
            if wait_not_reached(again):  # a later position to wait for meanwhile: no second wait
                return attempt(RETRIED_ON_PRIMARY)
            return recover_read(engine, state, again, attempt, last_target, forget)
    if not _replica_out(engine, state, error, last_target, forget):
        raise error
    retry = engine.policy.retry
    if retry.replica_attempts:
        with contextlib.suppress(_ReplicaReadFailed):
            for trying in retry._replica_reads():
                with trying:
                    try:
                        return attempt(None)
                    except DBAPIError as exc:
                        if not _replica_out(engine, state, exc, last_target, forget):
                            raise
                        raise _ReplicaReadFailed from exc
    return attempt(RETRIED_ON_PRIMARY)
