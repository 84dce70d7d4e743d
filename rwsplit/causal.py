"""Causal reads: the GTID of each write commit, consistency tokens, and request scopes.

A *position* (:class:`~rwsplit.gtid.Position`) says "everything up to these transactions".
Sessions in ``read_your_writes="causal"`` mode record the GTID of every transaction they commit
(MariaDB's ``last_gtid``, from the COMMIT's OK packet where the driver shows it, else read on the
same connection right after ``COMMIT``: :mod:`rwsplit.session_track`) and later read only where
that position has been applied. A token carries a position between sessions, processes and requests.

Tokens themselves (format, signatures, checks) are :mod:`rwsplit.tokens`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection, Engine

from .compat import wrap_dialect
from .failover import wait_not_reached
from .flavor import MARIADB, MYSQL, Flavor
from .gtid import Position
from .session_track import commit_tracker
from .tokens import SIGNED_VERSION, decode_token, encode_token, token_cluster

__all__ = [
    "consistency",
    "ConsistencyScope",
    "current_scope",
    "applied_position",
    "arm_wait",
    "disarm",
    "install_commit_capture",
    "install_wait_with_read",
    "wait_and_read_applied",
]

log = logging.getLogger("rwsplit")

_capture_requested: ContextVar[bool] = ContextVar("rwsplit_capture_gtid", default=False)
_captured: ContextVar[str | None] = ContextVar("rwsplit_captured_gtid", default=None)
_scope: ContextVar[ConsistencyScope | None] = ContextVar("rwsplit_consistency_scope", default=None)


class ConsistencyScope:
    """A request scope: reads wait for ``position``; commits inside it advance it.

    Its incoming token is verified by the first session that joins (with that engine's key,
    cluster and primary); until then it is only known to be well formed.
    """

    def __init__(self, position: Position, cluster: str | None, pending: str | None = None) -> None:
        self.position = position
        self.cluster = cluster
        self.gave_up = Position()  # positions a causal wait already timed out for (one wait each)
        self._pending = pending
        self._encode: Callable[[Position], str] | None = None

    def advance(self, position: Position) -> None:
        self.position = self.position.merge(position)

    def join(
        self,
        cluster: str | None,
        verify: Callable[[str], Position] | None = None,
        encode: Callable[[Position], str] | None = None,
    ) -> None:
        """A session of ``cluster`` uses this scope: the first one names the scope's cluster and
        verifies its incoming token (``verify``: the engine's decoder, which raises ``ValueError``).

        A scope (its incoming token, its position) belongs to one cluster; a session of another
        raises ``ValueError`` naming both, rather than waiting for a foreign position.
        """
        if cluster is None:
            return
        if self.cluster is not None and cluster != self.cluster:
            raise ValueError(
                f"this consistency scope belongs to cluster {self.cluster} (its token or its first "
                f"session); a session of cluster {cluster} cannot use it"
            )
        self.cluster = cluster
        if self._pending is not None and verify is not None:
            self.position = self.position.merge(verify(self._pending))
            self._pending = None
        if encode is not None and self._encode is None:
            self._encode = encode

    def token(self) -> str:
        """The scope's position as a token, e.g. for a response header or cookie.

        ``""`` when the scope holds no position (nothing read or written through a causal
        session, and no incoming token); ``rwsplit.consistency("")`` accepts it back. Before any
        session joined, the incoming token as it came.
        """
        if self._pending is not None:
            return self._pending
        if not self.position:
            return ""
        if self.cluster is None:  # only positions joined through a cluster's session get here
            raise ValueError("this scope holds a position of no known cluster")
        if self._encode is not None:
            return self._encode(self.position)
        return encode_token(self.position, self.cluster)


@contextlib.contextmanager
def consistency(token: str | None = None) -> Iterator[ConsistencyScope]:
    """Make causal sessions in this block read at least ``token``'s position (None or "": nothing yet).

    ``with rwsplit.consistency(request.headers.get("X-Consistency")) as scope: …`` then send
    ``scope.token()`` back. A malformed or corrupted token raises ``ValueError`` before the block
    runs; its signature, cluster and position are checked by the first causal session that uses
    the scope (``ValueError`` there).
    """
    if token:
        cluster = token_cluster(token)
        if cluster is None or not token.startswith(f"rw{SIGNED_VERSION}."):
            decode_token(token)  # malformed, corrupted, wrong version: refused now
        scope = ConsistencyScope(Position(), cluster, pending=token)
    else:
        scope = ConsistencyScope(Position(), None)
    reset = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(reset)


def current_scope() -> ConsistencyScope | None:
    return _scope.get()


def install_commit_capture(engine: Engine) -> None:
    """After a COMMIT that asked for it, learn the commit's GTID on the same connection.

    On MariaDB through a driver that shows OK packets (PyMySQL, MariaDB Connector/Python: see
    :mod:`rwsplit.session_track`) the COMMIT's own OK packet carries it; otherwise, or when that
    packet did not report one, it is read with a query right after the COMMIT. The server's
    flavour (the dialect's ``is_mariadb``, known once it connected: any driver) says which
    variable holds it. Only commits of causal sessions ask (:func:`request_capture`), so other
    sessions pay nothing.
    """
    dialect = engine.dialect
    tracked_commit = commit_tracker(engine)

    def capturing(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def do_commit(dbapi_connection: Any) -> None:
            if not _capture_requested.get():
                original(dbapi_connection)
                return
            _capture_requested.set(False)
            mariadb = getattr(dialect, "is_mariadb", False)
            if tracked_commit is not None and mariadb:
                gtid = tracked_commit(dbapi_connection, original)
                if gtid is not None:
                    _captured.set(gtid)
                    return
            else:
                original(dbapi_connection)
            sql = (MARIADB if mariadb else MYSQL).commit_position_sql
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
            finally:
                cursor.close()
            _captured.set(row[0] if row and row[0] else None)

        return do_commit

    wrap_dialect(engine, "do_commit", capturing)


def request_capture() -> None:
    """The next primary COMMIT in this thread/task records its GTID (see :func:`take_captured`)."""
    _captured.set(None)
    _capture_requested.set(True)


def take_captured() -> str | None:
    """The GTID text recorded by the last requested capture, once."""
    value = _captured.get()
    _captured.set(None)
    _capture_requested.set(False)
    return value


@functools.lru_cache(maxsize=4)
def _wait_statement(sql: str) -> TextClause:
    """The wait as a ``text()`` with bound parameters (each dialect renders its paramstyle), made once:
    SQLAlchemy then finds it compiled in its cache."""
    return text(sql)


def wait_and_read_applied(
    connection: Connection, flavor: Flavor, position: Position, timeout: float
) -> tuple[bool, Position]:
    """Wait at most ``timeout`` seconds on a replica connection until it applied ``position``:
    whether it did, and what the replica had applied by the end (``position`` included if it did).

    One round trip before a causal read. It runs as a SQLAlchemy statement, so tracing, ``echo``
    and error handling see it like any other (the OpenTelemetry integration marks its span).
    """
    wait = _wait_statement(flavor.applied_wait_sql(":position", ":timeout"))
    result, applied = connection.execute(wait, {"position": str(position), "timeout": timeout}).one()
    reached = result == 0
    return reached, applied_position(flavor, applied, position if reached else None)


def applied_position(flavor: Flavor, value: object, reached: Position | None = None) -> Position:
    """What a wait's second column says the replica applied (a driver may give ``bytes``), with the
    position the wait reached, if it did. Unreadable or NULL: only the reached position."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        applied = flavor.parse_position(value if isinstance(value, str) else None, role="replica")
    except ValueError:
        applied = Position()
    return applied if reached is None else applied.merge(reached)


# ------------------------------------------------------------------ a wait sent with the read
_ARMED = "_rwsplit_armed_wait"  # attribute of the SQLAlchemy Connection whose next statement waits
_PREFIXABLE = re.compile(r"\s*(?:SELECT|WITH|\()", re.IGNORECASE).match  # what SET STATEMENT … FOR takes


class _ArmedWait(NamedTuple):
    prefix: str  # Flavor.wait_prefix
    # (seconds, reached) once the statement ended: reached None if it failed for another reason
    done: Callable[[float, bool | None], None]


def arm_wait(connection: Connection, prefix: str, done: Callable[[float, bool | None], None]) -> None:
    """Make the next statement on ``connection`` (a replica's) wait first, in the same round trip.

    ``prefix`` is :meth:`Flavor.wait_prefix`; ``done(seconds, reached)`` is told how it ended. The
    caller runs its read next and then calls :func:`disarm`, so that a wait whose read never
    reached the server (an error before) cannot attach to a later statement.
    """
    setattr(connection, _ARMED, _ArmedWait(prefix, done))


def disarm(connection: Connection) -> None:
    """Drop a wait :func:`arm_wait` left on ``connection`` that no statement took."""
    connection.__dict__.pop(_ARMED, None)


def _with_wait(
    cursor: Any, statement: str, armed: _ArmedWait, run: Callable[[str], Any], *, alone: bool = False
) -> Any:
    """Run ``run(statement)`` after ``armed``'s wait: as one statement when the server takes it
    (a SELECT), else (or ``alone``: an executemany) as a wait of its own on the same cursor first."""
    started = time.perf_counter()
    try:
        if not alone and _PREFIXABLE(statement):
            result = run(armed.prefix + statement)
        else:  # SHOW, DESCRIBE, a leading comment …: SET STATEMENT … FOR cannot carry it
            cursor.execute(armed.prefix + "SELECT 1")
            cursor.fetchall()
            result = run(statement)
    except Exception as exc:
        try:  # False: timed out, the read did not run; None: it failed otherwise
            armed.done(time.perf_counter() - started, False if wait_not_reached(exc) else None)
        except Exception:  # never in place of the statement's own error
            log.exception("rwsplit: recording a causal wait failed")
        raise
    armed.done(time.perf_counter() - started, True)
    return result


def _carrying(alone: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A dialect ``do_execute``/``do_executemany`` wrapper that runs a wait armed on the statement's
    Connection first (``alone``: always as a statement of its own). SQLAlchemy passes the
    execution context last, positionally; fixed arguments keep the common case ~0.1 µs."""

    def wrap(execute: Callable[..., Any]) -> Callable[..., Any]:
        def carried(cursor: Any, statement: str, parameters: Any, context: Any = None) -> Any:
            # The wait armed on the statement's Connection, taken off it: it goes with this statement.
            armed = context.root_connection.__dict__.pop(_ARMED, None) if context is not None else None
            if armed is None:
                return execute(cursor, statement, parameters, context)
            return _with_wait(
                cursor, statement, armed, lambda sql: execute(cursor, sql, parameters, context), alone=alone
            )

        return carried

    return wrap


def _carrying_no_params(execute: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_carrying` for ``do_execute_no_params``."""

    def carried(cursor: Any, statement: str, context: Any = None) -> Any:
        armed = context.root_connection.__dict__.pop(_ARMED, None) if context is not None else None
        if armed is None:
            return execute(cursor, statement, context)
        return _with_wait(cursor, statement, armed, lambda sql: execute(cursor, sql, context))

    return carried


def install_wait_with_read(engine: Engine) -> None:
    """Let a replica engine's statements carry a wait armed by :func:`arm_wait`.

    The dialect's ``do_execute``, ``do_execute_no_params`` and ``do_executemany`` are wrapped (a
    dialect event would be dispatched on every statement); events, ``echo`` and tracing see the
    statement as written.
    """
    wrap_dialect(engine, "do_execute", _carrying(alone=False))
    wrap_dialect(engine, "do_execute_no_params", _carrying_no_params)
    wrap_dialect(engine, "do_executemany", _carrying(alone=True))
