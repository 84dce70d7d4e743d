"""Replica control over a DBAPI cursor (source, delay, SQL thread, start): one home for sandbox and bench.

Statements are written the MariaDB way once and phrased for the server by
:meth:`rwsplit.flavor.Flavor.admin`; the status is :func:`rwsplit.flavor.replica_status`.
"""

from __future__ import annotations

from typing import Any

from .flavor import Flavor, flavor_of

__all__ = [
    "server_flavor",
    "replicate_from",
    "set_delay",
    "stop_sql_thread",
    "start_sql_thread",
    "start_replication",
]


def server_flavor(cursor: Any) -> Flavor:
    """The flavour of the server behind ``cursor`` (``SELECT VERSION()``)."""
    cursor.execute("SELECT VERSION()")
    row = cursor.fetchone()
    return flavor_of(str(row[0]) if row else "")


def replicate_from(cursor: Any, flavor: Flavor, host: str, port: int, user: str, password: str) -> None:
    """Point a fresh replica at a primary with GTID auto-positioning (then :func:`start_replication`)."""
    if flavor.name == "mariadb":
        cursor.execute("SET GLOBAL gtid_slave_pos = ''")
        cursor.execute(
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
            "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, "
            "MASTER_HEARTBEAT_PERIOD=1",
            (host, port, user, password),
        )
    else:
        cursor.execute(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, "
            "SOURCE_USER=%s, SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, "
            "SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
            (host, port, user, password),
        )


def set_delay(cursor: Any, flavor: Flavor, seconds: int) -> None:
    """Stop replication, set ``MASTER_DELAY`` (``SOURCE_DELAY``) and start it again, also on error."""
    cursor.execute(flavor.admin("STOP SLAVE"))
    try:
        cursor.execute(flavor.admin(f"CHANGE MASTER TO MASTER_DELAY={int(seconds)}"))
    finally:
        cursor.execute(flavor.admin("START SLAVE"))


def stop_sql_thread(cursor: Any, flavor: Flavor) -> None:
    """Stop the applier: the replica keeps receiving events but applies none."""
    cursor.execute(flavor.admin("STOP SLAVE SQL_THREAD"))


def start_sql_thread(cursor: Any, flavor: Flavor) -> None:
    """Start the applier again after :func:`stop_sql_thread`."""
    cursor.execute(flavor.admin("START SLAVE SQL_THREAD"))


def start_replication(cursor: Any, flavor: Flavor) -> None:
    """``START SLAVE`` (``START REPLICA``): both replication threads."""
    cursor.execute(flavor.admin("START SLAVE"))
