"""Every MariaDB/MySQL difference rwsplit relies on, behind one small interface.

A :class:`Flavor` says how to read a server's GTID position, wait for one, read replication
status and phrase replication admin statements. Adding MySQL 8 (or another server) means
adding a flavour here, not editing the monitor, the sandbox and the benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .gtid import Position, parse_mariadb, parse_mysql

__all__ = ["Flavor", "MARIADB", "MYSQL", "WAIT_NOT_REACHED", "flavor_named", "flavor_of", "replica_status"]

# The value a piggybacked wait (Flavor.wait_prefix) fails to set when its position was not reached.
WAIT_NOT_REACHED = "RWSPLIT_CAUSAL_WAIT_NOT_REACHED"


def _first(status: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in status:
            return status[name]
    return None


@dataclass(frozen=True)
class Flavor:
    """One server family's SQL for positions, waits, replication status and admin statements."""

    name: str
    position_variables: Mapping[str, str]  # role ("primary"/"replica") -> global variable
    commit_position_sql: str  # read right after COMMIT on the same connection
    wait_function: str  # f(position, timeout) -> 0 when reached
    status_sql: str
    admin_words: Sequence[tuple[str, str]]  # MariaDB spelling -> this flavour's spelling
    # Put before a read so that the same statement first waits (``{position}``, ``{timeout}``);
    # None where the server has no such form. See :meth:`wait_prefix`.
    wait_prefix_sql: str | None = None

    def position_variable(self, role: str) -> str:
        """The global variable holding a server's position: what a primary wrote, what a replica applied."""
        return self.position_variables[role]

    def parse_position(self, text: str | None, *, role: str = "primary") -> Position:
        """A position read from this flavour's variables; a MySQL replica counts only its gap-free prefix."""
        if self.name == "mariadb":
            return parse_mariadb(text)
        return parse_mysql(text, contiguous=role == "replica")

    def wait_sql(self, position: str = "%s", timeout: str = "%s") -> str:
        """``SELECT f(position, timeout)``: wait up to a timeout for a position; 0 when it was reached.

        The arguments are the placeholders: ``%s`` for a PyMySQL cursor (the default), bind
        names (``":position"``) for a ``sqlalchemy.text()`` that any driver's dialect compiles.
        """
        return f"SELECT {self.wait_function}({position}, {timeout})"

    def applied_wait_sql(self, position: str = "%s", timeout: str = "%s") -> str:
        """:meth:`wait_sql` that also reads what the replica has applied (a second column).

        However the server orders the two, that column is a lower bound of what the replica has
        applied once the statement returns: a replica's applied position only grows.
        """
        return f"{self.wait_sql(position, timeout)}, @@GLOBAL.{self.position_variable('replica')}"

    def wait_prefix(self, position: Position, timeout: float) -> str | None:
        """SQL that makes the read written after it wait first for ``position`` (at most
        ``timeout`` s), in the same statement and round trip; None where the server cannot.

        MariaDB's ``SET STATEMENT … FOR``: the read runs only once the position is applied, else the
        statement fails with :data:`WAIT_NOT_REACHED` in its message (error 1231) and nothing ran.
        The position is rendered from its numbers, so the text holds no quote, ``%`` or ``?``.
        """
        if self.wait_prefix_sql is None or not position:
            return None
        return self.wait_prefix_sql.format(position=position, timeout=timeout)

    def admin(self, statement: str) -> str:
        """A replication admin statement written the MariaDB way (``STOP SLAVE`` …) in this flavour."""
        for old, new in self.admin_words:
            statement = statement.replace(old, new)
        return statement

    @staticmethod
    def io_running(status: Mapping[str, Any]) -> Any:
        return _first(status, "Slave_IO_Running", "Replica_IO_Running")

    @staticmethod
    def sql_running(status: Mapping[str, Any]) -> Any:
        return _first(status, "Slave_SQL_Running", "Replica_SQL_Running")

    @staticmethod
    def seconds_behind(status: Mapping[str, Any]) -> Any:
        return _first(status, "Seconds_Behind_Master", "Seconds_Behind_Source")

    @staticmethod
    def sql_delay(status: Mapping[str, Any]) -> Any:
        return _first(status, "SQL_Delay")

    @staticmethod
    def last_error(status: Mapping[str, Any]) -> str | None:
        return status.get("Last_SQL_Error") or status.get("Last_IO_Error") or None


MARIADB = Flavor(
    name="mariadb",
    position_variables={"primary": "gtid_binlog_pos", "replica": "gtid_slave_pos"},
    commit_position_sql="SELECT @@last_gtid",
    wait_function="MASTER_GTID_WAIT",
    status_sql="SHOW SLAVE STATUS",
    admin_words=(),
    # sql_mode keeps its value when the wait returns 0; any other result (-1: timed out, NULL)
    # sets a value no sql_mode accepts, which fails the statement before the read runs.
    wait_prefix_sql=(
        "SET STATEMENT sql_mode = IF(MASTER_GTID_WAIT('{position}', {timeout:.6f}) = 0, @@sql_mode, "
        f"'{WAIT_NOT_REACHED}') FOR "
    ),
)

MYSQL = Flavor(
    name="mysql",
    position_variables={"primary": "gtid_executed", "replica": "gtid_executed"},
    commit_position_sql="SELECT @@GLOBAL.gtid_executed",
    wait_function="WAIT_FOR_EXECUTED_GTID_SET",
    status_sql="SHOW REPLICA STATUS",
    admin_words=(
        ("CHANGE MASTER TO MASTER_DELAY", "CHANGE REPLICATION SOURCE TO SOURCE_DELAY"),
        ("SLAVE", "REPLICA"),
    ),
)


def flavor_named(name: str | Flavor) -> Flavor:
    """A flavour by its name (``"mariadb"``/``"mysql"``), or a :class:`Flavor` as it is."""
    if isinstance(name, Flavor):
        return name
    if name not in ("mariadb", "mysql"):
        raise ValueError(f"unknown server flavour {name!r}; accepted: 'mariadb', 'mysql'")
    return MARIADB if name == "mariadb" else MYSQL


def flavor_of(server_info: str) -> Flavor:
    """The flavour of a server from its version string (``get_server_info()``, ``@@version``)."""
    return MARIADB if "mariadb" in server_info.lower() else MYSQL


def replica_status(cursor: Any, flavor: Flavor) -> dict[str, Any]:
    """``SHOW SLAVE|REPLICA STATUS`` as a dict (empty when the server is not a replica)."""
    cursor.execute(flavor.status_sql)
    row = cursor.fetchone()
    if not row:
        return {}
    return dict(zip([d[0] for d in cursor.description], row, strict=True))
