"""``RoutingConnection``: a Core connection that routes each statement, and its ``RoutingTransaction``.

Writes autobegin a transaction on the primary; replica reads, and primary reads outside one, run
in autocommit on their own connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .causal import request_capture, take_captured
from .compat import statement_options
from .consistency_state import ConsistencyState
from .failover import recover_read

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult, ScalarResult
    from sqlalchemy.sql.base import Executable
    from sqlalchemy.sql.selectable import TypedReturnsRows
    from typing_extensions import TypeVarTuple, Unpack

    from .engine import RoutingEngine

    _Ts = TypeVarTuple("_Ts")
    _AnyRow = tuple[Any, ...]

_T = TypeVar("_T")

__all__ = ["RoutingConnection", "RoutingTransaction"]


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
        return self._route(
            statement,
            execution_options,
            lambda c: c.execute(statement, parameters, execution_options=execution_options),
        )

    def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Mapping[str, Any] | None = None
    ) -> CursorResult[Unpack[_AnyRow]]:
        """``Connection.exec_driver_sql``, routed by the text of ``statement``."""
        result: CursorResult[Unpack[_AnyRow]] = self._route(
            statement,
            execution_options,
            lambda c: c.exec_driver_sql(statement, parameters, execution_options),
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
            )
        self.last_target = decision.target
        bind = self.engine._bind_for(decision, state)
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
        conn = self.engine.engines[name].connect()
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
                state.committed(self.engine._parse_position(captured) if captured else None)
        self._end_transaction()

    def consistency_token(self) -> str:
        """A token of everything this connection wrote or read (``read_your_writes="causal"``)."""
        return self.engine._encode_token(self.state.position)

    def advance(self, token: str) -> None:
        """Make later reads see at least the position in ``token``."""
        self.state.advance(self.engine._decode_token(token))

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
