"""Causal reads: the GTID of each write commit, consistency tokens, and request scopes.

A *position* (:class:`~rwsplit.gtid.Position`) says "everything up to these transactions".
Sessions in ``read_your_writes="causal"`` mode record the GTID of every transaction they commit
(MariaDB's ``last_gtid``, from the COMMIT's OK packet where the driver shows it, else read on the
same connection right after ``COMMIT``: :mod:`rwsplit.session_track`) and later read only where
that position has been applied. A token carries a position between sessions, processes and requests.

Token format (URL-safe, opaque to apps): ``rw1.<cluster>.<positions>.<check>`` where
``cluster`` is 8 hex digits naming the cluster (a hash of ``create_engine(cluster=…)``, by
default of the primary's ``host:port/database``), ``positions`` is the base64url of the GTID list
and ``check`` a CRC-32 of the rest, so truncation and corruption are caught before any use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy.engine import Engine

from .compat import wrap_dialect
from .flavor import MARIADB, MYSQL, Flavor, flavor_named
from .gtid import Position
from .session_track import commit_tracker

__all__ = [
    "TOKEN_VERSION",
    "cluster_id",
    "named_cluster_id",
    "encode_token",
    "decode_token",
    "merge_tokens",
    "consistency",
    "ConsistencyScope",
]

TOKEN_VERSION = 1
_MAX_TOKEN = 4096
_TOKEN = re.compile(r"^rw(\d{1,4})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{0,3000})\.([0-9a-f]{8})$")
_VERSION_ONLY = re.compile(r"^rw(\d{1,4})\.")

_capture_requested: ContextVar[bool] = ContextVar("rwsplit_capture_gtid", default=False)
_captured: ContextVar[str | None] = ContextVar("rwsplit_captured_gtid", default=None)
_scope: ContextVar[ConsistencyScope | None] = ContextVar("rwsplit_consistency_scope", default=None)


def cluster_id(host: str, port: int, database: str | None = None) -> str:
    """A short stable id of a cluster derived from its primary's address (and database, if given).

    The default when an engine has no ``cluster=`` name: tokens then stop matching when the
    primary's address changes, and two environments that both say ``db:3306/app`` share an id.
    """
    where = f"{host.lower()}:{port}" if database is None else f"{host.lower()}:{port}/{database}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def named_cluster_id(name: str) -> str:
    """The id of a cluster the application named (``create_engine(cluster="shop-prod")``).

    Engines with the same name accept each other's tokens whatever address they reach the
    primary by; the prefix keeps a name from ever equalling an address-derived id by accident.
    """
    return hashlib.sha256(f"name:{name}".encode()).hexdigest()[:8]


def encode_token(position: Position, cluster: str) -> str:
    """The token for ``position`` in ``cluster``."""
    payload = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
    body = f"rw{TOKEN_VERSION}.{cluster}.{payload}"
    return f"{body}.{zlib.crc32(body.encode()):08x}"


def decode_token(token: object, cluster: str | None = None, *, flavor: str | Flavor = MARIADB) -> Position:
    """The position a token names; ``ValueError`` saying what is wrong with a bad one."""
    server = flavor_named(flavor)
    if not isinstance(token, str):
        raise TypeError(f"a consistency token is a str, got {type(token).__name__}")
    if len(token) > _MAX_TOKEN:
        raise ValueError(f"consistency token too long ({len(token)} characters, at most {_MAX_TOKEN})")
    m = _TOKEN.match(token)
    if m is None:
        v = _VERSION_ONLY.match(token)
        if v is not None and int(v.group(1)) > TOKEN_VERSION:
            raise ValueError(
                f"consistency token of version {v.group(1)} is from a newer rwsplit "
                f"(this one reads version {TOKEN_VERSION})"
            )
        raise ValueError("malformed consistency token (expected rw1.<cluster>.<positions>.<check>)")
    version, token_cluster, payload, check = m.groups()
    if int(version) != TOKEN_VERSION:
        raise ValueError(
            f"consistency token of version {version} is from a "
            f"{'newer' if int(version) > TOKEN_VERSION else 'older'} rwsplit "
            f"(this one reads version {TOKEN_VERSION})"
        )
    body = token[: token.rindex(".")]
    if f"{zlib.crc32(body.encode()):08x}" != check:
        raise ValueError("consistency token is corrupted or truncated (checksum mismatch)")
    if cluster is not None and token_cluster != cluster:
        raise ValueError(
            f"consistency token is from another cluster ({token_cluster}; this engine's is {cluster})"
        )
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("consistency token payload is not valid base64url") from None
    try:
        return server.parse_position(text)
    except ValueError as exc:
        raise ValueError(f"consistency token names an invalid position: {exc}") from None


def merge_tokens(*tokens: str) -> str:
    """One token at least as late as each given one (per domain, the later wins); all one cluster."""
    if not tokens:
        raise ValueError("merge_tokens needs at least one token")
    clusters = set()
    merged = Position()
    for t in tokens:
        m = _TOKEN.match(t) if isinstance(t, str) else None
        cluster = m.group(2) if m else None
        merged = merged.merge(decode_token(t, cluster))
        clusters.add(cluster)
    if len(clusters) > 1:
        raise ValueError("cannot merge consistency tokens of different clusters")
    return encode_token(merged, clusters.pop())  # type: ignore[arg-type]


class ConsistencyScope:
    """A request scope: reads wait for ``position``; commits inside it advance it."""

    def __init__(self, position: Position, cluster: str | None) -> None:
        self.position = position
        self.cluster = cluster

    def advance(self, position: Position) -> None:
        self.position = self.position.merge(position)

    def join(self, cluster: str | None) -> None:
        """A session of ``cluster`` uses this scope: the first one names the scope's cluster.

        A scope (its incoming token, its position) belongs to one cluster; a session of another
        raises ``ValueError`` naming both, rather than waiting for a foreign position.
        """
        if cluster is None or cluster == self.cluster:
            return
        if self.cluster is None:
            self.cluster = cluster
            return
        raise ValueError(
            f"this consistency scope belongs to cluster {self.cluster} (its token or its first "
            f"session); a session of cluster {cluster} cannot use it"
        )

    def token(self) -> str:
        """The scope's position as a token, e.g. for a response header or cookie.

        ``""`` when the scope holds no position (nothing read or written through a causal
        session, and no incoming token); ``rwsplit.consistency("")`` accepts it back.
        """
        if not self.position:
            return ""
        if self.cluster is None:  # only positions joined through a cluster's session get here
            raise ValueError("this scope holds a position of no known cluster")
        return encode_token(self.position, self.cluster)


@contextlib.contextmanager
def consistency(token: str | None = None) -> Iterator[ConsistencyScope]:
    """Make causal sessions in this block read at least ``token``'s position (None or "": nothing yet).

    ``with rwsplit.consistency(request.headers.get("X-Consistency")) as scope: …`` then send
    ``scope.token()`` back. A bad token raises ``ValueError`` before the block runs; a session
    of another cluster than the token's (or than the scope's first session) raises on use.
    """
    if token:
        m = _TOKEN.match(token) if isinstance(token, str) else None
        position = decode_token(token)
        scope = ConsistencyScope(position, m.group(2) if m else None)
    else:
        scope = ConsistencyScope(Position(), None)
    reset = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(reset)


def current_scope() -> ConsistencyScope | None:
    return _scope.get()


def install_commit_capture(engine: Engine) -> None:
    """After a COMMIT that asked for it, learn the commit's GTID on the same connection.

    On MariaDB through a driver that shows OK packets (PyMySQL, MariaDB Connector/Python: see
    :mod:`rwsplit.session_track`) the COMMIT's own OK packet carries it; otherwise, or when that
    packet did not report one, it is read with a query right after the COMMIT. The server's
    flavour (the dialect's ``is_mariadb``, known once it connected: any driver) says which
    variable holds it. Only commits of causal sessions ask (:func:`request_capture`), so other
    sessions pay nothing.
    """
    dialect = engine.dialect
    tracked_commit = commit_tracker(engine)

    def capturing(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def do_commit(dbapi_connection: Any) -> None:
            if not _capture_requested.get():
                original(dbapi_connection)
                return
            _capture_requested.set(False)
            mariadb = getattr(dialect, "is_mariadb", False)
            if tracked_commit is not None and mariadb:
                gtid = tracked_commit(dbapi_connection, original)
                if gtid is not None:
                    _captured.set(gtid)
                    return
            else:
                original(dbapi_connection)
            sql = (MARIADB if mariadb else MYSQL).commit_position_sql
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
            finally:
                cursor.close()
            _captured.set(row[0] if row and row[0] else None)

        return do_commit

    wrap_dialect(engine, "do_commit", capturing)


def request_capture() -> None:
    """The next primary COMMIT in this thread/task records its GTID (see :func:`take_captured`)."""
    _captured.set(None)
    _capture_requested.set(True)


def take_captured() -> str | None:
    """The GTID text recorded by the last requested capture, once."""
    value = _captured.get()
    _captured.set(None)
    _capture_requested.set(False)
    return value
