"""``RoutingConnection``: a Core connection that routes each statement (the Connection API code expects).

Writes autobegin a transaction on the primary; replica reads, and primary reads outside one, run
in autocommit on their own connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import ConnectionEventsTarget
from sqlalchemy.exc import DBAPIError

from .causal import disarm, request_capture, take_captured
from .compat import register_inspection, statement_options, wrap_dialect
from .consistency_state import ConsistencyState
from .failover import recover_read
from .transaction import RoutingTransaction

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult, Dialect, NestedTransaction, ScalarResult
    from sqlalchemy.engine.interfaces import IsolationLevel
    from sqlalchemy.engine.reflection import Inspector
    from sqlalchemy.pool import PoolProxiedConnection
    from sqlalchemy.sql.base import Executable
    from sqlalchemy.sql.selectable import TypedReturnsRows
    from typing_extensions import TypeVarTuple, Unpack

    from .engine import RoutingEngine

    _Ts = TypeVarTuple("_Ts")
    _AnyRow = tuple[Any, ...]

_T = TypeVar("_T")

__all__ = ["RoutingConnection", "RoutingTransaction"]  # RoutingTransaction lives in .transaction

# The rest of Connection's public API: run on the primary connection (see RoutingConnection.__getattr__).
# ``dispatch`` stays out: events on a RoutingConnection are not supported (listen on engine.engines).
_PRIMARY_FALLBACK = frozenset(name for name in dir(Connection) if not name.startswith("_")) - {"dispatch"}
# Dialect methods that refuse anything but a Connection (Alembic calls ``dialect.has_table(conn, …)``).
_CATALOG_PROBES = ("has_table", "has_index", "has_sequence", "has_schema")


class RoutingConnection(ConnectionEventsTarget):
    """A Core connection that routes each statement: reads to a replica, the rest to the primary.

    Usable where SQLAlchemy code expects a ``Connection`` (pandas, Alembic): ``execute``,
    ``exec_driver_sql``, ``scalar(s)``, ``begin`` (a :class:`RoutingTransaction`), ``begin_nested``
    (a savepoint on the primary), ``get_transaction``, ``execution_options``, ``info``,
    ``invalidate``, DDL and ``inspect()`` on the primary; the rest of ``Connection``'s API runs on
    the primary connection (``__getattr__``). Writes autobegin a transaction on
    the primary ("commit as you go"); once it wrote, later reads go to the primary too. Replica
    reads, and primary reads outside such a transaction, run in autocommit. Session settings,
    temporary tables and locks live on the primary connection: after one, every read of this
    connection goes there, until it closes.
    """

    # A Connectable (pandas checks it) without events of its own: its statements run on other
    # connections, so a listener here would never fire. ``event.listen`` raises instead (below).
    dispatch = None  # type: ignore[assignment]

    def _no_async_engine_events(self) -> None:
        """What ``sqlalchemy.event.listen(routing_connection, …)`` calls: refuse, naming what to use."""
        raise sa.exc.InvalidRequestError(
            "events cannot be listened to on a RoutingConnection (its statements run on other "
            "connections); listen on engine.primary or engine.engines[name], each server's Engine"
        )

    def __init__(self, engine: RoutingEngine, state: ConsistencyState) -> None:
        self.engine = engine
        self.state = state
        self._primary: Connection | None = None
        self._reader: Connection | None = None
        self._replica: tuple[str, Connection] | None = None
        self._transaction: RoutingTransaction | None = None
        self._block: RoutingTransaction | None = None  # the ``with conn.begin():`` block we are in
        # The transaction invalidate() lost: statements raise PendingRollbackError until rollback().
        self._lost: RoutingTransaction | None = None
        self._lost_savepoint = False
        self.closed = False
        self.invalidated = False
        self.last_target: str | None = None
        self.info: dict[Any, Any] = {}  # per RoutingConnection, like Connection.info for user data
        self._execution_options: dict[str, Any] = {}

    @property
    def dialect(self) -> Dialect:
        """The primary's dialect (every server of a cluster has the same); its ``has_table`` and
        other catalog probes accept this connection and ask the primary's catalog."""
        _accept_routing_connections(self.engine.primary)
        return self.engine.primary.dialect

    # ---------------------------------------------------------------- executing
    @overload
    def execute(
        self,
        statement: TypedReturnsRows[Unpack[_Ts]],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> CursorResult[Unpack[_Ts]]: ...
    @overload
    def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> CursorResult[Unpack[_AnyRow]]: ...
    def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        """``Connection.execute``, on the connection this statement routes to."""
        options = self._call_options(execution_options)
        return self._route(
            statement, options, lambda c: c.execute(statement, parameters, execution_options=options)
        )

    def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Mapping[str, Any] | None = None
    ) -> CursorResult[Unpack[_AnyRow]]:
        """``Connection.exec_driver_sql``, routed by the text of ``statement``."""
        options = self._call_options(execution_options)
        result: CursorResult[Unpack[_AnyRow]] = self._route(
            statement, options, lambda c: c.exec_driver_sql(statement, parameters, options)
        )
        return result

    @overload
    def scalar(  # SQLAlchemy 2.0 types rows as tuple[...]; 2.1 unpacks them
        self,
        statement: TypedReturnsRows[tuple[_T]],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> _T | None: ...
    @overload
    def scalar(
        self,
        statement: TypedReturnsRows[_T],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> _T | None: ...
    @overload
    def scalar(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Any: ...
    def scalar(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        """The first column of the first row (``Connection.scalar``), routed like :meth:`execute`."""
        return self.execute(statement, parameters, execution_options=execution_options).scalar()

    @overload
    def scalars(  # SQLAlchemy 2.0 types rows as tuple[...]; 2.1 unpacks them
        self,
        statement: TypedReturnsRows[tuple[_T]],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> ScalarResult[_T]: ...
    @overload
    def scalars(
        self,
        statement: TypedReturnsRows[_T],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> ScalarResult[_T]: ...
    @overload
    def scalars(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> ScalarResult[Any]: ...
    def scalars(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        """The first column of every row (``Connection.scalars``), routed like :meth:`execute`."""
        return self.execute(statement, parameters, execution_options=execution_options).scalars()

    def _call_options(self, execution_options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """This connection's :meth:`execution_options` under those of one call (SQLAlchemy's order)."""
        if not self._execution_options:
            return execution_options
        return {**self._execution_options, **(execution_options or {})}

    def _options(self, statement: Any, execution_options: Any) -> Mapping[str, Any] | None:
        own = statement_options(statement)
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
            return recover_read(
                self.engine,
                self.state,
                exc,
                attempt,
                lambda: self.last_target,
                lambda _: self._drop_replica(),
            )

    def _attempt(self, statement: Any, options: Any, hint: str | None, run: Any) -> Any:
        """Route and run the statement once."""
        self.last_target = None
        state = self.state
        decision = self.engine.router.decide(statement, state, options, hint)
        if decision.writes:
            state.ran_on_primary(decision.effect)
            if decision.effect == "session":
                state.mark_connection_state()
        elif decision.wait_for is not None:
            decision = self.engine._await_position(
                state,
                decision,
                lambda: self._replica_connection(decision.target),
                lambda _: self._drop_replica(),
                with_read=True,
            )
        self.last_target = decision.target
        self.engine._observer.routed(decision, statement)
        bind = self.engine._bind_for(decision, state)
        if bind is self.engine.primary:
            return run(self._primary_connection())
        if decision.on_primary:
            return run(self._reader_connection(bind))
        replica = self._replica_connection(decision.target)
        try:
            return run(replica)
        finally:
            disarm(replica)  # a causal wait its read did not take (an error before it ran)

    def _check_closed(self) -> None:
        if self.closed:
            raise sa.exc.ResourceClosedError("this RoutingConnection is closed")

    def _check_lost(self) -> None:
        """As SQLAlchemy: a transaction lost by :meth:`invalidate` must be rolled back before any
        statement checks out fresh connections (nothing may run as if it were still there)."""
        if self._lost is not None:
            raise sa.exc.PendingRollbackError(
                f"Can't reconnect until invalid {'savepoint ' if self._lost_savepoint else ''}"
                "transaction is rolled back.  Please rollback() fully before proceeding"
            )

    def _check_open(self) -> None:
        self._check_closed()
        self._check_lost()
        self.invalidated = False  # the next statement checks out fresh DBAPI connections
        if self._block is not None and not self._block.is_active:
            # As SQLAlchemy: work after commit()/rollback() inside the block would escape it.
            raise sa.exc.InvalidRequestError(
                "Can't operate on closed transaction inside context manager; "
                "complete the `with conn.begin():` block before emitting further commands"
            )

    def _primary_connection(self) -> Connection:
        if self._primary is None:
            self._check_lost()
            self._primary = self.engine.primary.connect()
        return self._primary

    def _reader_connection(self, bind: Engine) -> Connection:
        """Primary reads outside a transaction: autocommit, so each sees the latest commits."""
        if self._reader is not None and self._reader.invalidated:
            self._drop_reader()  # autocommit: nothing of a transaction was lost with it
        if self._reader is None:
            self._check_lost()
            self._reader = bind.connect()
        return self._reader

    def _replica_connection(self, name: str) -> Connection:
        if self._replica is not None:
            # Invalidated under a statement (a cancelled task, an interrupt): it ran in autocommit,
            # so no transaction was lost with it; a fresh one serves, never PendingRollbackError.
            if self._replica[0] == name and not self._replica[1].invalidated:
                return self._replica[1]
            self._drop_replica()
        self._check_lost()
        conn = self.engine.engines[name].connect()
        self._replica = (name, conn)
        return conn

    def _drop_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
            self._reader = None

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
        self._check_can_begin()
        if self._reads_in_transaction():
            self._primary.commit()  # type: ignore[union-attr]
        self._transaction = RoutingTransaction(self)
        return self._transaction

    def _check_can_begin(self) -> None:
        """What :meth:`begin` refuses, checked before it does any I/O."""
        self._check_closed()
        if self._transaction is not None or self._lost is not None or self.state.tx_on_primary:
            raise sa.exc.InvalidRequestError(
                "a transaction is already begun on this RoutingConnection; commit() or rollback() "
                "it first, or use begin_nested() for a savepoint"
            )
        self._check_open()

    def _reads_in_transaction(self) -> bool:
        """Pinned primary reads autobegan a transaction (replica reads do not): :meth:`begin`
        commits it first, a round trip to the primary."""
        return self._primary is not None and self._primary.in_transaction()

    def begin_nested(self) -> NestedTransaction:
        """A SAVEPOINT on the primary (SQLAlchemy's ``NestedTransaction``); the transaction stays there."""
        self._check_open()
        self.state.bind_transaction()
        return self._primary_connection().begin_nested()

    def get_transaction(self) -> RoutingTransaction | None:
        """The transaction in progress, begun or autobegun, else None (``Connection.get_transaction``)."""
        if self._transaction is None and self.in_transaction():
            self._transaction = RoutingTransaction(self)
        return self._transaction

    def in_nested_transaction(self) -> bool:
        """A :meth:`begin_nested` savepoint is open (savepoints live on the primary)."""
        return self._primary is not None and self._primary.in_nested_transaction()

    def get_nested_transaction(self) -> NestedTransaction | None:
        """The innermost open savepoint, else None (``Connection.get_nested_transaction``)."""
        return self._primary.get_nested_transaction() if self._primary is not None else None

    def execution_options(self, **options: Any) -> RoutingConnection:
        """Options for every later statement of this connection, returned (``Connection.execution_options``).

        ``isolation_level`` changes the primary's DBAPI connection: as after ``SET``, later reads
        of this connection run there (replica reads are autocommit snapshots anyway).
        """
        self._check_closed()
        if "isolation_level" in options:
            level = options.pop("isolation_level")
            self._primary_connection().execution_options(isolation_level=level)
            self.state.mark_connection_state()
        self._execution_options = {**self._execution_options, **options}
        return self

    def get_execution_options(self) -> Mapping[str, Any]:
        """The options set by :meth:`execution_options` (``Connection.get_execution_options``)."""
        return sa.util.immutabledict(self._execution_options)

    def get_isolation_level(self) -> IsolationLevel:
        """The primary connection's isolation level (where transactions run)."""
        return self._primary_connection().get_isolation_level()

    @property
    def default_isolation_level(self) -> IsolationLevel | None:
        """The primary's default isolation level."""
        return self._primary_connection().default_isolation_level

    @property
    def connection(self) -> PoolProxiedConnection:
        """The primary's DBAPI connection: what runs on it is invisible to routing, so every later
        read of this connection goes to the primary too (as after ``SET``)."""
        self._check_open()
        self.state.mark_connection_state()
        return self._primary_connection().connection

    if not TYPE_CHECKING:  # type checkers keep flagging names Connection does not have

        def __getattr__(self, name: str) -> Any:
            """The rest of ``Connection``'s public API (``detach``, two-phase commit …) on the primary.

            Unknown effects run where writes run, and later reads follow them there (as after
            ``SET``): never an ``AttributeError`` for a name ``Connection`` has, nor a replica write.
            """
            if name not in _PRIMARY_FALLBACK or "state" not in self.__dict__:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            self._check_open()
            self.state.mark_connection_state()
            return getattr(self._primary_connection(), name)

    def _run_ddl_visitor(self, visitor: Any, element: Any, **kwargs: Any) -> None:
        """What ``create_all``/``drop_all``/``Table.create`` call on their ``bind``: DDL on the primary.

        It counts as a write: later reads of this connection see the new schema on the primary.
        """
        self._check_open()
        self.state.ran_on_primary("write")
        self.last_target = "primary"
        conn = self._primary_connection()
        visitor(conn.dialect, conn, **kwargs).traverse_single(element)  # what Connection does with it

    def _catalog_connection(self) -> Connection:
        """Where reflection reads: the primary (a replica may lag a DDL), in the transaction when
        one is bound there (its DDL, temporary tables), else in autocommit (the latest catalog)."""
        self._check_open()
        if self.state.tx_on_primary or self.state.connection_state:
            return self._primary_connection()
        return self._reader_connection(self.engine._primary_reads)

    def commit(self) -> None:
        if self._lost is not None:
            # As SQLAlchemy: the commit fails and ends the transaction; statements keep raising
            # until rollback() (nothing of the lost transaction was committed).
            self._end_transaction()
            self._check_lost()
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
                state.committed(self.engine._parse_position(captured) if captured else None)
        self._end_transaction()

    def consistency_token(self) -> str:
        """A token of everything this connection wrote or read (``read_your_writes="causal"``)."""
        return self.engine._encode_token(self.state.position)

    def advance(self, token: str) -> None:
        """Make later reads see at least the position in ``token``."""
        self.state.advance(self.engine._decode_token(token))

    def rollback(self) -> None:
        """Roll back the transaction in progress; after :meth:`invalidate` lost one, this is what
        makes the connection usable again."""
        if self._primary is not None and self._primary.in_transaction():
            self._primary.rollback()
        self._lost = None
        self._end_transaction()

    def _end_transaction(self) -> None:
        if self._transaction is not None:
            self._transaction.is_active = False
            self._transaction = None
        self.state.transaction_ended()

    def invalidate(self, exception: BaseException | None = None) -> None:
        """Discard every DBAPI connection this holds (``Connection.invalidate``).

        Outside a transaction the next statement checks out fresh connections. A transaction in
        progress (:meth:`in_transaction`: begun, or autobegun by a write) is lost, and as in
        SQLAlchemy every statement (and ``commit()``) raises ``PendingRollbackError`` until
        ``rollback()``: nothing runs as if its earlier work were still there.
        """
        self._check_closed()
        if self.in_transaction():
            self._lost_savepoint = self.in_nested_transaction()
            self._lost = self.get_transaction()
        held = [c for c in (self._primary, self._reader) if c is not None]
        if self._replica is not None:
            held.append(self._replica[1])
        for conn in held:
            with contextlib.suppress(Exception):
                conn.invalidate(exception)
                conn.close()
        self._primary = self._reader = self._replica = None
        if self._lost is None:
            self._end_transaction()
        self.invalidated = True

    def close(self) -> None:
        """Roll back anything uncommitted (as SQLAlchemy does) and return connections to their pools."""
        if self.closed:
            return
        if self._transaction is not None:
            self._transaction.is_active = False
            self._transaction = None
        self._lost = None
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


def _inspect_connection(connection: RoutingConnection) -> Inspector:
    """``sqlalchemy.inspect(routing_connection)``: an Inspector on the primary (pandas, Alembic)."""
    return sa.inspect(connection._catalog_connection())


register_inspection(RoutingConnection, _inspect_connection)


def _accept_routing_connections(primary: Engine) -> None:
    """Let the primary's dialect take a RoutingConnection where SQLAlchemy insists on a Connection.

    ``dialect.has_table(connection, …)`` raises ``ArgumentError`` for anything else; wrapped, it
    reads the catalog where :func:`sqlalchemy.inspect` of the connection does (the primary). Only
    schema tools call these probes directly (Alembic, before reading its version table): later
    reads of that connection go to the primary too, so they never see a replica lagging the schema.
    """
    dialect = primary.dialect
    if getattr(dialect, "_rwsplit_catalog", False):
        return

    def wrap(name: str) -> Any:
        def wrapper(original: Any) -> Any:
            def probe(connection: Any, *args: Any, **kwargs: Any) -> Any:
                if not isinstance(connection, RoutingConnection):
                    return original(connection, *args, **kwargs)
                connection.state.mark_connection_state()
                catalog = connection._catalog_connection()  # its own, initialized, dialect answers
                return getattr(catalog.dialect, name)(catalog, *args, **kwargs)

            return probe

        return wrapper

    for name in _CATALOG_PROBES:
        wrap_dialect(primary, name, wrap(name))
    dialect._rwsplit_catalog = True  # type: ignore[attr-defined]
