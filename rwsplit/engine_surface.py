"""What a ``RoutingEngine`` answers as a SQLAlchemy ``Engine``: attributes, options, DDL and inspection.

Code written for an ``Engine`` (``engine.dialect``, ``metadata.create_all(engine)``,
``sqlalchemy.inspect(engine)``, ``engine.raw_connection()``) gets the primary's answer, so that
nothing written through these paths can reach a replica.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy.engine import URL, Engine
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.pool import Pool, PoolProxiedConnection

from . import compat
from .classifier import PRIMARY

if TYPE_CHECKING:
    from sqlalchemy.engine.reflection import Inspector

    from .engine import RoutingEngine

__all__ = ["EngineSurface"]

_PRIMARY_ONLY_OPTIONS = frozenset({"isolation_level"})


class EngineSurface:
    """Mixin of :class:`~rwsplit.RoutingEngine`: the ``Engine`` attributes and methods, from the primary."""

    primary: Engine
    _primary_reads: Engine
    _replicas: dict[str, Engine]
    replicas: tuple[Engine, ...]
    _engines: dict[str, Engine]

    def _all_engines(self) -> tuple[Engine, ...]:
        """Every SQLAlchemy Engine this routing engine owns (pools to dispose)."""
        return (*self._engines.values(), self._primary_reads)

    @property
    def url(self) -> URL:
        """The primary's URL (``str()`` of it hides the password, as for any ``Engine``)."""
        return self.primary.url

    @property
    def dialect(self) -> Dialect:
        """The primary's dialect (every server runs the same one)."""
        return self.primary.dialect

    @property
    def name(self) -> str:
        """The dialect name, ``"mysql"`` or ``"mariadb"``."""
        return self.primary.name

    @property
    def driver(self) -> str:
        """The DBAPI driver name, e.g. ``"pymysql"``."""
        return self.primary.driver

    @property
    def pool(self) -> Pool:
        """The primary's connection pool (each replica has its own: ``engine.engines[name].pool``)."""
        return self.primary.pool

    @property
    def echo(self) -> Any:
        """``echo`` of the primary; setting it sets every server's engine (their logs say which)."""
        return self.primary.echo

    @echo.setter
    def echo(self, value: Any) -> None:
        for engine in self._all_engines():
            engine.echo = value

    def raw_connection(self) -> PoolProxiedConnection:
        """A DBAPI connection from the primary's pool: raw SQL cannot be routed, so it runs there."""
        return self.primary.raw_connection()

    def cursor(self) -> NoReturn:
        """Refuse, naming what to pass instead: a ``RoutingEngine`` is no DBAPI connection.

        pandas takes anything but a SQLAlchemy ``Engine`` or ``Connection`` for a ``sqlite3``
        connection and asks it for a cursor (``pd.read_sql(sql, engine)``, ``read_sql_table``,
        ``to_sql``). Given a non-``Engine`` ``Connectable`` it would run its statements on that
        object itself, its ``begin()`` holding none of them: so the engine stays no ``Connectable``
        and pandas gets a routed connection instead.
        """
        raise TypeError(
            "a RoutingEngine is not a DBAPI connection, and pandas only routes through SQLAlchemy "
            "Connections: pass a routed connection (`with engine.connect() as conn: "
            "pd.read_sql(query, conn)`), or engine.primary to run everything on the primary; "
            "engine.raw_connection() is a DBAPI connection to the primary"
        )

    def get_execution_options(self) -> Any:
        """The execution options of this engine (view), as the primary has them."""
        return self.primary.get_execution_options()

    def execution_options(self, **opts: Any) -> RoutingEngine:
        """A view of this routing engine whose connections carry ``opts``, like ``Engine.execution_options``.

        The view shares pools, monitor and router with this engine (``dispose()`` of either
        disposes both). ``isolation_level`` applies to the primary only: replica reads always run in
        autocommit. ``rwsplit_*`` options steer single statements: pass them to the statement or
        to ``execute(..., execution_options=…)``.
        """
        routed = sorted(k for k in opts if k.startswith("rwsplit_"))
        if routed:
            raise ValueError(
                f"{routed} cannot be set on the engine; pass them per statement: "
                f"stmt.execution_options({routed[0]}=…) or execute(stmt, execution_options={{…}})"
            )
        everywhere = {k: v for k, v in opts.items() if k not in _PRIMARY_ONLY_OPTIONS}
        view = copy.copy(self)
        view.primary = self.primary.execution_options(**opts)
        view._primary_reads = self._primary_reads.execution_options(**everywhere)
        view._replicas = {n: e.execution_options(**everywhere) for n, e in self._replicas.items()}
        view.replicas = tuple(view._replicas.values())
        view._engines = {PRIMARY: view.primary, **view._replicas}
        return view  # type: ignore[return-value]

    def _run_ddl_visitor(self, visitorcallable: Any, element: Any, **kwargs: Any) -> None:
        """``metadata.create_all(engine)``, ``drop_all``, ``Table.create(engine)``: DDL runs on the primary.

        Replicas get it through replication (a new table is readable there once they caught up).
        """
        compat.run_ddl_visitor(self.primary, visitorcallable, element, **kwargs)


def _inspect_primary(engine: EngineSurface) -> Inspector:
    """``sqlalchemy.inspect(routing_engine)``: an Inspector on the primary (the schema's source)."""
    from sqlalchemy import inspect

    return inspect(engine.primary)


compat.register_inspection(EngineSurface, _inspect_primary)
