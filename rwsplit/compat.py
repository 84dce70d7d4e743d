"""Every SQLAlchemy private attribute rwsplit reads, in one place, each failing loudly.

SQLAlchemy may rename private attributes in any release. Each accessor here names what it
reads; when the attribute is missing it either raises :class:`SQLAlchemyChanged` or answers
the safe way (toward the primary), and ``tests`` check that every attribute still exists on
the installed SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.lambdas import StatementLambdaElement
from sqlalchemy.sql.selectable import ForUpdateArg, GenerativeSelect, HasHints, HasPrefixes, HasSuffixes

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
