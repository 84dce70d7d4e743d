"""Route SQLAlchemy statement objects (Core and ORM) by their structure, compiling when SQL is injected."""

from __future__ import annotations

import types
import weakref
from collections.abc import Hashable
from functools import lru_cache
from typing import Any, Final, TypeGuard

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Query
from sqlalchemy.schema import Column
from sqlalchemy.sql import visitors
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    ClauseList,
    ColumnClause,
    ColumnElement,
    TextClause,
    UnaryExpression,
)
from sqlalchemy.sql.functions import FunctionElement, next_value
from sqlalchemy.sql.lambdas import StatementLambdaElement
from sqlalchemy.sql.operators import custom_op
from sqlalchemy.sql.selectable import ForUpdateArg, GenerativeSelect, TextualSelect

from .. import compat
from .route import PRIMARY, READ, Route
from .statements import classify_str
from .vocabulary import (
    GEOMETRY_ARITY,
    SPECIAL_FUNCTIONS,
    SQLALCHEMY_GENERIC_FUNCTIONS,
    Context,
    arity_ok,
    normalize_name,
)

CONSTRUCT_CACHE_SIZE: Final = 1024
"""Entries of the cache of construct shapes (emptied when full)."""
_MAX_TABLES: Final = 256  # contexts with a table of their own (as many as vocabulary.context interns)


class _ShapeCache:
    """Routes of construct shapes, one table per context, keyed by SQLAlchemy's cache key;
    all emptied when ``maxsize`` shapes are held.

    Plain dicts: a hit is one lookup (atomic under the GIL, no lock); there are rarely more
    shapes than entries, so starting over when full bounds memory at little cost. A table per
    context spares the per-statement path building and hashing a composite key.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.tables: dict[tuple[Any, ...], dict[Hashable, Route]] = {}
        self.size = 0
        self.hits = 0
        self.misses = 0

    def table(self, ctx: Context, dialect: Dialect | None) -> dict[Hashable, Route]:
        """The table of one context and dialect (emptied in place when full or cleared)."""
        key = _table_key(ctx, dialect)
        table = self.tables.get(key)
        if table is None:
            if len(self.tables) >= _MAX_TABLES:  # contexts are few; a flood of them starts over
                flooded = list(self.tables.values())
                self.tables.clear()  # dropped first, then emptied: see put()
                for old in flooded:
                    old.clear()
                self.size = 0
            table = self.tables.setdefault(key, {})
        return table

    def put(self, ctx: Context, dialect: Dialect | None, key: Hashable, route: Route) -> None:
        """Store the route of a newly seen shape (a miss), starting over when full."""
        self.misses += 1
        if self.size >= self.maxsize:
            self.clear_tables()
        table = self.table(ctx, dialect)
        table[key] = route
        self.size += 1
        if self.tables.get(_table_key(ctx, dialect)) is not table:
            # A flood of contexts dropped this table meanwhile: a classifier still holding it must
            # not keep a route that cache_clear() can no longer reach.
            table.pop(key, None)

    def stats(self) -> tuple[int, int, int, int]:
        """``(hits, misses, maxsize, currsize)``."""
        return (self.hits, self.misses, self.maxsize, sum(len(t) for t in list(self.tables.values())))

    def clear_tables(self) -> None:
        """Empty every table in place (bound classifiers keep theirs)."""
        for table in list(self.tables.values()):
            table.clear()
        self.size = 0

    def clear(self) -> None:
        """Forget every shape and reset the counters."""
        self.clear_tables()
        self.hits = self.misses = 0


def _table_key(ctx: Context, dialect: Dialect | None) -> tuple[Any, ...]:
    return (ctx.ro, ctx.server, dialect.name if dialect is not None else None)


shapes = _ShapeCache(CONSTRUCT_CACHE_SIZE)


@lru_cache(maxsize=1)
def _default_dialect() -> Dialect:
    """The MySQL dialect used to compile constructs when none is given."""
    from sqlalchemy.dialects import mysql

    dialect: Dialect = mysql.dialect()  # typed as Any by some SQLAlchemy releases
    return dialect


def _fragment_route(text: str, ro: Context, what: str) -> Route | None:
    """Classify a raw SQL fragment embedded in a construct; None if it is harmless."""
    route = classify_str("SELECT " + text, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"{what}: {route.reason}", route.effect)
    return None


def _for_update_reason(arg: ForUpdateArg) -> str:
    """Human-readable locking clause of ``with_for_update()``."""
    words = ["FOR SHARE" if arg.read else "FOR UPDATE"]
    if arg.of:
        words.append("OF")
    if arg.nowait:
        words.append("NOWAIT")
    if arg.skip_locked:
        words.append("SKIP LOCKED")
    return "locking read: " + " ".join(words)


def _function_route(fn: FunctionElement[Any], ro: Context) -> Route | None:
    """Judge one SQL function element; None if it is a safe built-in or declared read-only."""
    if isinstance(fn, next_value):
        return Route(PRIMARY, f"sequence: NEXT VALUE FOR {fn.sequence.name}")
    name = getattr(fn, "name", None)
    if not isinstance(name, str):
        return Route(PRIMARY, f"unrecognized function element: {type(fn).__name__}")
    packages = tuple(getattr(fn, "packagenames", None) or ())
    if packages:
        full = normalize_name(".".join((*packages, name)))
        return None if full in ro.ro else Route(PRIMARY, f"stored function: {full}")
    upper = name.upper()
    special = SPECIAL_FUNCTIONS.get(upper)
    if special is not None:
        return special
    if upper in ro.builtins:
        arity = GEOMETRY_ARITY.get(upper.encode())
        if arity is None or arity_ok(arity, len(getattr(fn, "clauses", ()))):
            return None
        return Route(PRIMARY, f"{name.lower()}() with this argument count: a stored function")
    if upper in SQLALCHEMY_GENERIC_FUNCTIONS:
        return None
    if normalize_name(name) in ro.ro:
        return None
    return Route(PRIMARY, f"unknown function (stored function or UDF?): {name.lower()}")


def _type_has_sql(type_: Any) -> bool:
    """True if a SQLAlchemy type wraps binds or columns in SQL at compile time."""
    cls = type(type_)
    plain = _PLAIN_TYPE_CLASSES.get(cls)
    if plain is None:
        plain = not compat.type_renders_sql(cls)
        _PLAIN_TYPE_CLASSES[cls] = plain
    if plain:
        return False
    return compat.type_renders_sql(type_)


_PLAIN_TYPE_CLASSES: dict[type, bool] = {}
"""Type classes whose class attributes say they never add SQL (memoized)."""


def _is_custom_op(op: Any) -> TypeGuard[custom_op[Any]]:
    """True for ``op("...")`` operators (plain operator functions are skipped cheaply)."""
    return type(op) not in _PLAIN_OPERATOR_TYPES and isinstance(op, custom_op)


_PLAIN_OPERATOR_TYPES: Final = frozenset({types.FunctionType, types.BuiltinFunctionType, type(None)})


def _mapper_injects_sql(mapper: Any) -> bool:
    """True if loading this ORM entity renders SQL that is not in the statement tree."""
    for m in mapper.self_and_descendants:
        if m.polymorphic_on is not None and not isinstance(m.polymorphic_on, Column):
            return True
        for prop in m.column_attrs:
            for col in prop.columns:
                if not isinstance(col, Column) or _type_has_sql(col.type):
                    return True
        for rel in m.relationships:
            if rel.lazy in ("joined", False):
                return True
    return False


_MAPPER_VERDICTS: dict[int, tuple[weakref.ref[Any], int, bool]] = {}


def _mapper_needs_compile(mapper: Any) -> bool:
    """Cached :func:`_mapper_injects_sql` (recomputed if properties are added)."""
    props = len(mapper.attrs)
    entry = _MAPPER_VERDICTS.get(id(mapper))
    if entry is not None and entry[0]() is mapper and entry[1] == props:
        return entry[2]
    verdict = _mapper_injects_sql(mapper)
    _MAPPER_VERDICTS[id(mapper)] = (weakref.ref(mapper), props, verdict)
    return verdict


def _custom_operator_route(el: Any, ro: Context) -> Route | None:
    """Check the verbatim SQL of ``op("...")`` operators."""
    for attr in ("operator", "modifier"):
        op = getattr(el, attr, None)
        if _is_custom_op(op):
            route = _fragment_route(f"1 {op.opstring} 1", ro, "custom operator")
            if route is not None:
                return route
    return None


def _cannot_inspect(exc: compat.SQLAlchemyChanged) -> Route:
    """The safe answer when SQLAlchemy no longer has an attribute the classifier reads."""
    return Route(PRIMARY, f"cannot inspect the statement: {exc}", "write")


def _walk(stmt: Any, ro: Context, dialect: Dialect | None) -> Route:
    """:func:`_walk_construct`, answering "primary" if SQLAlchemy's internals changed."""
    try:
        return _walk_construct(stmt, ro, dialect)
    except compat.SQLAlchemyChanged as exc:
        return _cannot_inspect(exc)


def _walk_construct(stmt: Any, ro: Context, dialect: Dialect | None) -> Route:
    """Walk a select-like construct looking for anything that rules out a replica.

    A write ends the walk; locking and session-bound findings are collected (together: a write).
    """
    needs_compile = False
    mappers: set[int] = set()
    lock: str | None = None
    found: list[Route] = []
    for el in visitors.iterate(stmt):
        route: Route | None = None
        if isinstance(el, ForUpdateArg):
            lock = lock or _for_update_reason(el)
            continue
        if isinstance(el, UpdateBase):
            kind = "INSERT" if el.is_insert else "UPDATE" if el.is_update else "DELETE"
            return Route(PRIMARY, f"write inside a read construct: {kind}")
        if isinstance(el, FunctionElement):
            route = _function_route(el, ro)
        elif isinstance(el, TextualSelect):
            route = classify_str(el.element.text, ro)  # type: ignore[attr-defined]
            route = route if route.target == PRIMARY else None
        elif isinstance(el, TextClause):
            route = _fragment_route(el.text, ro, "text fragment")
        elif isinstance(el, ColumnClause) and el.is_literal:
            route = _fragment_route(el.name, ro, "literal column")
        elif isinstance(el, (BinaryExpression, UnaryExpression, ClauseList)):
            route = _custom_operator_route(el, ro)
        if route is not None:
            if route.effect == "write":
                return route
            found.append(route)
        if isinstance(el, GenerativeSelect):
            arg = compat.for_update_arg(el)
            if arg is not None:
                lock = lock or _for_update_reason(arg)
            for text in compat.statement_fragments(el):
                route = _fragment_route(text, ro, "prefix, suffix or hint")
                if route is not None:
                    if route.effect == "write":
                        return route
                    found.append(route)
            if compat.has_options(el):
                needs_compile = True
        if isinstance(el, ColumnElement) and _type_has_sql(el.type):
            needs_compile = True
        mapper = compat.parent_mapper(el)
        if mapper is not None and id(mapper) not in mappers:
            mappers.add(id(mapper))
            needs_compile = needs_compile or _mapper_needs_compile(mapper)
    if needs_compile:
        return _compiled_route(stmt, ro, dialect)
    if lock is not None:
        found.append(Route(PRIMARY, lock, "lock"))
    if not found:
        return READ
    if len({r.effect for r in found}) > 1:
        return Route(PRIMARY, "; ".join(dict.fromkeys(r.reason for r in found)))
    return found[0]


def _compiled_route(stmt: Any, ro: Context, dialect: Dialect | None) -> Route:
    """Compile a construct and classify the SQL it renders."""
    try:
        sql = stmt.compile(dialect=dialect or _default_dialect()).string
    except Exception as exc:
        return Route(PRIMARY, f"could not compile to inspect it: {type(exc).__name__}")
    route = classify_str(sql, ro)
    if route.target == PRIMARY:
        return Route(PRIMARY, f"compiled SQL: {route.reason}", route.effect)
    return route


def classify_select(stmt: Any, ro: Context, dialect: Dialect | None) -> Route:
    """Cached structural classification, keyed by SQLAlchemy's memoized statement cache key.

    Generating the key is not extra work: SQLAlchemy memoizes it on the statement and reuses it
    to find the compiled form when the statement is executed right after.
    """
    cache_key = compat.statement_cache_key(stmt)
    if cache_key is None:
        return _walk(stmt, ro, dialect)
    route = shapes.table(ro, dialect).get(cache_key)
    if route is None:
        route = _walk(stmt, ro, dialect)
        shapes.put(ro, dialect, cache_key, route)
    else:
        shapes.hits += 1
    return route


_DML_ROUTES: dict[str, Route] = {}  # "write: INSERT" …: a handful, made once (a write is routed per call)


def classify_construct(stmt: Any, ro: Context, dialect: Dialect | None) -> Route:
    """Classify a SQLAlchemy executable by its type and structure."""
    if isinstance(stmt, TextClause):
        return classify_str(stmt.text, ro)
    if isinstance(stmt, TextualSelect):
        return classify_str(stmt.element.text, ro)  # type: ignore[attr-defined]
    if isinstance(stmt, ExecutableDDLElement):
        return Route(PRIMARY, f"DDL: {type(stmt).__name__}")
    if getattr(stmt, "is_dml", False):
        kind = "INSERT" if stmt.is_insert else "UPDATE" if stmt.is_update else "DELETE"
        if not (stmt.is_insert or stmt.is_update or stmt.is_delete):
            kind = type(stmt).__name__
        return _DML_ROUTES.get(kind) or _DML_ROUTES.setdefault(kind, Route(PRIMARY, f"write: {kind}"))
    if isinstance(stmt, Query):
        return classify_construct(stmt.statement, ro, dialect)
    try:
        inner = compat.from_statement_element(stmt)
        if isinstance(stmt, StatementLambdaElement):
            inner = compat.lambda_statement(stmt)
    except compat.SQLAlchemyChanged as exc:
        return _cannot_inspect(exc)
    if inner is not None:
        return classify_construct(inner, ro, dialect)
    if isinstance(stmt, (GenerativeSelect, FunctionElement)):
        return classify_select(stmt, ro, dialect)
    return Route(PRIMARY, f"unsupported statement type: {type(stmt).__name__}")
