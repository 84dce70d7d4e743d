"""Every SQLAlchemy private attribute rwsplit reads, in one place, each failing loudly.

SQLAlchemy may rename private attributes in any release. Each accessor here names what it
reads; when the attribute is missing it either raises :class:`SQLAlchemyChanged` or answers
the safe way (toward the primary), and ``tests`` check that every attribute still exists on
the installed SQLAlchemy.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.lambdas import StatementLambdaElement
from sqlalchemy.sql.selectable import (
    ForUpdateArg,
    GenerativeSelect,
    HasHints,
    HasPrefixes,
    HasSuffixes,
    Select,
)

__all__ = ["SQLAlchemyChanged"]


class SQLAlchemyChanged(RuntimeError):
    """A private SQLAlchemy attribute rwsplit relies on is gone: upgrade rwsplit or pin SQLAlchemy."""


# ------------------------------------------------------------------ statements (classification)
# Missing attributes raise SQLAlchemyChanged; the classifier answers "primary" for them.


def _private(obj: object, name: str) -> Any:
    """``obj.<name>``, or :class:`SQLAlchemyChanged` naming it if SQLAlchemy dropped it."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise SQLAlchemyChanged(f"{type(obj).__name__}.{name} is gone") from None


def _from_statement_class() -> type | None:
    """``sqlalchemy.orm.context.FromStatement`` (a private module); None if it moved."""
    try:
        from sqlalchemy.orm.context import FromStatement
    except ImportError:
        return None
    return FromStatement


_FROM_STATEMENT: Final = _from_statement_class()


def from_statement_element(stmt: object) -> Any:
    """The statement inside ``select(Entity).from_statement(stmt)``, else None.

    If SQLAlchemy moved ``FromStatement`` this is None and the classifier treats such
    statements as unsupported (primary).
    """
    if _FROM_STATEMENT is None or not isinstance(stmt, _FROM_STATEMENT):
        return None
    return _private(stmt, "element")


def lambda_statement(stmt: StatementLambdaElement) -> Any:
    """The statement a ``lambda_stmt()`` resolves to (``StatementLambdaElement._resolved``)."""
    return _private(stmt, "_resolved")


def for_update_arg(stmt: GenerativeSelect) -> ForUpdateArg | None:
    """The ``with_for_update()`` clause of a select (``GenerativeSelect._for_update_arg``)."""
    arg: ForUpdateArg | None = _private(stmt, "_for_update_arg")
    return arg


def statement_fragments(stmt: object) -> list[str]:
    """Texts of a statement's prefixes, suffixes, table hints and statement hints.

    Reads ``_prefixes``, ``_suffixes``, ``_hints`` and ``_statement_hints`` of statements
    that support them (``HasPrefixes``, ``HasSuffixes``, ``HasHints``).
    """
    texts: list[str] = []
    if isinstance(stmt, HasPrefixes):
        texts += [str(getattr(t, "text", t)) for t, _ in _private(stmt, "_prefixes")]
    if isinstance(stmt, HasSuffixes):
        texts += [str(getattr(t, "text", t)) for t, _ in _private(stmt, "_suffixes")]
    if isinstance(stmt, HasHints):
        texts += [str(t) for t in dict(_private(stmt, "_hints") or {}).values()]
        texts += [str(t) for _, t in _private(stmt, "_statement_hints")]
    return texts


def has_options(stmt: object) -> bool:
    """True if ``.options(...)`` (e.g. ORM loader options) were applied (``Executable._with_options``)."""
    return isinstance(stmt, Executable) and bool(_private(stmt, "_with_options"))


def parent_mapper(element: object) -> Any:
    """The ORM mapper an element was annotated with (``_annotations["parentmapper"]``), else None."""
    if not isinstance(element, ClauseElement):
        return None
    annotations = _private(element, "_annotations")
    return annotations.get("parentmapper") if annotations else None


def type_renders_sql(type_or_class: object) -> bool:
    """True if a SQL type (instance or class) wraps its binds or columns in SQL when compiled.

    Reads ``TypeEngine._has_column_expression`` and ``_has_bind_expression`` (on a class,
    a memoized property counts as true: ask the instance).
    """
    return bool(
        _private(type_or_class, "_has_column_expression") or _private(type_or_class, "_has_bind_expression")
    )


generate_cache_key: Final[Callable[[Any], Any]] = operator.methodcaller("_generate_cache_key")
"""``stmt._generate_cache_key()`` without a Python frame, for the per-statement path: the
caller catches what it raises (no such method, or None has no ``.key``) and falls back to
:func:`statement_cache_key`."""


def statement_cache_key(stmt: Any) -> Hashable | None:
    """SQLAlchemy's statement cache key (``_generate_cache_key()``, memoized on the statement).

    None if the statement has none or SQLAlchemy dropped the method: the classification is
    then not cached, which costs time but not correctness.
    """
    try:
        cache_key = stmt._generate_cache_key()
    except Exception:
        return None
    return None if cache_key is None else cache_key.key


# ------------------------------------------------------------------ sessions and engines
# Read on every statement a session routes: the common case costs one attribute access.


def _public_statement_options(statement: object) -> Mapping[str, Any] | None:
    return statement.get_execution_options() if isinstance(statement, Executable) else None


def _checked_user_options(statement: object) -> Sequence[Any]:
    if not isinstance(statement, Executable):
        return ()
    options: Sequence[Any] = _private(statement, "_with_options")
    return options


# Executable keeps both as class-level defaults; where it does, one getattr answers.
_FAST_STATEMENT_ATTRS: Final = all(
    hasattr(Executable, name) for name in ("_execution_options", "_with_options")
)


def statement_options(statement: object) -> Mapping[str, Any] | None:
    """A statement's own execution options (what ``get_execution_options()`` returns:
    ``Executable._execution_options``); None for SQL text."""
    if _FAST_STATEMENT_ATTRS:
        return getattr(statement, "_execution_options", None)
    return _public_statement_options(statement)


def user_options(statement: object) -> Sequence[Any]:
    """What ``.options(...)`` gave a statement (``Executable._with_options``).

    The public ``ORMExecuteState.user_defined_options`` exists only inside an ORM event, which
    would cost more than the routing itself.
    """
    if _FAST_STATEMENT_ATTRS:
        return getattr(statement, "_with_options", ())
    return _checked_user_options(statement)


def _checked_statement_attrs(statement: Executable) -> tuple[Mapping[str, Any] | None, Sequence[Any]]:
    return statement_options(statement), user_options(statement)


statement_attrs: Final[Callable[[Executable], tuple[Mapping[str, Any] | None, Sequence[Any]]]] = (
    operator.attrgetter("_execution_options", "_with_options")
    if _FAST_STATEMENT_ATTRS
    else _checked_statement_attrs
)
"""``(statement_options(s), user_options(s))`` of an Executable in one C-level call (a session's
per-statement path; only for Executables: the fast form reads the attributes without defaults)."""


def _orm_compile_options() -> Any:
    """The ORM's compile options class, if it still has the two flags :func:`orm_load` reads."""
    from sqlalchemy.orm import context

    state = getattr(context, "_ORMCompileState", None) or getattr(context, "ORMCompileState", None)
    options = getattr(state, "default_compile_options", None)
    if not (hasattr(options, "_for_refresh_state") and hasattr(options, "_current_path")):
        return None
    return options


_ORM_COMPILE_OPTIONS: Final = _orm_compile_options()


def orm_load(statement: object) -> str | None:
    """``"refresh"`` for a load of expired or deferred columns of an object, ``"relationship"`` for a
    relationship load, else None: ``ORMExecuteState.is_column_load``/``is_relationship_load``
    without the ORM event (``_compile_options._for_refresh_state``/``_current_path``)."""
    if _ORM_COMPILE_OPTIONS is None:
        raise SQLAlchemyChanged("the ORM compile options _for_refresh_state/_current_path are gone")
    opts = getattr(statement, "_compile_options", None)  # text() and DML carry none
    if opts is None and isinstance(statement, Select):
        raise SQLAlchemyChanged("Select._compile_options is gone")
    if getattr(opts, "_for_refresh_state", False):
        return "refresh"
    path = getattr(opts, "_current_path", None)
    if path is not None and not path.is_root:
        return "relationship"
    return None


def _checked_flushing(session: Session) -> bool:
    """The session is flushing (``Session._flushing``): what it sends now writes."""
    return bool(_private(session, "_flushing"))


def _flushing_accessor() -> Callable[[Session], bool]:
    """``Session._flushing`` as a C-level getter (read on every statement) if a new Session has
    it, else the checked accessor that names the missing attribute."""
    probe = Session()
    try:
        if isinstance(getattr(probe, "_flushing", None), bool):
            return operator.attrgetter("_flushing")
        return _checked_flushing
    finally:
        probe.close()


flushing: Final = _flushing_accessor()


def transaction_connections(trans: SessionTransaction) -> dict[Any, Any]:
    """Where a session transaction files its connections, by Engine and by Connection
    (``SessionTransaction._connections``)."""
    connections: dict[Any, Any] = _private(trans, "_connections")
    return connections


def wrap_dialect(engine: Engine, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``dialect.<name>`` of this engine only (SQLAlchemy calls it on the dialect instance)
    by ``wrap(original)``."""
    dialect = engine.dialect
    original = getattr(dialect, name, None)
    if not callable(original):
        raise SQLAlchemyChanged(f"Dialect.{name} is gone")
    setattr(dialect, name, wrap(original))


# ------------------------------------------------------------------ the engine surface
# SQLAlchemy calls ``bind._run_ddl_visitor`` for create_all/drop_all/Table.create, and has no
# public way to make a new class inspectable.


def run_ddl_visitor(engine: Engine, visitor: Any, element: Any, **kw: Any) -> None:
    """Run a DDL visitor (``create_all``, ``drop_all``, ``Table.create``) on ``engine``, in one
    transaction (``Engine._run_ddl_visitor``, which SQLAlchemy calls on the bind it was given)."""
    _private(engine, "_run_ddl_visitor")(visitor, element, **kw)


def register_inspection(cls: type, inspector: Callable[[Any], Any]) -> bool:
    """Make ``sqlalchemy.inspect(obj)`` of a ``cls`` instance answer ``inspector(obj)``
    (``sqlalchemy.inspection._inspects``). False if SQLAlchemy dropped the hook: ``inspect()`` then
    raises ``NoInspectionAvailable`` as before, and ``inspect(engine.primary)`` still works."""
    from sqlalchemy import inspection

    inspects = getattr(inspection, "_inspects", None)
    if inspects is None:
        return False
    inspects(cls)(inspector)
    return True
