"""Replica control over a DBAPI cursor (delay, SQL thread, start): one home for sandbox and bench.

Statements are written the MariaDB way once and phrased for the server by
:meth:`rwsplit.flavor.Flavor.admin`; the status is :func:`rwsplit.flavor.replica_status`.
"""

from __future__ import annotations

from typing import Any

from .flavor import Flavor, flavor_of

__all__ = [
    "server_flavor",
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
