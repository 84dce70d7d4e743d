"""The public entry points: :func:`classify` and the statistics of its two caches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import Select

from .. import compat
from .constructs import classify_construct, classify_select, shapes
from .route import Route, Server
from .statements import classify_sql_cached, classify_str
from .vocabulary import Context, context, normalize_name


class CacheStats(NamedTuple):
    """Hit/miss counters and sizes of one classification cache."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class ClassifyCacheInfo(NamedTuple):
    """Statistics of the SQL-string cache and of the SQLAlchemy-construct cache."""

    sql: CacheStats
    constructs: CacheStats


_EMPTY: frozenset[str] = frozenset()


@lru_cache(maxsize=64)
def _normalized_names(names: frozenset[Any]) -> frozenset[str]:
    """Validate and normalize a read-only function set (cached per distinct set)."""
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"read_only_functions must contain str names, not {type(name).__name__}")
    return frozenset(normalize_name(name) for name in names if name.strip())


def classify(
    statement: Executable | str,
    *,
    dialect: Dialect | None = None,
    read_only_functions: Iterable[str] = _EMPTY,
    server: Server | None = None,
) -> Route:
    """Return where ``statement`` may run: ``Route(REPLICA, ...)`` only for proven pure reads.

    ``statement`` is a SQL string or a SQLAlchemy ``Executable``.
    ``read_only_functions`` names stored functions/UDFs (case-insensitive, optionally
    ``schema.name``) that the application declares free of writes and session state.
    ``dialect`` is only used to compile constructs whose SQL is partly generated at
    compile time (default: the MySQL dialect).
    ``server`` is the version floor of the servers that may run the read, e.g.
    ``("mariadb", (10, 11, 19))``; built-ins newer than that (or all version-gated ones
    when None, i.e. unknown) count as stored functions.
    """
    ro = _read_only(read_only_functions)
    if dialect is not None and not isinstance(dialect, Dialect):
        raise TypeError(f"dialect must be a SQLAlchemy Dialect or None, not {type(dialect).__name__}")
    return _classify(statement, context(ro, server), dialect)


def _read_only(read_only_functions: Iterable[str]) -> frozenset[str]:
    if not read_only_functions:
        return _EMPTY
    if isinstance(read_only_functions, str):
        raise TypeError("read_only_functions must be an iterable of str, not a str")
    names = read_only_functions
    return _normalized_names(names if isinstance(names, frozenset) else frozenset(names))


def _classify(statement: Executable | str, ctx: Context, dialect: Dialect | None) -> Route:
    cls = type(statement)
    if cls is Select:  # by far the most common statement: skip the type dispatch
        return classify_select(statement, ctx, dialect)
    if isinstance(statement, str):
        return classify_str(statement if cls is str else str.__str__(statement), ctx)
    if isinstance(statement, Executable):
        return classify_construct(statement, ctx, dialect)
    raise TypeError(
        f"classify() expects a SQL str or a SQLAlchemy Executable, not {type(statement).__name__}"
    )


def bound_classifier(
    read_only_functions: Iterable[str] = _EMPTY, server: Server | None = None
) -> Callable[[Executable | str], Route]:
    """:func:`classify` with its arguments checked and its context looked up once (for the router,
    which classifies every statement with the same ones)."""
    ctx = context(_read_only(read_only_functions), server)
    table = shapes.table(ctx, None)
    cache_key = compat.generate_cache_key

    def classify_bound(statement: Executable | str) -> Route:
        nonlocal table
        if type(statement) is Select:  # a known shape is one lookup in this context's table
            try:
                route = table.get(cache_key(statement).key)
            except Exception:  # no cache key: classify_select walks the statement
                route = None
            if route is None:
                table = shapes.table(ctx, None)  # the registered one, should a flood have replaced it
                return classify_select(statement, ctx, None)
            shapes.hits += 1
            return route
        return _classify(statement, ctx, None)

    return classify_bound


def cache_info() -> ClassifyCacheInfo:
    """Hit/miss statistics and sizes of the SQL-string and construct caches."""
    sql = classify_sql_cached.cache_info()
    return ClassifyCacheInfo(
        sql=CacheStats(sql.hits, sql.misses, sql.maxsize or 0, sql.currsize),
        constructs=CacheStats(*shapes.stats()),
    )


def cache_clear() -> None:
    """Empty both classification caches and reset their statistics."""
    classify_sql_cached.cache_clear()
    shapes.clear()
