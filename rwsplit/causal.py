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
With ``create_engine(token_key=…)`` tokens are ``rw2.<cluster>.<positions>.<mac>``: ``mac`` is
HMAC-SHA256 of the rest under the key, truncated to 128 bits (22 base64url characters), so a
client cannot forge or alter one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
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

TOKEN_VERSION = 1  # unsigned tokens (CRC-32)
SIGNED_VERSION = 2  # tokens signed with the engine's token_key (HMAC-SHA256)
_MAX_TOKEN = 4096
_MIN_KEY = 16  # bytes: a shorter token_key is guessable
_MAC_CHARS = 22  # 128 bits of HMAC-SHA256, base64url
_TOKEN = re.compile(r"^rw(\d{1,4})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{0,3000})\.([A-Za-z0-9_-]{0,64})$")
_CRC = re.compile(r"^[0-9a-f]{8}$")
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


def token_keys(token_key: object) -> tuple[bytes, ...]:
    """``create_engine(token_key=…)`` as keys: one ``str``/``bytes`` or a list of them (the first
    signs, all verify: rotation). ``()`` for None. Each at least 16 bytes."""
    if token_key is None:
        return ()
    raw = [token_key] if isinstance(token_key, (str, bytes)) else token_key
    if not isinstance(raw, Sequence) or not raw:
        raise TypeError("token_key must be a str or bytes key, or a non-empty list of them (the first signs)")
    keys = []
    for key in raw:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"token_key entries must be str or bytes, got {type(key).__name__}")
        data = key.encode() if isinstance(key, str) else key
        if len(data) < _MIN_KEY:
            raise ValueError(f"token_key must be at least {_MIN_KEY} bytes long (a random secret)")
        keys.append(data)
    return tuple(keys)


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_MAC_CHARS]


def encode_token(position: Position, cluster: str, keys: Sequence[bytes] = ()) -> str:
    """The token for ``position`` in ``cluster``: signed with ``keys[0]`` if there are keys."""
    payload = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
    if keys:
        body = f"rw{SIGNED_VERSION}.{cluster}.{payload}"
        return f"{body}.{_mac(keys[0], body)}"
    body = f"rw{TOKEN_VERSION}.{cluster}.{payload}"
    return f"{body}.{zlib.crc32(body.encode()):08x}"


def token_cluster(token: object) -> str | None:
    """The cluster id a well-formed token names (None for anything else); nothing is verified."""
    m = _TOKEN.match(token) if isinstance(token, str) else None
    return m.group(2) if m else None


def decode_token(
    token: object,
    cluster: str | None = None,
    *,
    flavor: str | Flavor = MARIADB,
    keys: Sequence[bytes] = (),
) -> Position:
    """The position a token names; ``ValueError`` saying what is wrong with a bad one.

    With ``keys`` only tokens signed with one of them are accepted; without, only unsigned ones
    (a signed token cannot be verified here).
    """
    server = flavor_named(flavor)
    if not isinstance(token, str):
        raise TypeError(f"a consistency token is a str, got {type(token).__name__}")
    if len(token) > _MAX_TOKEN:
        raise ValueError(f"consistency token too long ({len(token)} characters, at most {_MAX_TOKEN})")
    m = _TOKEN.match(token)
    if m is None:
        v = _VERSION_ONLY.match(token)
        if v is not None and int(v.group(1)) > SIGNED_VERSION:
            raise ValueError(
                f"consistency token of version {v.group(1)} is from a newer rwsplit "
                f"(this one reads versions {TOKEN_VERSION} and {SIGNED_VERSION})"
            )
        raise ValueError("malformed consistency token (expected rw1.<cluster>.<positions>.<check>)")
    version, token_cluster_id, payload, check = m.groups()
    body = token[: token.rindex(".")]
    if int(version) == SIGNED_VERSION:
        if not keys:
            raise ValueError(
                "consistency token is signed, but this engine has no token_key to verify it "
                "(create_engine(token_key=…) with the key of the engines that sign)"
            )
        if not check:
            raise ValueError("consistency token has no signature")
        if not any(hmac.compare_digest(check, _mac(key, body)) for key in keys):
            raise ValueError("consistency token signature does not match (forged, altered or another key)")
    elif int(version) == TOKEN_VERSION:
        if not _CRC.match(check):
            raise ValueError("malformed consistency token (expected rw1.<cluster>.<positions>.<check>)")
        if keys:
            raise ValueError(
                "consistency token is not signed: this engine (token_key=…) accepts only signed tokens"
            )
        if f"{zlib.crc32(body.encode()):08x}" != check:
            raise ValueError("consistency token is corrupted or truncated (checksum mismatch)")
    else:
        raise ValueError(
            f"consistency token of version {version} is from a "
            f"{'newer' if int(version) > SIGNED_VERSION else 'older'} rwsplit "
            f"(this one reads versions {TOKEN_VERSION} and {SIGNED_VERSION})"
        )
    if cluster is not None and token_cluster_id != cluster:
        raise ValueError(
            f"consistency token is from another cluster ({token_cluster_id}; this engine's is {cluster})"
        )
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("consistency token payload is not valid base64url") from None
    try:
        return server.parse_position(text)
    except ValueError as exc:
        raise ValueError(f"consistency token names an invalid position: {exc}") from None


def merge_tokens(*tokens: str, token_key: object = None) -> str:
    """One token at least as late as each given one (per domain, the later wins); all one cluster.

    ``token_key``: the engines' key when their tokens are signed (the result is signed too).
    """
    if not tokens:
        raise ValueError("merge_tokens needs at least one token")
    keys = token_keys(token_key)
    clusters = set()
    merged = Position()
    for t in tokens:
        cluster = token_cluster(t)
        merged = merged.merge(decode_token(t, cluster, keys=keys))
        clusters.add(cluster)
    if len(clusters) > 1:
        raise ValueError("cannot merge consistency tokens of different clusters")
    return encode_token(merged, clusters.pop(), keys)  # type: ignore[arg-type]


class ConsistencyScope:
    """A request scope: reads wait for ``position``; commits inside it advance it.

    Its incoming token is verified by the first session that joins (with that engine's key,
    cluster and primary); until then it is only known to be well formed.
    """

    def __init__(self, position: Position, cluster: str | None, pending: str | None = None) -> None:
        self.position = position
        self.cluster = cluster
        self.gave_up = Position()  # positions a causal wait already timed out for (one wait each)
        self._pending = pending
        self._encode: Callable[[Position], str] | None = None

    def advance(self, position: Position) -> None:
        self.position = self.position.merge(position)

    def join(
        self,
        cluster: str | None,
        verify: Callable[[str], Position] | None = None,
        encode: Callable[[Position], str] | None = None,
    ) -> None:
        """A session of ``cluster`` uses this scope: the first one names the scope's cluster and
        verifies its incoming token (``verify``: the engine's decoder, which raises ``ValueError``).

        A scope (its incoming token, its position) belongs to one cluster; a session of another
        raises ``ValueError`` naming both, rather than waiting for a foreign position.
        """
        if cluster is None:
            return
        if self.cluster is not None and cluster != self.cluster:
            raise ValueError(
                f"this consistency scope belongs to cluster {self.cluster} (its token or its first "
                f"session); a session of cluster {cluster} cannot use it"
            )
        self.cluster = cluster
        if self._pending is not None and verify is not None:
            self.position = self.position.merge(verify(self._pending))
            self._pending = None
        if encode is not None and self._encode is None:
            self._encode = encode

    def token(self) -> str:
        """The scope's position as a token, e.g. for a response header or cookie.

        ``""`` when the scope holds no position (nothing read or written through a causal
        session, and no incoming token); ``rwsplit.consistency("")`` accepts it back. Before any
        session joined, the incoming token as it came.
        """
        if self._pending is not None:
            return self._pending
        if not self.position:
            return ""
        if self.cluster is None:  # only positions joined through a cluster's session get here
            raise ValueError("this scope holds a position of no known cluster")
        if self._encode is not None:
            return self._encode(self.position)
        return encode_token(self.position, self.cluster)


@contextlib.contextmanager
def consistency(token: str | None = None) -> Iterator[ConsistencyScope]:
    """Make causal sessions in this block read at least ``token``'s position (None or "": nothing yet).

    ``with rwsplit.consistency(request.headers.get("X-Consistency")) as scope: …`` then send
    ``scope.token()`` back. A malformed or corrupted token raises ``ValueError`` before the block
    runs; its signature, cluster and position are checked by the first causal session that uses
    the scope (``ValueError`` there).
    """
    if token:
        cluster = token_cluster(token)
        if cluster is None or not token.startswith(f"rw{SIGNED_VERSION}."):
            decode_token(token)  # malformed, corrupted, wrong version: refused now
        scope = ConsistencyScope(Position(), cluster, pending=token)
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
