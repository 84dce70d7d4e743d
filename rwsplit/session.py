"""``RoutingSession``: a small Session subclass that routes each statement through the engine's router.

Modelled on SQLAlchemy's ``ext/horizontal_shard``: ``get_bind`` picks the engine from the
statement (its options, and whether it is an ORM refresh or relationship load), while
``execute``/``scalars``/``scalar`` pass call-level options to it and retry a read whose replica
connection failed. No ``do_orm_execute`` hook: it would cost more than the routing itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import sqlalchemy.orm
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.interfaces import UserDefinedOption
from sqlalchemy.sql.base import Executable

from . import compat
from .causal import disarm, request_capture, take_captured
from .classifier import PRIMARY
from .connection import RoutingConnection
from .engine import RoutingEngine
from .failover import recover_read
from .router import Decision

__all__ = ["RoutingSession", "sessionmaker", "UsePrimary"]

_O = TypeVar("_O", bound=object)
_S = TypeVar("_S", bound="RoutingSession")


_FLUSH = Decision(PRIMARY, "write: flush", writes=True, effect="write", kind="write")
_CONNECTION = Decision(PRIMARY, "session.connection(): unknown statements", writes=True, kind="write")
_NO_CALL: tuple[Any, str | None] = (None, None)
_NOT_EXECUTABLE: tuple[None, tuple[()]] = (None, ())  # a clause get_bind was given that cannot carry options


def _routing(run: Any, doc: str) -> Any:
    """A Session method (``execute``, ``scalars``, ``scalar``) that runs ``run`` with the call-level
    options visible to get_bind and retries a failed replica read: one frame per statement."""

    def routed(self: RoutingSession, statement: Any, params: Any = None, **kw: Any) -> Any:
        if getattr(statement, "is_dml", False):
            self.rwsplit_state.wrote()
        saved = self._rwsplit_call
        # What get_bind sees of this call: the call-level options over the statement's own when
        # they set a routing option (else get_bind reads the statement's).
        given = kw.get("execution_options")
        if given and ("rwsplit_route" in given or "rwsplit_max_lag" in given):
            own = compat.statement_options(statement)
            call: tuple[Any, str | None] = ({**own, **given} if own else given), None
        else:
            call = _NO_CALL
        self._rwsplit_call = call
        self._rwsplit_target = None
        try:
            return run(self, statement, params, **kw)
        except DBAPIError as exc:
            return self._recover(run, statement, params, kw, call[0], exc)
        finally:
            self._rwsplit_call = saved
            armed = self._rwsplit_armed
            if armed is not None:  # a causal wait its read did not take (an error before it ran)
                self._rwsplit_armed = None
                disarm(armed)

    routed.__name__ = run.__name__
    routed.__qualname__ = f"RoutingSession.{run.__name__}"
    routed.__doc__ = doc
    return routed


class UsePrimary(UserDefinedOption):
    """ORM option: read this statement, and the lazy/selectin loads it starts, from the primary.

    ``session.scalars(select(User).options(rwsplit.UsePrimary()))``
    """

    propagate_to_loaders = True

    def __init__(self) -> None:
        super().__init__(payload=PRIMARY)


class RoutingSession(Session):
    """A Session whose reads go to replicas and whose writes go to the primary.

    Extra keywords: ``routing_engine`` (required; :func:`sessionmaker` passes it), ``max_lag``
    and ``read_your_writes`` (per-session overrides of the engine's defaults) and ``after`` (a
    consistency token whose position causal reads must see).
    """

    def __init__(
        self,
        bind: Any = None,
        *,
        routing_engine: RoutingEngine | None = None,
        max_lag: float | None = None,
        read_your_writes: str | None = None,
        after: str | None = None,
        **kw: Any,
    ) -> None:
        if "db" in kw and not any(c.__module__.startswith("flask_sqlalchemy") for c in type(self).__mro__):
            raise TypeError(
                "Flask-SQLAlchemy cannot build a plain RoutingSession: use "
                "db = rwsplit.integrations.flask.RoutingSQLAlchemy() and db.init_app(app, engine)"
            )
        if routing_engine is None:
            raise TypeError(
                "RoutingSession needs its routing_engine: make sessions with rwsplit.sessionmaker(engine)"
            )
        if not isinstance(routing_engine, RoutingEngine):
            raise TypeError(
                f"routing_engine must be a rwsplit RoutingEngine, got {type(routing_engine).__name__}"
            )
        self.routing_engine = routing_engine
        self.rwsplit_state = routing_engine._new_state(
            max_lag=max_lag, read_your_writes=read_your_writes, after=after
        )
        self._rwsplit_target: str | None = None
        self._rwsplit_call: tuple[Any, str | None] = (None, None)
        self._rwsplit_armed: Connection | None = None  # the replica connection of a pending causal wait
        self._rwsplit_engines = routing_engine.engines
        super().__init__(bind=routing_engine.primary if bind is None else bind, **kw)

    def get_bind(
        self,
        mapper: Any = None,
        *,
        clause: Any = None,
        bind: Any = None,
        _sa_skip_events: bool | None = None,
        _sa_skip_for_implicit_returning: bool = False,
        **kw: Any,
    ) -> Any:
        """Pick the engine for one statement; flushes, bulk operations and raw connections get the primary."""
        if bind is not None:
            return bind
        engine = self.routing_engine
        state = self.rwsplit_state
        flushing = compat.flushing(self)
        if clause is None or flushing:
            if flushing or mapper is not None:  # a flush or a bulk_* operation writes
                state.wrote()
                engine._observer.routed(_FLUSH, None)
            else:  # get_bind() without a statement: the transaction stays on the primary
                state.bind_transaction()
                engine._observer.routed(_CONNECTION, None)
            self._rwsplit_target = PRIMARY
            return engine.primary
        options, hint = self._rwsplit_call
        own, given = compat.statement_attrs(clause) if isinstance(clause, Executable) else _NOT_EXECUTABLE
        if options is None:
            options = own
        if hint is None:
            # ORM reloads after a write read the primary, unless a pin or causal reads cover them.
            reloads = state.session_wrote and not state.session_pinned and state.mode != "causal"
            if given or reloads:
                hint = self._load_hint(clause, given, reloads)
        decision = engine.router.decide(clause, state, options, hint)
        target = decision.target
        if decision.writes:
            state.ran_on_primary(decision.effect)
        elif decision.wait_for is not None:
            replica = self._rwsplit_engines[target]
            decision = engine._await_position(
                state,
                decision,
                lambda: self._waiting_connection(replica),
                lambda _: _forget_connection(self, replica),
                with_read=True,
            )
            target = decision.target
        self._rwsplit_target = target
        engine._observer.routed(decision, clause)
        if target != PRIMARY:
            return self._rwsplit_engines[target]
        return engine._bind_for(decision, state)

    def _waiting_connection(self, replica: Any) -> Connection:
        """The replica connection a causal wait runs on, its read next: ``execute`` disarms it after."""
        self._rwsplit_armed = connection = self.connection(bind_arguments={"bind": replica})
        return connection

    def consistency_token(self) -> str:
        """An opaque token of the latest position this session wrote or observed (causal mode).

        Send it with the next request and pass it to ``Session(after=token)``,
        :meth:`advance` or :func:`rwsplit.consistency`.
        """
        return self.routing_engine._encode_token(self.rwsplit_state.position)

    def advance(self, token: str) -> None:
        """Make this session's later reads see at least the position in ``token``."""
        self.rwsplit_state.advance(self.routing_engine._decode_token(token))

    def _load_hint(self, clause: Any, given: Sequence[Any], reloads: bool) -> str | None:
        """A reason to read from the primary that the statement carries (``given``: its
        ``.options()``; ``reloads``: whether an ORM refresh or relationship load is one), else None."""
        for option in given:
            if isinstance(option, UsePrimary):
                return "UsePrimary option"
        if reloads:
            load = compat.orm_load(clause)
            if load == "refresh":
                return "refresh after this session wrote"
            if load == "relationship":
                return "relationship load after this session wrote"
        return None

    if not TYPE_CHECKING:  # type checkers see Session's own signatures (ScalarResult[int] …)
        execute = _routing(
            Session.execute,
            "``Session.execute``: call-level options reach routing; failed replica reads are retried.",
        )
        scalars = _routing(Session.scalars, "``Session.scalars``, routed like :meth:`execute`.")
        scalar = _routing(Session.scalar, "``Session.scalar``, routed like :meth:`execute`.")

    def _recover(
        self, run: Any, statement: Any, params: Any, kw: dict[str, Any], options: Any, exc: DBAPIError
    ) -> Any:
        """A statement failed: re-run a replica read elsewhere (or re-raise), as failover decides."""

        def attempt(hint: str | None) -> Any:
            self._rwsplit_call = (options, hint)
            self._rwsplit_target = None
            return run(self, statement, params, **kw)

        engines = self._rwsplit_engines
        return recover_read(
            self.routing_engine,
            self.rwsplit_state,
            exc,
            attempt,
            lambda: self._rwsplit_target,
            lambda target: _forget_connection(self, engines[target]),
        )

    def connection(
        self,
        bind_arguments: dict[str, Any] | None = None,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Connection:
        """``Session.connection()``: rwsplit cannot see what runs through it, so it counts as a write
        of unknown tables (the transaction stays on the primary; a ``"session"`` session is pinned)."""
        if not (bind_arguments and "bind" in bind_arguments):
            self.rwsplit_state.wrote()
        return super().connection(bind_arguments=bind_arguments, execution_options=execution_options)

    def merge(self, instance: _O, *args: Any, **kw: Any) -> _O:
        """``Session.merge`` whose load decides INSERT vs UPDATE: that read goes to the primary."""
        with self.use_primary():
            return super().merge(instance, *args, **kw)

    def delete(self, instance: Any) -> None:
        """``Session.delete`` whose cascade loads decide what else is deleted: they read the primary."""
        with self.use_primary():
            super().delete(instance)

    @contextlib.contextmanager
    def use_primary(self) -> Iterator[RoutingSession]:
        """Within the block every statement of this session goes to the primary."""
        with self.rwsplit_state.primary_only():
            yield self

    @property
    def last_target(self) -> str | None:
        """Where this session's last statement went (``"primary"`` or a replica name)."""
        return self._rwsplit_target

    def close(self) -> None:
        super().close()
        self.rwsplit_state.reset()

    def reset(self) -> None:
        super().reset()
        self.rwsplit_state.reset()


def _forget_connection(session: Session, engine: Any) -> None:
    """Drop a dead replica connection from every level of the session's transaction.

    SQLAlchemy files each connection under its Engine and under the Connection itself, in the
    savepoint's transaction and in its parents; left anywhere, commit would touch it and fail.
    """
    trans: SessionTransaction | None = session.get_nested_transaction() or session.get_transaction()
    while trans is not None:
        connections = compat.transaction_connections(trans)
        entry = connections.pop(engine, None)
        if entry is not None:
            connections.pop(entry[0], None)
            with contextlib.suppress(Exception):
                entry[0].invalidate()
                entry[0].close()
        trans = trans.parent


def _causal_commit(session: Session) -> bool:
    """A real (outermost) commit of a causal session; releasing a savepoint commits nothing."""
    return (
        isinstance(session, RoutingSession)
        and session.rwsplit_state.mode == "causal"
        and not session.in_nested_transaction()
    )


@event.listens_for(RoutingSession, "before_commit")
def _before_commit(session: Session) -> None:
    if _causal_commit(session):
        request_capture()  # the flush inside commit may be this transaction's first write


@event.listens_for(RoutingSession, "after_commit")
def _after_commit(session: Session) -> None:
    if _causal_commit(session):
        captured = take_captured()
        assert isinstance(session, RoutingSession)
        position = session.routing_engine._parse_position(captured) if captured else None
        session.rwsplit_state.committed(position)


@event.listens_for(RoutingSession, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, RoutingSession):
        if session.rwsplit_state.mode == "causal":
            take_captured()  # a failed commit must not leave the capture armed for the next one
        session.rwsplit_state.transaction_ended()


@event.listens_for(Session, "after_begin")
def _unrouted_session(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    """``sqlalchemy.orm.Session(routing_engine)`` cannot route (flushes, refreshes and loads are only
    known to :class:`RoutingSession`): refuse it when it takes its first connection, before any SQL.

    SQLAlchemy calls nothing on the bind when a Session is built, so this is the earliest point.
    """
    if isinstance(connection, RoutingConnection):
        connection.close()
        raise TypeError(
            f"{type(session).__name__} is bound to a rwsplit RoutingEngine (or RoutingConnection), which "
            "a plain SQLAlchemy Session cannot route: make sessions with rwsplit.sessionmaker(engine) "
            "(or rwsplit.RoutingSession(routing_engine=engine)), async ones with "
            "rwsplit.async_sessionmaker(engine); for the primary alone, bind engine.primary"
        )


@overload
def sessionmaker(
    engine: RoutingEngine, *, class_: type[_S], **kw: Any
) -> sqlalchemy.orm.sessionmaker[_S]: ...
@overload
def sessionmaker(engine: RoutingEngine, **kw: Any) -> sqlalchemy.orm.sessionmaker[RoutingSession]: ...
def sessionmaker(engine: RoutingEngine, **kw: Any) -> sqlalchemy.orm.sessionmaker[Any]:
    """A ``sqlalchemy.orm.sessionmaker`` of :class:`RoutingSession` bound to a routing engine.

    ``engine``: the :class:`~rwsplit.RoutingEngine` from :func:`rwsplit.create_engine`.
    ``**kw``: sessionmaker's keywords (``expire_on_commit``, ``autoflush``, ``class_`` — a
    RoutingSession subclass, which then types the sessions …) plus per-session defaults
    ``max_lag``, ``read_your_writes`` and ``after`` (a consistency token), which each
    ``Session(...)`` call may override.
    """
    if not isinstance(engine, RoutingEngine):
        raise TypeError(f"rwsplit.sessionmaker needs a RoutingEngine, got {type(engine).__name__}")
    class_ = kw.pop("class_", RoutingSession)
    if not (isinstance(class_, type) and issubclass(class_, RoutingSession)):
        raise TypeError("class_ must be RoutingSession or a subclass of it")
    return sqlalchemy.orm.sessionmaker(class_=class_, routing_engine=engine, **kw)
