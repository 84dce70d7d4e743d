"""Async rwsplit: ``create_async_engine``, ``async_sessionmaker`` and the async Core connection.

A thin async facade over the sync routing path, the way SQLAlchemy's ``ext/asyncio`` wraps its
sync ``Engine`` and ``Session``: the engines are built by ``sqlalchemy.ext.asyncio`` (asyncmy,
aiomysql) and every statement, causal wait, retry and commit runs in SQLAlchemy's greenlet, so
the same classifier, policy, balancer and failover decide, and the event loop is never blocked.
The monitor probes from its own threads with its own PyMySQL connections, beside the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import sqlalchemy.exc as sa_exc
import sqlalchemy.ext.asyncio as sa_async
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncResult, AsyncScalarResult, AsyncSession
from sqlalchemy.ext.asyncio.base import asyncstartablecontext
from sqlalchemy.util import greenlet_spawn

from .connection import RoutingConnection
from .engine import RoutingEngine, ServerReport, building_async, create_engine
from .observe import Stats
from .session import RoutingSession

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult, NestedTransaction, ScalarResult
    from sqlalchemy.sql.base import Executable
    from sqlalchemy.sql.selectable import TypedReturnsRows
    from typing_extensions import TypeVarTuple, Unpack

    from .consistency_state import ConsistencyState
    from .transaction import RoutingTransaction

    _Ts = TypeVarTuple("_Ts")
    _AnyRow = tuple[Any, ...]

__all__ = [
    "create_async_engine",
    "AsyncRoutingEngine",
    "AsyncRoutingConnection",
    "AsyncRoutingTransaction",
    "AsyncRoutingNestedTransaction",
    "AsyncRoutingSession",
    "async_sessionmaker",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_S = TypeVar("_S", bound="AsyncRoutingSession")


def _with_options_of(
    sync: Callable[_P, RoutingEngine],
) -> Callable[[Callable[..., AsyncRoutingEngine]], Callable[_P, AsyncRoutingEngine]]:
    """Type a factory as taking exactly the options of ``sync`` (one list of options, not two)."""

    def typed(factory: Callable[..., AsyncRoutingEngine]) -> Callable[_P, AsyncRoutingEngine]:
        return factory

    return typed


@_with_options_of(create_engine)
def create_async_engine(*args: Any, **kwargs: Any) -> AsyncRoutingEngine:
    """:func:`rwsplit.create_engine` for asyncio: the same options, async drivers (``mysql+asyncmy://``,
    ``mysql+aiomysql://``), an :class:`AsyncRoutingEngine`.

    Like SQLAlchemy's ``create_async_engine`` it is a plain function; it waits (at most
    ``monitor_timeout``) for the monitor's first probes, so call it at start-up.
    """
    with building_async():
        return AsyncRoutingEngine(create_engine(*args, **kwargs))


class AsyncRoutingEngine:
    """The async face of a :class:`~rwsplit.RoutingEngine`: ``connect()``, ``begin()``, ``dispose()``.

    ``sync_engine`` is the routing engine that decides (shared with every session and connection
    made from this one); ``primary`` and ``replicas`` are SQLAlchemy ``AsyncEngine`` objects
    (Alembic's async template and DDL: ``async with engine.primary.begin() as conn:
    await conn.run_sync(metadata.create_all)``).
    """

    def __init__(self, sync_engine: RoutingEngine) -> None:
        self.sync_engine = sync_engine
        self.primary = AsyncEngine(sync_engine.primary)
        self.replicas: tuple[AsyncEngine, ...] = tuple(AsyncEngine(e) for e in sync_engine.replicas)

    @property
    def replica_names(self) -> tuple[str, ...]:
        return self.sync_engine.replica_names

    @property
    def cluster_id(self) -> str:
        return self.sync_engine.cluster_id

    @property
    def url(self) -> URL:
        return self.sync_engine.url

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @property
    def name(self) -> str:
        return self.sync_engine.name

    @property
    def driver(self) -> str:
        return self.sync_engine.driver

    def status(self) -> list[ServerReport]:
        """The monitor's latest view of every server (no I/O: it reads the last probes)."""
        return self.sync_engine.status()

    def verify_token(self, token: str) -> None:
        """:meth:`rwsplit.RoutingEngine.verify_token` (``ValueError`` for a token it would refuse)."""
        self.sync_engine.verify_token(token)

    def stats(self, reset: bool = False) -> Stats:
        """What this engine routed (:meth:`rwsplit.RoutingEngine.stats`)."""
        return self.sync_engine.stats(reset)

    def connect(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> AsyncRoutingConnection:
        """``async with engine.connect() as conn:`` — a Core connection routing each statement."""
        return AsyncRoutingConnection(
            self.sync_engine.connect(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        )

    @contextlib.asynccontextmanager
    async def begin(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> AsyncIterator[AsyncRoutingConnection]:
        """``async with engine.begin() as conn:`` — commits on success, rolls back on error."""
        conn = self.connect(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        async with conn, conn.begin():
            yield conn

    async def dispose(self, close: bool = True) -> None:
        """Stop the monitor and close every pooled connection (awaited, as ``AsyncEngine.dispose``).

        The monitor's threads are joined in a worker thread: one may be in the middle of a probe
        of a server that stopped answering (up to ``monitor_timeout``), which must not stall the loop.
        """
        await asyncio.to_thread(self.sync_engine.monitor.stop)
        await greenlet_spawn(self.sync_engine.dispose, close)

    async def __aenter__(self) -> AsyncRoutingEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dispose()

    def __repr__(self) -> str:
        return f"Async{self.sync_engine!r}"


class AsyncRoutingTransaction:
    """What :meth:`AsyncRoutingConnection.begin` returns: ``await`` its ``commit()``/``rollback()``,
    or use it as an ``async with`` block (commits on success, rolls back on error).

    As SQLAlchemy's ``AsyncTransaction`` it may be awaited (``trans = await conn.begin()``). When
    beginning needs a round trip (pinned primary reads autobegan a transaction, which ``begin()``
    commits first) it happens when the transaction is awaited or entered, in the greenlet.
    """

    def __init__(self, connection: AsyncRoutingConnection, sync: RoutingTransaction | None) -> None:
        self.connection = connection
        self.sync_transaction = sync

    @property
    def is_active(self) -> bool:
        return (
            self.sync_transaction.is_active
            if self.sync_transaction is not None
            else not self.connection.closed
        )

    async def start(self) -> AsyncRoutingTransaction:
        """Begin, if that waited for a round trip (``await conn.begin()`` calls this)."""
        if self.sync_transaction is None:
            self.sync_transaction = await self.connection._call(self.connection.sync_connection.begin)
        return self

    def __await__(self) -> Generator[Any, None, AsyncRoutingTransaction]:
        return self.start().__await__()

    async def commit(self) -> None:
        if self.sync_transaction is None:  # never awaited: its statements ran in the connection's own
            await self.connection.commit()
        else:
            await self.connection._call(self.sync_transaction.commit)

    async def rollback(self) -> None:
        if self.sync_transaction is None:
            await self.connection.rollback()
        else:
            await self.connection._call(self.sync_transaction.rollback)

    async def __aenter__(self) -> AsyncRoutingTransaction:
        await self.start()
        assert self.sync_transaction is not None
        self.sync_transaction.__enter__()
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        assert self.sync_transaction is not None
        await self.connection._call(self.sync_transaction.__exit__, exc_type, *exc)


class AsyncRoutingNestedTransaction:
    """What :meth:`AsyncRoutingConnection.begin_nested` returns: a SAVEPOINT on the primary.

    ``async with conn.begin_nested():`` (released on success, rolled back to on error), or
    ``sp = await conn.begin_nested()`` then ``await sp.commit()``/``await sp.rollback()``, as with
    SQLAlchemy's ``AsyncConnection``. ``sync_transaction`` is the ``NestedTransaction`` once begun.
    """

    def __init__(self, connection: AsyncRoutingConnection) -> None:
        self.connection = connection
        self.sync_transaction: NestedTransaction | None = None

    @property
    def is_active(self) -> bool:
        return self.sync_transaction is not None and self.sync_transaction.is_active

    async def start(self) -> AsyncRoutingNestedTransaction:
        if self.sync_transaction is None:
            self.sync_transaction = await self.connection._call(self.connection.sync_connection.begin_nested)
        return self

    def __await__(self) -> Generator[Any, None, AsyncRoutingNestedTransaction]:
        return self.start().__await__()

    def _begun(self) -> NestedTransaction:
        if self.sync_transaction is None:
            raise sa_exc.InvalidRequestError("this savepoint was never begun: await conn.begin_nested()")
        return self.sync_transaction

    async def commit(self) -> None:
        """Release the savepoint."""
        await self.connection._call(self._begun().commit)

    async def rollback(self) -> None:
        """Roll back to the savepoint."""
        await self.connection._call(self._begun().rollback)

    async def __aenter__(self) -> AsyncRoutingNestedTransaction:
        return await self.start()

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.connection._call(self._begun().__exit__, exc_type, *exc)


class AsyncRoutingConnection:
    """An async Core connection that routes each statement, over a :class:`~rwsplit.RoutingConnection`.

    Statements run in SQLAlchemy's greenlet on the connection they route to; results come back
    buffered, as from ``AsyncConnection.execute``. ``run_sync(fn)`` calls ``fn(sync_connection)``
    there (Alembic's ``connection.run_sync(do_migrations)``).
    """

    def __init__(self, sync_connection: RoutingConnection) -> None:
        self.sync_connection = sync_connection
        self._isolation_level: str | None = None  # set by execution_options(), applied in the greenlet

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` in SQLAlchemy's greenlet, after a pending isolation level."""
        return await greenlet_spawn(self._in_greenlet, fn, args, kwargs)

    def _in_greenlet(self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _T:
        level, self._isolation_level = self._isolation_level, None
        if level is not None:  # checks out the primary's connection: I/O, here in the greenlet
            self.sync_connection.execution_options(isolation_level=level)
        return fn(*args, **kwargs)

    @property
    def state(self) -> ConsistencyState:
        return self.sync_connection.state

    @property
    def last_target(self) -> str | None:
        """Where the last statement ran (``"primary"`` or a replica name)."""
        return self.sync_connection.last_target

    @property
    def closed(self) -> bool:
        return self.sync_connection.closed

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    @property
    def info(self) -> dict[Any, Any]:
        return self.sync_connection.info

    @overload
    async def execute(
        self,
        statement: TypedReturnsRows[Unpack[_Ts]],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> CursorResult[Unpack[_Ts]]: ...
    @overload
    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> CursorResult[Unpack[_AnyRow]]: ...
    async def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        """``AsyncConnection.execute``, on the connection this statement routes to."""
        return await self._call(
            self.sync_connection.execute, statement, parameters, execution_options=execution_options
        )

    async def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Mapping[str, Any] | None = None
    ) -> CursorResult[Unpack[_AnyRow]]:
        """``AsyncConnection.exec_driver_sql``, routed by the text of ``statement``."""
        return await self._call(
            self.sync_connection.exec_driver_sql, statement, parameters, execution_options
        )

    async def scalar(
        self, statement: Executable, parameters: Any = None, *, execution_options: Any = None
    ) -> Any:
        """The first column of the first row, routed like :meth:`execute`."""
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalar()

    @overload
    async def scalars(
        self,
        statement: TypedReturnsRows[_T],
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> ScalarResult[_T]: ...
    @overload
    async def scalars(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> ScalarResult[Any]: ...
    async def scalars(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        """The first column of every row, routed like :meth:`execute`."""
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalars()

    @asyncstartablecontext
    async def stream(
        self, statement: Executable, parameters: Any = None, *, execution_options: Any = None
    ) -> AsyncIterator[AsyncResult[Unpack[_AnyRow]]]:
        """``AsyncConnection.stream``: rows fetched as they are iterated (a server-side cursor on the
        connection the statement routes to); ``await conn.stream(…)`` or ``async with``."""
        options = {**(execution_options or {}), "stream_results": True}
        result = await greenlet_spawn(
            self.sync_connection.execute, statement, parameters, execution_options=options
        )
        streamed = AsyncResult(result)
        try:
            yield streamed
        except GeneratorExit:
            pass
        else:
            await streamed.close()

    @asyncstartablecontext
    async def stream_scalars(
        self, statement: Executable, parameters: Any = None, *, execution_options: Any = None
    ) -> AsyncIterator[AsyncScalarResult[Any]]:
        """:meth:`stream`, yielding the first column of each row."""
        async with self.stream(statement, parameters, execution_options=execution_options) as result:
            yield result.scalars()

    async def run_sync(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(sync_connection, *args, **kwargs)`` in the greenlet (``AsyncConnection.run_sync``)."""
        return await self._call(fn, self.sync_connection, *args, **kwargs)

    def begin(self) -> AsyncRoutingTransaction:
        """A transaction: ``async with conn.begin():``, ``await conn.begin()`` or ``trans = conn.begin()``
        then ``await trans.commit()`` (writes begin on the primary)."""
        sync = self.sync_connection
        sync._check_can_begin()
        if self._isolation_level is not None or sync._reads_in_transaction():
            return AsyncRoutingTransaction(self, None)  # begins when awaited: a round trip first
        return AsyncRoutingTransaction(self, sync.begin())

    def begin_nested(self) -> AsyncRoutingNestedTransaction:
        """A SAVEPOINT on the primary: ``async with conn.begin_nested():`` or
        ``sp = await conn.begin_nested()`` then ``await sp.commit()`` (the transaction stays there)."""
        return AsyncRoutingNestedTransaction(self)

    def in_transaction(self) -> bool:
        return self.sync_connection.in_transaction()

    def execution_options(self, **options: Any) -> AsyncRoutingConnection:
        """Options for every later statement of this connection, returned (awaitable, as
        ``await conn.execution_options(...)`` with SQLAlchemy). ``isolation_level`` is the
        primary's: set on its connection (a round trip) when awaited or before the next statement."""
        level = options.pop("isolation_level", None)
        self.sync_connection.execution_options(**options)
        if level is not None:
            self._isolation_level = level
        return self

    async def commit(self) -> None:
        await self._call(self.sync_connection.commit)

    async def rollback(self) -> None:
        await self._call(self.sync_connection.rollback)

    async def invalidate(self, exception: BaseException | None = None) -> None:
        await greenlet_spawn(self.sync_connection.invalidate, exception)

    async def close(self) -> None:
        """Roll back anything uncommitted and return the connections to their pools."""
        self._isolation_level = None
        await greenlet_spawn(self.sync_connection.close)

    def consistency_token(self) -> str:
        """A token of everything this connection wrote or read (``read_your_writes="causal"``)."""
        return self.sync_connection.consistency_token()

    def advance(self, token: str) -> None:
        """Make later reads see at least the position in ``token``."""
        self.sync_connection.advance(token)

    async def _settled(self) -> AsyncRoutingConnection:
        if self._isolation_level is not None:
            await self._call(lambda: None)
        return self

    def __await__(self) -> Generator[Any, None, AsyncRoutingConnection]:
        """``conn = await engine.connect()`` as with SQLAlchemy (nothing to open until a statement);
        ``await conn.execution_options(isolation_level=…)`` sets the level on the primary now."""
        return self._settled().__await__()

    async def __aenter__(self) -> AsyncRoutingConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncRoutingSession(AsyncSession):
    """An ``AsyncSession`` whose sync session is a :class:`~rwsplit.RoutingSession`.

    Make it with :func:`async_sessionmaker`. ``last_target``, ``consistency_token()``,
    ``advance()``, ``use_primary()`` and ``rwsplit_state`` are the routing session's.
    """

    sync_session_class = RoutingSession
    sync_session: RoutingSession

    def __init__(
        self,
        bind: Any = None,
        *,
        routing_engine: AsyncRoutingEngine | RoutingEngine | None = None,
        **kw: Any,
    ) -> None:
        if routing_engine is None and isinstance(bind, AsyncRoutingEngine):
            bind, routing_engine = None, bind  # AsyncRoutingSession(engine), as AsyncSession(engine)
        if isinstance(routing_engine, AsyncRoutingEngine):
            routing_engine = routing_engine.sync_engine
        super().__init__(bind, routing_engine=routing_engine, **kw)

    @property
    def last_target(self) -> str | None:
        """Where this session's last statement went (``"primary"`` or a replica name)."""
        return self.sync_session.last_target

    @property
    def rwsplit_state(self) -> ConsistencyState:
        return self.sync_session.rwsplit_state

    def consistency_token(self) -> str:
        """An opaque token of the latest position this session wrote or observed (causal mode)."""
        return self.sync_session.consistency_token()

    def advance(self, token: str) -> None:
        """Make this session's later reads see at least the position in ``token``."""
        self.sync_session.advance(token)

    @contextlib.contextmanager
    def use_primary(self) -> Iterator[AsyncRoutingSession]:
        """Within the block every statement of this session goes to the primary."""
        with self.sync_session.use_primary():
            yield self


@overload
def async_sessionmaker(
    engine: AsyncRoutingEngine, *, class_: type[_S], **kw: Any
) -> sa_async.async_sessionmaker[_S]: ...
@overload
def async_sessionmaker(
    engine: AsyncRoutingEngine, **kw: Any
) -> sa_async.async_sessionmaker[AsyncRoutingSession]: ...
def async_sessionmaker(engine: AsyncRoutingEngine, **kw: Any) -> sa_async.async_sessionmaker[Any]:
    """A ``sqlalchemy.ext.asyncio.async_sessionmaker`` of :class:`AsyncRoutingSession`.

    ``engine``: from :func:`create_async_engine`. ``**kw``: ``async_sessionmaker``'s keywords
    (``expire_on_commit`` …) plus per-session defaults ``max_lag``, ``read_your_writes`` and
    ``after``, which each ``Session(...)`` call may override, as with :func:`rwsplit.sessionmaker`.
    """
    if not isinstance(engine, AsyncRoutingEngine):
        hint = " (a sync engine: use rwsplit.sessionmaker)" if isinstance(engine, RoutingEngine) else ""
        raise TypeError(
            f"rwsplit.async_sessionmaker needs an AsyncRoutingEngine from rwsplit.create_async_engine, "
            f"got {type(engine).__name__}{hint}"
        )
    class_ = kw.pop("class_", AsyncRoutingSession)
    if not (isinstance(class_, type) and issubclass(class_, AsyncRoutingSession)):
        raise TypeError("class_ must be AsyncRoutingSession or a subclass of it")
    return sa_async.async_sessionmaker(class_=class_, routing_engine=engine.sync_engine, **kw)
