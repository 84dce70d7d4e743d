"""Construction helpers of ``create_engine``: engine options, dialect patches and monitor specs.

What :func:`rwsplit.create_engine` does to each SQLAlchemy Engine before the routing engine
owns it, kept apart so that :mod:`rwsplit.engine` reads as the engine's behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pymysql
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine

from .compat import wrap_dialect
from .state import ServerSpec
from .urls import mask_url


def no_transaction_control(engine: Engine) -> None:
    """An AUTOCOMMIT engine has no transaction: COMMIT and savepoints never reach its server.

    Sessions enrol every engine they read from in their transaction; without this, their commit
    (and begin_nested) would send COMMIT/SAVEPOINT to replica connections, where a dead connection
    could fail or misreport the primary's commit. A connection switched out of autocommit
    (``read_snapshot``) keeps normal transaction control.
    """
    autocommit = engine.dialect.detect_autocommit_setting

    def commit_op(commit: Callable[[Any], None]) -> Callable[[Any], None]:
        def do_commit(dbapi_connection: Any) -> None:
            if not autocommit(dbapi_connection):
                commit(dbapi_connection)

        return do_commit

    def savepoint_op(original: Callable[[Connection, str], None]) -> Callable[[Connection, str], None]:
        def op(connection: Connection, name: str) -> None:
            dbapi_connection = connection.connection.dbapi_connection
            if dbapi_connection is None or not autocommit(dbapi_connection):
                original(connection, name)

        return op

    wrap_dialect(engine, "do_commit", commit_op)
    for name in ("do_savepoint", "do_release_savepoint", "do_rollback_to_savepoint"):
        wrap_dialect(engine, name, savepoint_op)


IDLE_PING = 1.0
"""Seconds a pooled connection may sit idle before a checkout pings it."""
_IDLE_SINCE = "rwsplit_idle_since"


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat idle over :data:`IDLE_PING` seconds.

    Instead of ``pool_pre_ping``, which costs a round trip on every checkout: twice per request
    when a commit releases the primary's connection and later reads check one out again.
    A connection idle for longer (``wait_timeout``, a server restart, a network device dropping
    idle sockets) is pinged, and a failed ping replaces it and every connection pooled before it,
    as ``pool_pre_ping`` does. One that died less than a second after it was last used fails its
    next statement instead: on a replica, :func:`rwsplit.failover.recover_read` runs that read
    elsewhere; on the primary the error reaches the application, as for a statement in flight
    when the connection died (nothing is re-sent). A restarted server is down for longer than
    that, and the first failed statement makes SQLAlchemy discard the rest of that pool.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= IDLE_PING:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"ping of an idle pooled connection failed: {error}") from error


def fresh_connection_check(engine: Engine, connect_args: Mapping[str, Any]) -> Callable[[], None]:
    """Open and close one new DBAPI connection as ``engine`` would (same URL and connect_args).

    The monitor calls it from its own thread. An async driver can only connect inside the
    app's event loop, so for an async engine the check opens a PyMySQL connection with the same
    host, port or socket, account, database and TLS settings instead.
    """
    if engine.dialect.is_async:
        return _pymysql_check(engine.url, connect_args)

    def check() -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        conn = engine.dialect.connect(*cargs, **{**cparams, **connect_args})
        conn.close()

    return check


def _pymysql_check(url: URL, connect_args: Mapping[str, Any]) -> Callable[[], None]:
    """A new PyMySQL connection to the server and account of ``url`` (an async engine's)."""
    socket = url.query.get("unix_socket")
    params: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": int(url.port or 3306),
        "unix_socket": socket if isinstance(socket, str) else None,
        "user": url.username or "",
        "password": url.password or "",
        "database": url.database or None,
        "connect_timeout": connect_args.get("connect_timeout", 2),
    }
    if connect_args.get("ssl") is not None:
        params["ssl"] = connect_args["ssl"]

    def check() -> None:
        pymysql.connect(**params).close()

    return check


def checked_out(engines: Mapping[str, Engine], name: str) -> int:
    """Connections of that server's pool checked out right now."""
    checkedout = getattr(engines[name].pool, "checkedout", None)
    return int(checkedout()) if checkedout is not None else 0


def server_spec(
    name: str, role: str, url: URL, user: str | None, password: str | None, ssl: Any
) -> ServerSpec:
    """What the monitor needs to probe one server (its own credentials may differ from the app's)."""
    return ServerSpec(
        name=name,
        role=role,
        url=mask_url(url),
        host=url.host or "localhost",
        port=int(url.port or 3306),
        user=user if user is not None else (url.username or ""),
        password=password if password is not None else (url.password or ""),
        unix_socket=url.query.get("unix_socket"),  # type: ignore[arg-type]
        ssl=ssl,
    )


def log_names(engine_kwargs: Mapping[str, Any], server: str) -> dict[str, str]:
    """``logging_name`` and ``pool_logging_name`` of one server's Engine: ``primary``, ``replica1`` …

    ``echo``/``echo_pool`` and ``sqlalchemy.engine``/``sqlalchemy.pool`` log lines then say where each
    statement ran (logger ``sqlalchemy.engine.Engine.replica1``); an app's own names get the server
    appended (``shop`` → ``shop.replica1``).
    """
    return {
        key: f"{engine_kwargs[key]}.{server}" if engine_kwargs.get(key) else server
        for key in ("logging_name", "pool_logging_name")
    }
