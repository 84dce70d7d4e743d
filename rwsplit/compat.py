"""Every SQLAlchemy private attribute rwsplit reads, in one place, each failing loudly.

SQLAlchemy may rename private attributes in any release. Each accessor here names what it
reads; when the attribute is missing it either raises :class:`SQLAlchemyChanged` or answers
the safe way (toward the primary), and ``tests`` check that every attribute still exists on
the installed SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.base import Executable

__all__ = ["SQLAlchemyChanged"]


class SQLAlchemyChanged(RuntimeError):
    """A private SQLAlchemy attribute rwsplit relies on is gone: upgrade rwsplit or pin SQLAlchemy."""


# ------------------------------------------------------------------ statements (classification)


# ------------------------------------------------------------------ sessions and engines
# Read on every statement a session routes: the common case costs one attribute access.


def statement_options(statement: object) -> Mapping[str, Any] | None:
    """A statement's own execution options (public ``get_execution_options()``); None for SQL text."""
    return statement.get_execution_options() if isinstance(statement, Executable) else None


def user_options(statement: object) -> Sequence[Any]:
    """What ``.options(...)`` gave a statement (``Executable._with_options``).

    The public ``ORMExecuteState.user_defined_options`` exists only inside an ORM event, which
    would cost more than the routing itself.
    """
    try:
        options: Sequence[Any] = statement._with_options  # type: ignore[attr-defined]
    except AttributeError:
        if isinstance(statement, Executable):
            raise SQLAlchemyChanged("Executable._with_options is gone") from None
        return ()
    return options


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
    opts = getattr(statement, "_compile_options", None)  # Core statements have no ORM flags
    if getattr(opts, "_for_refresh_state", False):
        return "refresh"
    path = getattr(opts, "_current_path", None)
    if path is not None and not path.is_root:
        return "relationship"
    return None


def flushing(session: Session) -> bool:
    """The session is flushing (``Session._flushing``): what it sends now writes."""
    try:
        return bool(session._flushing)
    except AttributeError:
        raise SQLAlchemyChanged("Session._flushing is gone") from None


def transaction_connections(trans: SessionTransaction) -> dict[Any, Any]:
    """Where a session transaction files its connections, by Engine and by Connection
    (``SessionTransaction._connections``)."""
    try:
        return trans._connections
    except AttributeError:
        raise SQLAlchemyChanged("SessionTransaction._connections is gone") from None


def wrap_dialect(engine: Engine, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``dialect.<name>`` of this engine only (SQLAlchemy calls it on the dialect instance)
    by ``wrap(original)``."""
    dialect = engine.dialect
    original = getattr(dialect, name, None)
    if not callable(original):
        raise SQLAlchemyChanged(f"Dialect.{name} is gone")
    setattr(dialect, name, wrap(original))
