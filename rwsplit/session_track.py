"""A COMMIT's GTID from its own OK packet (MariaDB session-state tracking), where the driver shows it.

MariaDB reports ``last_gtid`` in the OK packet that answers a COMMIT when the session tracks that
variable (``session_track_system_variables``) and the client announced ``CLIENT_SESSION_TRACK``:
a causal session then learns its commit's position without a ``SELECT @@last_gtid`` round trip.

- PyMySQL: announces the capability when ``client_flag`` asks; it keeps the tail of each OK packet
  unparsed (``OKPacketWrapper.message``), which :func:`tracked_variables` reads. The COMMIT's OK
  packet is seen by wrapping the connection's ``_read_ok_packet`` for that one commit.
- MariaDB Connector/Python (≥ 1.1): its ``status_callback`` connect argument receives the tracked
  variables of every OK packet.
- mysqlclient, asyncmy and aiomysql do not expose them: :func:`commit_tracker` answers None and
  :mod:`rwsplit.causal` reads ``@@last_gtid`` after the commit, as it does whenever a tracked
  commit did not report one (a commit that wrote nothing, tracking switched off by the app …).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from .compat import wrap_dialect
from .failover import is_connection_error

__all__ = ["commit_tracker", "tracked_variables", "TRACK_LAST_GTID"]

log = logging.getLogger("rwsplit")

CLIENT_SESSION_TRACK = 1 << 23  # pymysql.constants.CLIENT.SESSION_TRACK
_STATE_CHANGED = 0x4000  # SERVER_SESSION_STATE_CHANGED in the OK packet's status flags
_SYSTEM_VARIABLES = 0  # SESSION_TRACK_SYSTEM_VARIABLES

# Adds last_gtid to what the session already tracks (the server's default list, or '*').
TRACK_LAST_GTID = (
    "SET SESSION session_track_system_variables = "
    "IF(@@session_track_system_variables = '*' "
    "OR FIND_IN_SET('last_gtid', @@session_track_system_variables), "
    "@@session_track_system_variables, "
    "CONCAT_WS(',', NULLIF(@@session_track_system_variables, ''), 'last_gtid'))"
)

CommitTracker = Callable[[Any, Callable[[Any], None]], "str | None"]
"""``tracker(dbapi_connection, commit)`` runs ``commit(dbapi_connection)`` and returns the GTID its
OK packet reported, or None."""


def _lenenc(data: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at ``pos``: (value, position after it)."""
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if width is None or pos + 1 + width > len(data):
        raise ValueError("bad length-encoded integer in an OK packet")
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "little"), pos + 1 + width


def _lenenc_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _lenenc(data, pos)
    if pos + size > len(data):
        raise ValueError("truncated string in an OK packet")
    return data[pos : pos + size], pos + size


def tracked_variables(tail: bytes, server_status: int) -> dict[str, str]:
    """The system variables an OK packet reports (``CLIENT_SESSION_TRACK`` announced).

    ``tail`` is the packet after its warning count: the length-encoded info string, then, if
    ``server_status`` has ``SERVER_SESSION_STATE_CHANGED``, the length-encoded session-state block
    of (type, length-encoded data) entries; a system variable's data is its name and value, both
    length-encoded. ``ValueError`` for a packet that does not parse.
    """
    if not server_status & _STATE_CHANGED or not tail:
        return {}
    try:
        _, pos = _lenenc_bytes(tail, 0)  # the human-readable info
        block, _ = _lenenc_bytes(tail, pos)
        found: dict[str, str] = {}
        pos = 0
        while pos < len(block):
            kind = block[pos]
            item, pos = _lenenc_bytes(block, pos + 1)
            if kind == _SYSTEM_VARIABLES:
                name, at = _lenenc_bytes(item, 0)
                value, _ = _lenenc_bytes(item, at)
                found[name.decode("ascii")] = value.decode("ascii")
        return found
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed session-state block in an OK packet: {exc}") from None


def _raw(dbapi_connection: Any) -> Any:
    """The driver's connection under SQLAlchemy's pool proxy (``PoolProxiedConnection.dbapi_connection``)."""
    return getattr(dbapi_connection, "dbapi_connection", None) or dbapi_connection


# ------------------------------------------------------------------ PyMySQL
def _pymysql_commit(dbapi_connection: Any, commit: Callable[[Any], None]) -> str | None:
    raw = _raw(dbapi_connection)
    read = getattr(raw, "_read_ok_packet", None)
    if read is None:  # a PyMySQL without it: the caller reads @@last_gtid
        commit(dbapi_connection)
        return None
    seen: list[Any] = []

    def reading(*args: Any, **kwargs: Any) -> Any:
        ok = read(*args, **kwargs)
        seen.append(ok)
        return ok

    raw._read_ok_packet = reading
    try:
        commit(dbapi_connection)
    finally:
        with contextlib.suppress(AttributeError):
            del raw._read_ok_packet
    if len(seen) != 1:
        return None
    try:
        return tracked_variables(seen[0].message, seen[0].server_status).get("last_gtid") or None
    except (ValueError, AttributeError, TypeError):
        return None


def _pymysql_params(cparams: dict[str, Any]) -> None:
    cparams["client_flag"] = int(cparams.get("client_flag") or 0) | CLIENT_SESSION_TRACK


def _pymysql_is_mariadb(raw: Any) -> bool:
    return "mariadb" in str(getattr(raw, "server_version", "")).lower()


# ------------------------------------------------------------------ MariaDB Connector/Python
_LAST_GTID = "_rwsplit_last_gtid"


def _mariadb_status(connection: Any, info: Any) -> None:
    """``status_callback``: keep the last ``last_gtid`` the server reported on this connection."""
    if isinstance(info, dict):
        gtid = info.get("last_gtid")
        if gtid is not None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(connection, _LAST_GTID, gtid)


def _mariadb_commit(dbapi_connection: Any, commit: Callable[[Any], None]) -> str | None:
    raw = _raw(dbapi_connection)
    try:
        setattr(raw, _LAST_GTID, None)
    except (AttributeError, TypeError):
        commit(dbapi_connection)
        return None
    commit(dbapi_connection)
    gtid = getattr(raw, _LAST_GTID, None)
    return gtid if isinstance(gtid, str) and gtid else None


def _mariadb_params(cparams: dict[str, Any]) -> None:
    own = cparams.get("status_callback")
    if own is None:
        cparams["status_callback"] = _mariadb_status
        return

    def both(connection: Any, *args: Any) -> None:
        _mariadb_status(connection, *args)
        own(connection, *args)

    cparams["status_callback"] = both


def _mariadb_is_mariadb(raw: Any) -> bool:
    return "mariadb" in str(getattr(raw, "server_info", "")).lower()


def _mariadb_supported() -> bool:
    try:
        mariadb = importlib.import_module("mariadb")
    except ImportError:
        return False
    return tuple(getattr(mariadb, "__version_info__", (0,))[:2]) >= (1, 1)


# ------------------------------------------------------------------ installation
def commit_tracker(engine: Engine) -> CommitTracker | None:
    """Make new connections of ``engine`` (the primary's) report each COMMIT's GTID in its OK packet.

    Returns the tracker that commits and reads that GTID, or None for a driver that does not
    expose OK packets (the caller then reads ``@@last_gtid``). New connections to a MariaDB
    server announce ``CLIENT_SESSION_TRACK`` and add ``last_gtid`` to the tracked variables (one
    statement per new connection); a server that refuses leaves that connection on the fallback.
    """
    dialect = engine.dialect
    if dialect.is_async:
        return None
    driver = getattr(dialect, "driver", None)
    if driver == "pymysql":
        params, is_mariadb, tracker = _pymysql_params, _pymysql_is_mariadb, _pymysql_commit
    elif driver == "mariadbconnector" and _mariadb_supported():
        params, is_mariadb, tracker = _mariadb_params, _mariadb_is_mariadb, _mariadb_commit
    else:
        return None

    def tracking(connect: Callable[..., Any]) -> Callable[..., Any]:
        def tracked_connect(*cargs: Any, **cparams: Any) -> Any:
            params(cparams)
            raw = connect(*cargs, **cparams)
            if is_mariadb(raw):
                cursor = raw.cursor()
                try:
                    cursor.execute(TRACK_LAST_GTID)
                except dialect.loaded_dbapi.Error as exc:
                    if is_connection_error(exc):
                        with contextlib.suppress(Exception):
                            raw.close()
                        raise
                    # e.g. a proxy that refuses it: this connection's commits read @@last_gtid
                    log.debug("session tracking of last_gtid refused: %s", exc)
                finally:
                    with contextlib.suppress(Exception):
                        cursor.close()
            return raw

        return tracked_connect

    wrap_dialect(engine, "connect", tracking)
    return tracker
