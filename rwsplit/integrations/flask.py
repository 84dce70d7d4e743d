"""Flask-SQLAlchemy 3.1: ``RoutingSQLAlchemy``, a ``SQLAlchemy`` whose default bind is a RoutingEngine.

``db.session`` routes through rwsplit and proxies its methods (``last_target``, ``use_primary()``,
``consistency_token()``, ``advance()``); models and tables with a ``__bind_key__`` keep their own
``SQLALCHEMY_BINDS`` engine; ``db.engine`` is the primary (``db.create_all()`` runs there).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import flask
import flask_sqlalchemy
import flask_sqlalchemy.session
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from ..engine import RoutingEngine
from ..session import RoutingSession
from .scoping import RoutingScopedSession

__all__ = ["FlaskRoutingSession", "RoutingSQLAlchemy"]

_EXTENSION = "rwsplit"  # app.extensions key of the app's RoutingEngine
_SUPPORTED = "rwsplit.integrations.flask supports Flask-SQLAlchemy 3.1"


class FlaskRoutingSession(RoutingSession, flask_sqlalchemy.session.Session):
    """``db.session``'s class: a :class:`~rwsplit.RoutingSession` that takes Flask-SQLAlchemy's ``db``.

    Statements of the default bind are routed; those of a model or table with a bind key go to
    that key's engine, as with Flask-SQLAlchemy's own ``Session`` (``last_target`` is then None).
    """

    def __init__(
        self, db: flask_sqlalchemy.SQLAlchemy, *, routing_engine: RoutingEngine | None = None, **kw: Any
    ) -> None:
        if routing_engine is None:
            routing_engine = flask.current_app.extensions.get(_EXTENSION)
            if routing_engine is None:
                raise RuntimeError(
                    "no rwsplit RoutingEngine for this Flask app: call db.init_app(app, engine) "
                    "with db = rwsplit.integrations.flask.RoutingSQLAlchemy()"
                )
        super().__init__(routing_engine=routing_engine, db=db, **kw)

    def get_bind(
        self,
        mapper: Any = None,
        clause: Any = None,
        bind: Any = None,
        **kw: Any,
    ) -> Any:
        """The bind key's engine for a model/table that has one, else rwsplit's routing."""
        if bind is None:
            key = _bind_key(mapper, clause)
            if key is not None:
                engines = self._db.engines
                if key not in engines:
                    raise sa.exc.UnboundExecutionError(
                        f"Bind key '{key}' is not in 'SQLALCHEMY_BINDS' config."
                    )
                return engines[key]
        return super().get_bind(mapper, clause=clause, bind=bind, **kw)


def _bind_key(mapper: Any, clause: Any) -> str | None:
    """The Flask-SQLAlchemy bind key of the statement's model or table (None: the default bind)."""
    table = None
    if mapper is not None:
        table = sa.inspect(mapper).local_table
    elif isinstance(clause, sa.Table):
        table = clause
    elif isinstance(clause, sa.UpdateBase) and isinstance(clause.table, sa.Table):
        table = clause.table
    if table is None:
        return None
    key = table.metadata.info.get("bind_key")
    return key if isinstance(key, str) else None


class RoutingSQLAlchemy(flask_sqlalchemy.SQLAlchemy):
    """``flask_sqlalchemy.SQLAlchemy`` for rwsplit: ``db.init_app(app, rwsplit.create_engine(...))``.

    Takes SQLAlchemy's keywords; ``session_options["class_"]`` may be a :class:`FlaskRoutingSession`
    subclass. Engine options belong to :func:`rwsplit.create_engine`, not ``SQLALCHEMY_ENGINE_OPTIONS``.
    """

    session: RoutingScopedSession[Any]  # narrows scoped_session[Session]

    def __init__(self, app: flask.Flask | None = None, **kw: Any) -> None:
        if app is not None:
            raise TypeError("RoutingSQLAlchemy needs its RoutingEngine: call db.init_app(app, engine)")
        options = dict(kw.pop("session_options", None) or {})
        class_ = options.setdefault("class_", FlaskRoutingSession)
        if not (isinstance(class_, type) and issubclass(class_, FlaskRoutingSession)):
            raise TypeError("session_options['class_'] must be FlaskRoutingSession or a subclass of it")
        super().__init__(session_options=options, **kw)

    def _make_scoped_session(self, options: dict[str, Any]) -> Any:
        """Flask-SQLAlchemy's app-context scoped session, as a :class:`RoutingScopedSession`."""
        session = super()._make_scoped_session(options)
        scopefunc = getattr(session.registry, "scopefunc", None)
        if scopefunc is None:
            raise RuntimeError(
                "Flask-SQLAlchemy's session registry has no scopefunc: rwsplit supports Flask-SQLAlchemy 3.1"
            )
        return RoutingScopedSession(session.session_factory, scopefunc=scopefunc)

    def init_app(self, app: flask.Flask, engine: RoutingEngine | None = None) -> None:
        """Register ``app`` with its :class:`~rwsplit.RoutingEngine` (one per app: app factories).

        ``SQLALCHEMY_DATABASE_URI`` may be left unset (it is the engine's primary); ``SQLALCHEMY_BINDS``
        work as usual; ``SQLALCHEMY_RECORD_QUERIES`` records the statements of every server.
        """
        if not isinstance(engine, RoutingEngine):
            raise TypeError(
                "db.init_app(app, engine) needs the app's rwsplit RoutingEngine "
                "(rwsplit.create_engine(...)), "
                f"got {type(engine).__name__}"
            )
        app.config.setdefault("SQLALCHEMY_DATABASE_URI", engine.primary.url)
        super().init_app(app)
        with app.app_context():
            engines = self.engines
            if not isinstance(engines, MutableMapping):
                raise RuntimeError(
                    "Flask-SQLAlchemy's db.engines is not a dict: rwsplit supports Flask-SQLAlchemy 3.1"
                )
            own = engines.get(None)
            if own is not None and own is not engine.primary:
                if _server(own.url) != _server(engine.primary.url):
                    raise ValueError(
                        f"SQLALCHEMY_DATABASE_URI ({own.url!r}) is not the RoutingEngine's primary "
                        f"({engine.primary.url!r}): leave it unset or make it the same server"
                    )
                own.dispose()
            engines[None] = engine.primary
        app.extensions[_EXTENSION] = engine
        if app.config["SQLALCHEMY_RECORD_QUERIES"]:
            for server in engine.engines.values():
                _record_queries(server)

    @property
    def routing_engine(self) -> RoutingEngine:
        """The current app's :class:`~rwsplit.RoutingEngine`."""
        engine = flask.current_app.extensions.get(_EXTENSION)
        if not isinstance(engine, RoutingEngine):
            raise RuntimeError("this Flask app has no rwsplit RoutingEngine: call db.init_app(app, engine)")
        return engine


def _server(url: URL) -> tuple[Any, ...]:
    """Who a URL reaches (Flask-SQLAlchemy adds driver defaults such as ``charset`` to its own)."""
    return (url.get_backend_name(), url.host, url.port, url.username, url.database)


def _record_queries(engine: Engine) -> None:
    """Flask-SQLAlchemy's query recording on one server's engine (once)."""
    from flask_sqlalchemy import record_queries

    listen = getattr(record_queries, "_listen", None)
    start = getattr(record_queries, "_record_start", None)
    if listen is None or start is None:
        raise RuntimeError(f"flask_sqlalchemy.record_queries changed: {_SUPPORTED}")
    if not event.contains(engine, "before_cursor_execute", start):
        listen(engine)
