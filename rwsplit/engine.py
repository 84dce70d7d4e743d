"""``rwsplit.create_engine``: one primary Engine, replica Engines, the monitor and the router.

:class:`RoutingEngine` owns the SQLAlchemy engines and the background monitor; sessions
(:mod:`rwsplit.session`) and :class:`RoutingConnection` (Core) route every statement through
its :class:`~rwsplit.router.Router`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pymysql
import sqlalchemy as sa
import tenacity
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError

from ._validate import check_choice, check_seconds
from .balancer import Weighted, resolve_balancer
from .causal import (
    cluster_id,
    decode_token,
    encode_token,
    install_commit_capture,
    named_cluster_id,
    request_capture,
    take_captured,
)
from .classifier import PRIMARY
from .consistency_state import ConsistencyState
from .errors import PrimaryUnavailable
from .gtid import Position, parse_mariadb, parse_mysql
from .monitor import LAG_SOURCES, Monitor
from .policy import READ_YOUR_WRITES, Retry, RoutingPolicy
from .router import RETRIED_ON_PRIMARY, Decision, Router
from .state import ServerReport, ServerSpec

__all__ = [
    "create_engine",
    "RoutingEngine",
    "RoutingConnection",
    "RoutingTransaction",
    "ServerReport",
    "parse_url_list",
]

log = logging.getLogger("rwsplit")

_MYSQL_BACKENDS = ("mysql", "mariadb")
_CONNECTION_ERRNOS = frozenset({1053, 1927, 2003, 2006, 2013, 2055})
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_URL_START = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def parse_url_list(text: str) -> list[str]:
    """Split a configuration string of URLs (comma and/or whitespace separated) into a list.

    ``parse_url_list(os.environ["REPLICA_URLS"])``; a comma inside a password must be written
    ``%2C``, as in any URL.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_url_list takes a str, got {type(text).__name__}")
    return [part for part in _URL_START.split(text.strip().strip(",")) if part.strip()]


def _coerce_url(value: object, what: str) -> URL:
    if isinstance(value, URL):
        url = value
    elif isinstance(value, str):
        try:
            url = sa.make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                f"{what} is not a valid SQLAlchemy URL; expected mysql+pymysql://user:password@host:port/db"
            ) from None
    else:
        raise TypeError(f"{what} must be a URL string or sqlalchemy.URL, got {type(value).__name__}")
    if url.get_backend_name() not in _MYSQL_BACKENDS:
        raise ValueError(
            f"{what} uses {url.get_backend_name()!r}; rwsplit routes MySQL/MariaDB only "
            f"(mysql+pymysql://… or mariadb+pymysql://…)"
        )
    if not url.host and not url.query.get("unix_socket"):
        raise ValueError(f"{what} names no host: {_mask(url)}")
    return url


def coerce_servers(
    primary: object, replicas: Sequence[object], *, primary_label: str, replica_label: str
) -> tuple[URL, list[URL]]:
    """Parse and check the primary and replica URLs: valid, MySQL/MariaDB, no server twice.

    Errors name the offending option (``primary_label``, ``f"{replica_label} #n"``) and never
    echo a password.
    """
    primary_url = _coerce_url(primary, primary_label)
    replica_urls = [_coerce_url(r, f"{replica_label} #{i + 1}") for i, r in enumerate(replicas)]
    seen = {_server_key(primary_url): primary_label}
    for i, r in enumerate(replica_urls):
        key = _server_key(r)
        if key in seen:
            raise ValueError(f"{replica_label} #{i + 1} ({_mask(r)}) is the same server as {seen[key]}")
        seen[key] = f"{replica_label} #{i + 1}"
    return primary_url, replica_urls


def _mask_key(key: object) -> str:
    """A user-supplied key for an error message, with any URL password hidden."""
    text = str(key)
    if "://" in text:
        try:
            return _mask(sa.make_url(text))
        except (ArgumentError, ValueError):
            return "<a URL>"
    return text[:80]


def _mask(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _server_key(url: URL) -> tuple[str, int, str]:
    host = (url.host or "localhost").lower()
    if host == "localhost" and url.query.get("unix_socket"):
        return (host, 0, str(url.query["unix_socket"]))
    return (host, int(url.port or 3306), "")


_AT_CONNECT = "_rwsplit_at_connect"  # set on a driver error raised while opening a replica connection
_READ_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_ENGINES: weakref.WeakSet[RoutingEngine] = weakref.WeakSet()


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that say the connection failed (not the statement).

    Any error while opening a replica connection counts (refused, too many connections, access
    denied …): no statement ran, so the read may go elsewhere.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig  # type: ignore[assignment]
    if getattr(exc, _AT_CONNECT, False):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    if isinstance(exc, pymysql.err.OperationalError) and exc.args:
        return exc.args[0] in _CONNECTION_ERRNOS
    return isinstance(exc, (ConnectionError, TimeoutError))


def _at_connect(exc: BaseException) -> bool:
    """Did this error come from opening a new replica connection (marked at ``do_connect``)?"""
    return bool(getattr(getattr(exc, "orig", exc), _AT_CONNECT, False))


def _timed_out(exc: BaseException) -> bool:
    """A statement ran past ``read_timeout``/``write_timeout`` (errno 2013 "... (timed out)")."""
    orig = getattr(exc, "orig", exc)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return len(args) >= 2 and args[0] == 2013 and "timed out" in str(args[1])


def _slow_statement(monitor: Monitor, replica: Engine, name: str, exc: BaseException) -> bool:
    """A timed-out read on a replica the monitor probed fine after the read began: the statement
    was slow (the caller's error), the server is alive. A frozen server fails its probes."""
    if not _timed_out(exc):
        return False
    state = monitor.snapshot().replica(name)
    if state is None or not state.reachable or state.tripped or state.measured_at is None:
        return False
    return state.measured_at > time.time() - _READ_TIMEOUTS.get(replica, 60.0)


def _mark_connect_errors(engine: Engine) -> None:
    """Errors while opening a replica connection are marked, whatever the driver raises.

    The dialect's own ``connect`` is wrapped (not a ``do_connect`` listener): an event listener
    would make SQLAlchemy dispatch dialect events on every statement of that engine.
    """
    dialect = engine.dialect
    connect = dialect.connect

    def marked_connect(*cargs: Any, **cparams: Any) -> Any:
        try:
            return connect(*cargs, **cparams)
        except Exception as exc:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _AT_CONNECT, True)
            raise

    dialect.connect = marked_connect  # type: ignore[method-assign]


def _fresh_connection_check(engine: Engine, connect_args: Mapping[str, Any]) -> Callable[[], None]:
    """Open and close one new DBAPI connection as ``engine`` would (same URL and connect_args)."""

    def check() -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        conn = engine.dialect.connect(*cargs, **{**cparams, **connect_args})
        conn.close()

    return check


def _after_fork_in_child() -> None:
    """Pools are not shared across fork: the child forgets the parent's connections unclosed."""
    for routing in list(_ENGINES):
        for engine in routing._all_engines():
            with contextlib.suppress(Exception):
                engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


class _ReplicaReadFailed(Exception):
    """A read failed on a replica's connection: the one exception tenacity retries elsewhere."""


def _checked_out(engines: Mapping[str, Engine], name: str) -> int:
    checkedout = getattr(engines[name].pool, "checkedout", None)
    return int(checkedout()) if checkedout is not None else 0


class RoutingEngine:
    """The primary and replica engines, their monitor and router. Make it with :func:`create_engine`."""

    def __init__(
        self,
        primary: Engine,
        replicas: Mapping[str, Engine],
        monitor: Monitor,
        router: Router,
        urls: Mapping[str, str],
        cluster: str,
        primary_reads: Engine,
    ) -> None:
        self.cluster_id = cluster
        self.primary = primary
        self._primary_reads = primary_reads
        self._replicas = dict(replicas)
        self.replicas: tuple[Engine, ...] = tuple(self._replicas.values())
        self.monitor = monitor
        self.router = router
        self.policy: RoutingPolicy = router.policy
        self._urls = dict(urls)
        self._engines: dict[str, Engine] = {PRIMARY: primary, **self._replicas}
        self._disposed = False

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(self._replicas)

    def engine_for(self, target: str) -> Engine:
        """The SQLAlchemy Engine of ``"primary"`` or a replica name."""
        return self._engines[target]

    def _all_engines(self) -> tuple[Engine, ...]:
        """Every SQLAlchemy Engine this routing engine owns (pools to dispose)."""
        return (*self._engines.values(), self._primary_reads)

    def bind_for(self, decision: Decision, state: ConsistencyState) -> Engine:
        """The Engine a decision runs on: a replica, the primary's transaction, or the primary in autocommit.

        A replica read that falls back to the primary outside a transaction bound there runs in
        autocommit, like the replica read it replaces: it sees the latest commits and opens no
        snapshot that later reads would be stuck in. Reads sent to the primary on purpose (pins,
        hints, ``use_primary``) join the primary transaction, as in plain SQLAlchemy.
        """
        if not decision.on_primary:
            return self._engines[decision.target]
        if decision.fallback and not (state.tx_on_primary or state.connection_state):
            return self._primary_reads
        return self.primary

    @property
    def engines(self) -> Mapping[str, Engine]:
        """``"primary"`` and each replica name → its SQLAlchemy Engine."""
        return self._engines

    def in_flight(self, name: str) -> int:
        """Connections of that server checked out right now (statements or transactions using it)."""
        return _checked_out(self._engines, name)

    def new_state(
        self,
        *,
        max_lag: float | None = None,
        read_your_writes: str | None = None,
        after: str | None = None,
    ) -> ConsistencyState:
        """A fresh consistency state with this engine's defaults and optional per-session overrides."""
        self.monitor.ensure_running()  # after dispose() or in a forked child: a live monitor again
        policy = self.policy
        mode = policy.read_your_writes if read_your_writes is None else read_your_writes
        check_choice("read_your_writes", mode, READ_YOUR_WRITES)
        lag = policy.max_lag if max_lag is None else check_seconds("max_lag", max_lag)
        state = ConsistencyState(mode, lag, policy.pin_window)
        state.bind_cluster(self.cluster_id)
        if after is not None:
            state.start_after(self.decode_token(after))
        return state

    # ------------------------------------------------------------------ causal reads
    @property
    def flavor(self) -> str:
        """``"mariadb"`` or ``"mysql"``, as the monitor found the primary (MariaDB until it knows)."""
        return self.monitor.flavor(PRIMARY) or "mariadb"

    def parse_position(self, text: str | None) -> Position:
        return parse_mysql(text) if self.flavor == "mysql" else parse_mariadb(text)

    def decode_token(self, token: str) -> Position:
        """The position in a consistency token of this cluster; ``ValueError`` for a bad one."""
        return decode_token(token, self.cluster_id, flavor=self.flavor)

    def encode_token(self, position: Position) -> str:
        return encode_token(position, self.cluster_id)

    def causal_wait(self, connection: Connection, position: Position) -> bool:
        """Wait (at most ``causal_timeout``) on a replica connection until it applied ``position``."""
        fn = "WAIT_FOR_EXECUTED_GTID_SET" if self.flavor == "mysql" else "MASTER_GTID_WAIT"
        result = connection.exec_driver_sql(
            f"SELECT {fn}(%s, %s)", (str(position), self.policy.causal_timeout)
        ).scalar()
        return result == 0

    def report_replica_failure(self, name: str, exc: BaseException) -> None:
        orig = getattr(exc, "orig", exc)
        if _at_connect(exc):
            errno = orig.args[0] if getattr(orig, "args", None) else type(orig).__name__
            self.monitor.mark_down(name, f"new connection refused ({errno})", fresh_connection=True)
        else:
            self.monitor.mark_down(name, f"read failed: {type(orig).__name__}")

    # ------------------------------------------------------------------ read failover
    def _take_out(self, state: ConsistencyState, target: str, exc: BaseException, forget: Any) -> None:
        """A replica's connection failed: out at once for everyone, for good for this transaction."""
        self.report_replica_failure(target, exc)
        state.failed.add(target)
        if state.replica == target:
            state.replica = None
        forget(target)

    def recover_read(
        self,
        state: ConsistencyState,
        error: DBAPIError,
        attempt: Callable[[str | None], Any],
        last_target: Callable[[], str | None],
        forget: Callable[[str], None],
    ) -> Any:
        """After a failed statement: re-raise, or retry a failed replica read elsewhere.

        ``attempt(hint)`` runs the statement once more, routed afresh (``hint`` sends it to the
        primary); ``last_target()`` says where the last attempt went; ``forget(name)`` drops that
        replica's dead connection. Other replicas are tried with tenacity within
        ``Retry.replica_attempts``/``replica_timeout``, then the primary. Nothing that failed on
        the primary is re-sent.
        """
        target = last_target()
        if target in (None, PRIMARY) or not is_connection_error(error):
            raise error
        if _slow_statement(self.monitor, self._engines[target], target, error):
            forget(target)  # its connection is gone; the replica is fine
            raise error
        self._take_out(state, target, error, forget)  # type: ignore[arg-type]
        retry = self.policy.retry
        if retry.replica_attempts:
            retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(retry.replica_attempts)
                | tenacity.stop_after_delay(retry.replica_timeout),
                retry=tenacity.retry_if_exception_type(_ReplicaReadFailed),
                reraise=True,
            )
            with contextlib.suppress(_ReplicaReadFailed):
                for trying in retrying:
                    with trying:
                        try:
                            return attempt(None)
                        except DBAPIError as exc:
                            target = last_target()
                            if target in (None, PRIMARY) or not is_connection_error(exc):
                                raise
                            if _slow_statement(self.monitor, self._engines[target], target, exc):
                                forget(target)
                                raise
                            self._take_out(state, target, exc, forget)  # type: ignore[arg-type]
                            raise _ReplicaReadFailed from exc
        return attempt(RETRIED_ON_PRIMARY)

    def await_position(
        self,
        state: ConsistencyState,
        decision: Decision,
        connect: Callable[[], Connection],
        forget: Callable[[str], None],
    ) -> Decision:
        """Run a causal decision's bounded wait on its replica; the primary if it is not reached."""
        target, position = decision.target, decision.wait_for
        assert position is not None
        try:
            reached = self.causal_wait(connect(), position)
        except DBAPIError as exc:
            if not is_connection_error(exc):
                raise
            if _slow_statement(self.monitor, self._engines[target], target, exc):
                forget(target)  # a slow wait on a live replica: the primary serves, nobody is marked
            else:
                self._take_out(state, target, exc, forget)
            reached = False
        if not reached:
            state.replica = None
            return Decision(PRIMARY, "causal: replica did not reach the position in time", fallback=True)
        state.confirm(target, position)
        state.advance(position)
        state.replica = target
        return decision

    def connect(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> RoutingConnection:
        """A Core connection that routes each statement (see :class:`RoutingConnection`)."""
        return RoutingConnection(
            self, self.new_state(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        )

    @contextlib.contextmanager
    def begin(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> Iterator[RoutingConnection]:
        """``with engine.begin() as conn:`` — a routed connection whose work commits on success.

        On an exception the transaction rolls back and the exception propagates; the connection
        is closed either way.
        """
        with (
            self.connect(max_lag=max_lag, read_your_writes=read_your_writes, after=after) as conn,
            conn.begin(),
        ):
            yield conn

    @contextlib.contextmanager
    def read_snapshot(
        self,
        *,
        max_lag: float | None = None,
        read_your_writes: str | None = None,
        after: str | None = None,
    ) -> Iterator[Connection]:
        """A consistent read-only transaction on one eligible replica (or the primary as fallback).

        ``with engine.read_snapshot() as conn:`` — every statement in the block sees the same
        snapshot (``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``); bind a plain
        ``sqlalchemy.orm.Session(bind=conn)`` to it for ORM use. In causal mode the snapshot
        starts only once its replica applied ``after`` and the request scope's position (a
        bounded wait, as for any causal read), else it is taken on the primary.
        """
        state = self.new_state(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        decision = self.router.read_target(state)
        waited: list[Connection] = []
        if decision.wait_for is not None:
            replica = self.engine_for(decision.target)

            def connect() -> Connection:
                waited.append(replica.connect())
                return waited[-1]

            def forget(_: str) -> None:
                while waited:
                    with contextlib.suppress(Exception):
                        waited.pop().close()

            try:
                decision = self.await_position(state, decision, connect, forget)
            except BaseException:
                forget(decision.target)
                raise
            if decision.on_primary:
                forget(decision.target)
        # The snapshot runs on the connection that waited: it has applied the position.
        conn = waited[-1] if waited else self.engine_for(decision.target).connect()
        try:
            if waited:
                conn.rollback()  # ends the wait's autobegun (autocommit) transaction: isolation may change
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()

    def status(self) -> list[ServerReport]:
        """The monitor's latest view of every server, with in-flight counts and eligibility."""
        return self.monitor.snapshot().report(self.policy.max_lag, self.in_flight)

    def dispose(self, close: bool = True) -> None:
        """Stop the monitor and close every pooled connection (``close=False``: forget them
        unclosed, as in a forked child). Using the engine afterwards restarts the monitor."""
        self.monitor.stop()
        for engine in self._all_engines():
            engine.dispose(close=close)
        self._disposed = True

    def __enter__(self) -> RoutingEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def __repr__(self) -> str:
        replicas = ", ".join(self._urls[name] for name in self._replicas)
        return f"RoutingEngine(primary={self._urls[PRIMARY]!r}, replicas=[{replicas}])"

    __str__ = __repr__


class RoutingTransaction:
    """What :meth:`RoutingConnection.begin` returns: ``commit()``, ``rollback()`` or a ``with`` block.

    Like SQLAlchemy's ``RootTransaction``: the block commits on success and rolls back on error.
    """

    def __init__(self, connection: RoutingConnection) -> None:
        self.connection = connection
        self.is_active = True

    def commit(self) -> None:
        if not self.is_active:
            raise sa.exc.InvalidRequestError("This transaction is inactive")
        self.connection.commit()

    def rollback(self) -> None:
        if self.is_active:
            self.connection.rollback()

    close = rollback

    def __enter__(self) -> RoutingTransaction:
        self.connection._block = self
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.connection._block = None
        if not self.is_active:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class RoutingConnection:
    """A Core connection that routes each statement: reads to a replica, the rest to the primary.

    Supports ``execute``, ``exec_driver_sql``, ``scalar``, ``scalars``, ``begin`` (a
    :class:`RoutingTransaction`), ``begin_nested`` (a savepoint on the primary), ``commit``,
    ``rollback``, ``close``, ``in_transaction`` and ``with`` use. Writes autobegin a transaction on
    the primary ("commit as you go"); once it wrote, later reads go to the primary too. Replica
    reads, and primary reads outside such a transaction, run in autocommit. Session settings,
    temporary tables and locks live on the primary connection: after one, every read of this
    connection goes there, until it closes.
    """

    def __init__(self, engine: RoutingEngine, state: ConsistencyState) -> None:
        self.engine = engine
        self.state = state
        self._primary: Connection | None = None
        self._reader: Connection | None = None
        self._replica: tuple[str, Connection] | None = None
        self._transaction: RoutingTransaction | None = None
        self._block: RoutingTransaction | None = None  # the ``with conn.begin():`` block we are in
        self.closed = False
        self.last_target: str | None = None

    # ---------------------------------------------------------------- executing
    def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self._route(
            statement,
            execution_options,
            lambda c: c.execute(statement, parameters, execution_options=execution_options),
        )

    def exec_driver_sql(self, statement: str, parameters: Any = None, execution_options: Any = None) -> Any:
        return self._route(
            statement,
            execution_options,
            lambda c: c.exec_driver_sql(statement, parameters, execution_options),
        )

    def scalar(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self.execute(statement, parameters, execution_options=execution_options).scalar()

    def scalars(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self.execute(statement, parameters, execution_options=execution_options).scalars()

    def _options(self, statement: Any, execution_options: Any) -> Mapping[str, Any] | None:
        own = getattr(statement, "_execution_options", None)
        if own and execution_options:
            return {**own, **execution_options}
        return execution_options or own or None

    def _route(self, statement: Any, execution_options: Any, run: Any) -> Any:
        self._check_open()
        options = self._options(statement, execution_options)

        def attempt(hint: str | None) -> Any:
            return self._attempt(statement, options, hint, run)

        try:
            return attempt(None)
        except DBAPIError as exc:
            return self.engine.recover_read(
                self.state, exc, attempt, lambda: self.last_target, lambda _: self._drop_replica()
            )

    def _attempt(self, statement: Any, options: Any, hint: str | None, run: Any) -> Any:
        """Route and run the statement once."""
        self.last_target = None
        state = self.state
        decision = self.engine.router.decide(statement, state, options, hint)
        if decision.writes:
            state.ran_on_primary(decision.effect)
            if decision.effect == "session":
                state.connection_state = True
        elif decision.wait_for is not None:
            decision = self.engine.await_position(
                state,
                decision,
                lambda: self._replica_connection(decision.target),
                lambda _: self._drop_replica(),
            )
        self.last_target = decision.target
        bind = self.engine.bind_for(decision, state)
        if bind is self.engine.primary:
            return run(self._primary_connection())
        if decision.on_primary:
            return run(self._reader_connection(bind))
        return run(self._replica_connection(decision.target))

    def _check_open(self) -> None:
        if self.closed:
            raise sa.exc.ResourceClosedError("this RoutingConnection is closed")
        if self._block is not None and not self._block.is_active:
            # As SQLAlchemy: work after commit()/rollback() inside the block would escape it.
            raise sa.exc.InvalidRequestError(
                "Can't operate on closed transaction inside context manager; "
                "complete the `with conn.begin():` block before emitting further commands"
            )

    def _primary_connection(self) -> Connection:
        if self._primary is None:
            self._primary = self.engine.primary.connect()
        return self._primary

    def _reader_connection(self, bind: Engine) -> Connection:
        """Primary reads outside a transaction: autocommit, so each sees the latest commits."""
        if self._reader is None:
            self._reader = bind.connect()
        return self._reader

    def _replica_connection(self, name: str) -> Connection:
        if self._replica is not None:
            if self._replica[0] == name:
                return self._replica[1]
            self._drop_replica()
        conn = self.engine.engine_for(name).connect()
        self._replica = (name, conn)
        return conn

    def _drop_replica(self) -> None:
        if self._replica is not None:
            with contextlib.suppress(Exception):
                self._replica[1].close()
            self._replica = None

    # ------------------------------------------------------------- transactions
    def in_transaction(self) -> bool:
        return self._transaction is not None or (self._primary is not None and self._primary.in_transaction())

    def begin(self) -> RoutingTransaction:
        """Begin a transaction: commit it, roll it back, or use it as a ``with`` block.

        As in SQLAlchemy, a second ``begin()`` while one is open (or while a write, lock or session
        setting autobegan one) raises ``InvalidRequestError``; use :meth:`begin_nested` for a
        savepoint. Reads alone begin nothing that ``begin()`` would trip on.
        """
        self._check_open()
        if self._transaction is not None or self.state.tx_on_primary:
            raise sa.exc.InvalidRequestError(
                "a transaction is already begun on this RoutingConnection; commit() or rollback() "
                "it first, or use begin_nested() for a savepoint"
            )
        if self._primary is not None and self._primary.in_transaction():
            self._primary.commit()  # only reads ran in it (pinned reads autobegin, like replica reads do not)
        self._transaction = RoutingTransaction(self)
        return self._transaction

    def begin_nested(self) -> Any:
        """A SAVEPOINT on the primary (SQLAlchemy's ``NestedTransaction``); the transaction stays there."""
        self._check_open()
        self.state.bind_transaction()
        return self._primary_connection().begin_nested()

    def commit(self) -> None:
        state = self.state
        if self._primary is not None and self._primary.in_transaction():
            causal = state.mode == "causal" and state.tx_wrote
            if causal:
                request_capture()
            try:
                self._primary.commit()
            finally:
                captured = take_captured() if causal else None  # never left armed for another commit
            if causal:
                state.committed(self.engine.parse_position(captured) if captured else None)
        self._end_transaction()

    def consistency_token(self) -> str:
        """A token of everything this connection wrote or read (``read_your_writes="causal"``)."""
        return self.engine.encode_token(self.state.position)

    def advance(self, token: str) -> None:
        """Make later reads see at least the position in ``token``."""
        self.state.advance(self.engine.decode_token(token))

    def rollback(self) -> None:
        if self._primary is not None and self._primary.in_transaction():
            self._primary.rollback()
        self._end_transaction()

    def _end_transaction(self) -> None:
        if self._transaction is not None:
            self._transaction.is_active = False
            self._transaction = None
        self.state.transaction_ended()

    def close(self) -> None:
        """Roll back anything uncommitted (as SQLAlchemy does) and return connections to their pools."""
        if self.closed:
            return
        if self._transaction is not None:
            self._transaction.is_active = False
            self._transaction = None
        self._drop_replica()
        for conn in (self._reader, self._primary):
            if conn is not None:
                conn.close()
        self._reader = self._primary = None
        self.state.reset()
        self.closed = True

    def __enter__(self) -> RoutingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------- construction


def _connect_args(engine_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """PyMySQL waits forever on a server that stopped answering; rwsplit bounds every wait."""
    args = dict(engine_kwargs.get("connect_args") or {})
    args.setdefault("connect_timeout", 2)
    args.setdefault("read_timeout", 60)
    args.setdefault("write_timeout", 60)
    return args


def _retrying_connect(engine: Engine, retry: Retry, masked: str) -> None:
    """New primary connections retry connection errors with bounded backoff, then PrimaryUnavailable."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
        started = time.monotonic()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retry.primary_attempts)
            | tenacity.stop_after_delay(retry.primary_timeout),
            wait=tenacity.wait_exponential(multiplier=retry.backoff, max=retry.max_backoff),
            retry=tenacity.retry_if_exception(is_connection_error),
            reraise=True,
        )
        try:
            return retrying(dialect.connect, *cargs, **cparams)
        except pymysql.MySQLError as exc:
            if not is_connection_error(exc):
                raise
            attempts = retrying.statistics.get("attempt_number", 1)
            raise PrimaryUnavailable(
                f"primary {masked} unreachable after {attempts} attempts in "
                f"{time.monotonic() - started:.1f} s: {exc.args[-1] if exc.args else exc}"
            ) from None


def _no_transaction_control(engine: Engine) -> None:
    """An AUTOCOMMIT engine has no transaction: COMMIT and savepoints never reach its server.

    Sessions enrol every engine they read from in their transaction; without this, their commit
    (and begin_nested) would send COMMIT/SAVEPOINT to replica connections, where a dead connection
    could fail or misreport the primary's commit. A connection switched out of autocommit
    (``read_snapshot``) keeps normal transaction control.
    """
    dialect = engine.dialect
    autocommit = dialect.detect_autocommit_setting
    commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        if not autocommit(dbapi_connection):
            commit(dbapi_connection)

    def savepoint_op(original: Callable[[Connection, str], None]) -> Callable[[Connection, str], None]:
        def op(connection: Connection, name: str) -> None:
            dbapi_connection = connection.connection.dbapi_connection
            if dbapi_connection is None or not autocommit(dbapi_connection):
                original(connection, name)

        return op

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    for name in ("do_savepoint", "do_release_savepoint", "do_rollback_to_savepoint"):
        setattr(dialect, name, savepoint_op(getattr(dialect, name)))


def _flavor_of(dbapi_connection: Any) -> str:
    return "mariadb" if "mariadb" in dbapi_connection.get_server_info().lower() else "mysql"


def _spec(name: str, role: str, url: URL, user: str | None, password: str | None, ssl: Any) -> ServerSpec:
    return ServerSpec(
        name=name,
        role=role,
        url=_mask(url),
        host=url.host or "localhost",
        port=int(url.port or 3306),
        user=user if user is not None else (url.username or ""),
        password=password if password is not None else (url.password or ""),
        unix_socket=url.query.get("unix_socket"),  # type: ignore[arg-type]
        ssl=ssl,
    )


def _cluster_key(cluster: object, primary_url: URL) -> str:
    """The token cluster id: of the app's ``cluster=`` name, else of the primary's host:port/database."""
    if cluster is None:
        host = primary_url.host or str(primary_url.query.get("unix_socket") or "localhost")
        return cluster_id(host, int(primary_url.port or 3306), primary_url.database or "")
    if not isinstance(cluster, str):
        raise TypeError(f"cluster must be a str naming the cluster, got {type(cluster).__name__}")
    if not cluster.strip() or len(cluster) > 200 or not cluster.isprintable():
        raise ValueError(
            f"cluster must be a non-empty printable name of at most 200 characters, got {cluster!r}"
        )
    return named_cluster_id(cluster)


def create_engine(
    url: str | URL,
    *,
    replicas: Sequence[str | URL] = (),
    max_lag: float = 1.0,
    read_your_writes: str = "session",
    fallback: str = "primary",
    pin_window: float = 0.0,
    causal_timeout: float = 0.05,
    balancer: Any = "least_outstanding",
    weights: Mapping[str, float] | None = None,
    monitor_interval: float = 0.5,
    monitor_timeout: float = 1.0,
    lag_source: str = "auto",
    heartbeat_table: str | None = None,
    monitor_user: str | None = None,
    monitor_password: str | None = None,
    monitor_ssl: Mapping[str, Any] | None = None,
    read_only_functions: Iterable[str] = (),
    retry: Retry | None = None,
    cluster: str | None = None,
    **engine_kwargs: Any,
) -> RoutingEngine:
    """Build a routing engine: writes to ``url`` (the primary), lag-bounded reads to ``replicas``.

    ``engine_kwargs`` go to :func:`sqlalchemy.create_engine` for every server (pool sizes,
    ``connect_args``, TLS …); replicas always run in ``AUTOCOMMIT``. See README for every option.
    """
    if isinstance(replicas, (str, bytes, URL)):
        raise TypeError("replicas must be a list of URLs, not a single URL; write replicas=[url]")
    if isinstance(replicas, Mapping) or not isinstance(replicas, Iterable):
        raise TypeError(f"replicas must be a list of URLs, got {type(replicas).__name__}")
    primary_url, replica_urls = coerce_servers(
        url, list(replicas), primary_label="the primary", replica_label="replica"
    )
    if isinstance(read_only_functions, str):
        raise TypeError("read_only_functions must be a list of function names, not a single string")
    cluster_key = _cluster_key(cluster, primary_url)
    policy = RoutingPolicy(
        max_lag=max_lag,
        read_your_writes=read_your_writes,
        fallback=fallback,
        pin_window=pin_window,
        causal_timeout=causal_timeout,
        read_only_functions=frozenset(str(f).lower() for f in read_only_functions),
        retry=Retry() if retry is None else retry,
    )
    interval = check_seconds("monitor_interval", monitor_interval, allow_zero=False, upper=3600)
    if interval < 0.05:
        raise ValueError(f"monitor_interval must be ≥ 0.05 s, got {monitor_interval!r}")
    timeout = check_seconds("monitor_timeout", monitor_timeout, allow_zero=False, upper=600)
    check_choice("lag_source", lag_source, LAG_SOURCES)
    if heartbeat_table is not None and not (
        isinstance(heartbeat_table, str) and _TABLE_NAME.match(heartbeat_table)
    ):
        raise ValueError(f"heartbeat_table must be 'table' or 'database.table', got {heartbeat_table!r}")
    if lag_source == "heartbeat" and heartbeat_table is None:
        raise ValueError("lag_source='heartbeat' needs heartbeat_table='database.heartbeat'")
    names = [f"replica{i + 1}" for i in range(len(replica_urls))]
    if weights is not None:
        unknown = sorted(set(weights) - set(names))
        if unknown:
            shown = [_mask_key(k) for k in unknown]
            raise ValueError(f"weights name unknown replicas {shown}; replicas are named {names}")
        if balancer == "least_outstanding":
            balancer = "weighted"
    chosen = resolve_balancer(balancer, weights)
    if isinstance(chosen, Weighted) and weights is None:
        raise ValueError("balancer='weighted' needs weights={'replica1': 2, …}")

    connect_args = _connect_args(engine_kwargs)
    ssl = monitor_ssl if monitor_ssl is not None else connect_args.get("ssl")
    kwargs = {"pool_pre_ping": True, **engine_kwargs, "connect_args": connect_args}
    primary = sa.create_engine(primary_url, **kwargs)
    _retrying_connect(primary, policy.retry, _mask(primary_url))
    install_commit_capture(primary, _flavor_of)
    # AUTOCOMMIT: each read sees the latest state; no ROLLBACK round trip (or error) at check-in.
    replica_kwargs = {**kwargs, "isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
    replica_engines = {
        n: sa.create_engine(u, **replica_kwargs) for n, u in zip(names, replica_urls, strict=True)
    }
    primary_reads = sa.create_engine(primary_url, **replica_kwargs)
    _retrying_connect(primary_reads, policy.retry, _mask(primary_url))
    for autocommit_engine in (primary_reads, *replica_engines.values()):
        _no_transaction_control(autocommit_engine)
    for replica_engine in replica_engines.values():
        _mark_connect_errors(replica_engine)
        _READ_TIMEOUTS[replica_engine] = float(connect_args.get("read_timeout") or 60.0)

    monitor = Monitor(
        _spec(PRIMARY, "primary", primary_url, monitor_user, monitor_password, ssl),
        [
            _spec(n, "replica", u, monitor_user, monitor_password, ssl)
            for n, u in zip(names, replica_urls, strict=True)
        ],
        interval=interval,
        timeout=timeout,
        lag_source=lag_source,
        heartbeat_table=heartbeat_table,
        connect_checks={n: _fresh_connection_check(e, connect_args) for n, e in replica_engines.items()},
    )
    urls = {PRIMARY: _mask(primary_url), **{n: _mask(u) for n, u in zip(names, replica_urls, strict=True)}}
    router = Router(policy, monitor, chosen, functools.partial(_checked_out, replica_engines))
    engine = RoutingEngine(primary, replica_engines, monitor, router, urls, cluster_key, primary_reads)
    _ENGINES.add(engine)
    monitor.start(wait=True)
    log.info("routing engine started: %r", engine)
    for row in engine.status():
        if not row.eligible:
            log.warning(
                "%s (%s) cannot serve reads at start: %s", row.name, row.url, row.error or "not ready"
            )
    return engine
