"""``rwsplit.scoped_session``: a ``scoped_session`` whose registry also proxies rwsplit's session methods.

SQLAlchemy's ``scoped_session`` proxies a fixed list of ``Session`` methods, so ``last_target``,
``use_primary()``, ``consistency_token()`` and ``advance()`` would need ``Session()`` first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy.orm

from ..engine import RoutingEngine
from ..session import RoutingSession

__all__ = ["RoutingScopedSession", "scoped_session"]

_RS = TypeVar("_RS", bound=RoutingSession)


class RoutingScopedSession(sqlalchemy.orm.scoped_session[_RS]):
    """``sqlalchemy.orm.scoped_session`` of :class:`~rwsplit.RoutingSession` with rwsplit's methods.

    ``Session = rwsplit.scoped_session(rwsplit.sessionmaker(engine))``; then
    ``Session.last_target``, ``Session.use_primary()``, ``Session.consistency_token()`` and
    ``Session.advance(token)`` act on the current scope's session, like ``Session.execute``.
    """

    def __init__(
        self, session_factory: sqlalchemy.orm.sessionmaker[_RS], scopefunc: Callable[[], Any] | None = None
    ) -> None:
        class_ = getattr(session_factory, "class_", None)
        if not (isinstance(class_, type) and issubclass(class_, RoutingSession)):
            raise TypeError(
                "rwsplit.scoped_session needs a sessionmaker of RoutingSession "
                f"(use rwsplit.sessionmaker(engine)), got {session_factory!r}"
            )
        super().__init__(session_factory, scopefunc=scopefunc)

    @property
    def last_target(self) -> str | None:
        """Where the current session's last statement went (``"primary"`` or a replica name)."""
        return self.registry().last_target

    @property
    def routing_engine(self) -> RoutingEngine:
        """The current session's :class:`~rwsplit.RoutingEngine`."""
        return self.registry().routing_engine

    @contextlib.contextmanager
    def use_primary(self) -> Iterator[_RS]:
        """Within the block every statement of the current session goes to the primary."""
        session = self.registry()
        with session.use_primary():
            yield session

    def consistency_token(self) -> str:
        """The current session's consistency token (see :meth:`RoutingSession.consistency_token`)."""
        return self.registry().consistency_token()

    def advance(self, token: str) -> None:
        """Make the current session's later reads see at least the position in ``token``."""
        self.registry().advance(token)


scoped_session = RoutingScopedSession
