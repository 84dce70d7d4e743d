"""Consistency tokens: their format, signatures and checks, and an engine's codec for them.

A token carries a position (:class:`~rwsplit.gtid.Position`) between sessions, processes and
requests. Format (URL-safe, opaque to apps): ``rw1.<cluster>.<positions>.<check>`` where
``cluster`` is 8 hex digits naming the cluster (a hash of ``create_engine(cluster=…)``, by
default of the primary's ``host:port/database``), ``positions`` is the base64url of the GTID list
and ``check`` a CRC-32 of the rest, so truncation and corruption are caught before any use.
With ``create_engine(token_key=…)`` tokens are ``rw2.<cluster>.<positions>.<mac>``: ``mac`` is
HMAC-SHA256 of the rest under the key, truncated to 128 bits (22 base64url characters), so a
client cannot forge or alter one. Tokens come from clients: :class:`TokenCodec` also refuses
positions the primary has not produced, and signs the pin cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
import zlib
from collections.abc import Callable, Sequence

from .flavor import MARIADB, Flavor, flavor_named
from .gtid import Position

__all__ = [
    "TOKEN_VERSION",
    "SIGNED_VERSION",
    "cluster_id",
    "named_cluster_id",
    "token_keys",
    "encode_token",
    "decode_token",
    "token_cluster",
    "merge_tokens",
    "TokenCodec",
]

TOKEN_VERSION = 1  # unsigned tokens (CRC-32)
SIGNED_VERSION = 2  # tokens signed with the engine's token_key (HMAC-SHA256)
_MAX_TOKEN = 4096
_MIN_KEY = 16  # bytes: a shorter token_key is guessable
_MAC_CHARS = 22  # 128 bits of HMAC-SHA256, base64url
_TOKEN = re.compile(r"^rw(\d{1,4})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{0,3000})\.([A-Za-z0-9_-]{0,64})$")
_CRC = re.compile(r"^[0-9a-f]{8}$")
_VERSION_ONLY = re.compile(r"^rw(\d{1,4})\.")


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


def _pin_mac(key: bytes, cluster: str, until: str) -> str:
    return hmac.new(key, f"pin.{cluster}.{until}".encode(), hashlib.sha256).hexdigest()[:32]


class TokenCodec:
    """One engine's tokens and pin cookies: its cluster, keys, the primary's flavour and position.

    ``flavor()`` and ``primary_position()`` (the monitor's last view) and ``primary_now()`` (one
    query on the primary) are the engine's; the codec decides.
    """

    def __init__(
        self,
        cluster: str,
        keys: tuple[bytes, ...],
        pin_window: float,
        flavor: Callable[[], Flavor],
        primary_position: Callable[[], Position],
        primary_now: Callable[[], Position],
    ) -> None:
        self.cluster = cluster
        self.keys = keys
        self.pin_window = pin_window
        self._flavor = flavor
        self._primary_position = primary_position
        self._primary_now = primary_now

    def encode(self, position: Position) -> str:
        return encode_token(position, self.cluster, self.keys)

    def decode(self, token: str) -> Position:
        """The position in a token of this cluster; ``ValueError`` for a bad one: not signed with
        this engine's ``token_key`` (when it has one), or naming a position the primary has not
        produced."""
        position = decode_token(token, self.cluster, flavor=self._flavor(), keys=self.keys)
        self._check_produced(position)
        return position

    def _check_produced(self, position: Position) -> None:
        """Refuse a position from the future: beyond the primary's, as the monitor last saw it or,
        if the token is newer than that probe, as the primary says now (one short query)."""
        if not position or self._primary_position().covers(position):
            return
        try:
            now = self._primary_now()
        except Exception:  # the primary is unreachable: no read will wait long for it anyway
            return
        if not now.covers(position):
            raise ValueError(
                f"consistency token names a position the primary has not produced ({position}; "
                f"the primary is at {now})"
            )

    def pin_cookie(self) -> str:
        """This thread/task's pin as a cookie value, signed with the first key (if any)."""
        from .consistency_state import pinned_until  # it imports causal, which imports this module

        until = f"{pinned_until():.3f}"
        if not self.keys:
            return until
        return f"{until}.{_pin_mac(self.keys[0], self.cluster, until)}"

    def restore_pin(self, cookie: str | None) -> None:
        """Restore a :meth:`pin_cookie` value (``None``/``""``: nothing); ``ValueError`` for a bad or
        unsigned one. Clamped to ``pin_window`` from now."""
        if not cookie:
            return
        if not isinstance(cookie, str) or len(cookie) > 64:
            raise ValueError("pin cookie must be the short string engine.pin_cookie() returned")
        until = cookie
        if self.keys:
            until, _, mac = cookie.rpartition(".")
            macs = (_pin_mac(key, self.cluster, until) for key in self.keys)
            if not any(hmac.compare_digest(mac, expected) for expected in macs):
                raise ValueError("pin cookie signature does not match (forged, altered or another key)")
        try:
            value = float(until)
        except ValueError:
            raise ValueError("pin cookie is not a time (expected engine.pin_cookie()'s value)") from None
        if not math.isfinite(value):
            raise ValueError("pin cookie is not a finite time")
        from .consistency_state import pin_primary_until  # see pin_cookie

        pin_primary_until(min(value, time.time() + self.pin_window))
