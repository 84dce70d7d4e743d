"""``rwsplit explain``: how one statement is classified and, given servers, where it goes now."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from .classifier import Route, Server, classify, server_floor

if TYPE_CHECKING:
    from .engine import RoutingEngine
    from .router import Decision
    from .state import ServerReport

__all__ = ["MAX_SQL_BYTES", "Explanation", "explain", "read_statement", "summary", "why_not_eligible"]

MAX_SQL_BYTES = 1 << 20
"""The longest statement ``explain`` takes (1 MiB of UTF-8)."""


def read_statement(sql: str, stdin: IO[bytes]) -> str:
    """The statement to explain (``-``: read from ``stdin``); ``ValueError`` if empty or too long."""
    if sql == "-":
        data = stdin.read(MAX_SQL_BYTES + 1)
        if len(data) > MAX_SQL_BYTES:
            raise ValueError(f"the statement on stdin is longer than 1 MiB ({MAX_SQL_BYTES} bytes)")
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the statement on stdin is not valid UTF-8") from None
    else:
        try:
            size = len(sql.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("the statement is not valid UTF-8") from None
        if size > MAX_SQL_BYTES:
            raise ValueError(f"the statement is {size} bytes, longer than 1 MiB ({MAX_SQL_BYTES} bytes)")
    if not sql.strip():
        raise ValueError("the SQL statement is empty")
    return sql


@dataclass(frozen=True)
class Explanation:
    """A statement's classification and, with servers, its route now and the servers' status."""

    statement: str
    classification: Route
    route: Decision | None = None
    servers: Sequence[ServerReport] = ()
    server: Server | None = None  # the version floor the classification assumed

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``rwsplit explain --json``."""
        c, r = self.classification, self.route
        return {
            "statement": self.statement,
            "classification": {"target": c.target, "reason": c.reason, "effect": c.effect},
            "route": None if r is None else {"target": r.target, "reason": r.reason},
            "server_floor": _server_text(self.server),
            "servers": [dataclasses.asdict(row) for row in self.servers],
        }


def explain(
    sql: str, read_only_functions: Iterable[str] = (), engine: RoutingEngine | None = None
) -> Explanation:
    """Classify ``sql``; with ``engine``, also route it for a new session as the router would now."""
    if engine is None:
        return Explanation(sql, classify(sql, read_only_functions=frozenset(read_only_functions)))
    versions = engine.monitor.versions
    server = server_floor(versions.get(name) for name in engine.replica_names)  # as the router does
    route = classify(sql, read_only_functions=engine.policy.read_only_functions, server=server)
    decision = engine.router.decide(sa.text(sql), engine._new_state())
    return Explanation(sql, route, decision, engine.status(), server)


def why_not_eligible(row: ServerReport, max_lag: float) -> str | None:
    """Why a replica of ``engine.status()`` serves no reads now (None if it does)."""
    if row.role != "replica" or row.eligible:
        return None
    if not row.reachable:
        return f"not reachable: {row.error}" if row.error else "not reachable"
    if not row.replicating:
        return "replication stopped (IO or SQL thread not running)"
    if row.lag is None:
        return "lag not measured yet"
    if row.lag > max_lag:
        return f"lag {row.lag:.3f} s > max_lag {max_lag:g} s"
    return row.error or "lag only a lower bound or too old, or taken out after failed reads"


def summary(explanation: Explanation, max_lag: float, mode: str) -> list[str]:
    """The text lines of ``rwsplit explain`` above the servers' table."""
    c = explanation.classification
    shown = " ".join(explanation.statement.split())
    if len(shown) > 120:
        shown = shown[:117] + "..."
    lines = [
        f"statement:       {shown}",
        f"classification:  {c.target} (effect: {c.effect}), reason: {c.reason}",
    ]
    route = explanation.route
    if route is None:
        return lines
    floor = _server_text(explanation.server) or "unknown: version-gated built-ins count as stored functions"
    lines.append(f"server floor:    {floor}")
    lines.append(f"route now:       {route.target}, reason: {route.reason}")
    lines.append(f"                 (a new session: read_your_writes={mode}, max_lag={max_lag:g} s)")
    for row in explanation.servers:
        why = why_not_eligible(row, max_lag)
        if why is not None:
            lines.append(f"{row.name} not eligible: {why}")
    return lines


def _server_text(server: Server | None) -> str | None:
    return None if server is None else f"{server[0]} {'.'.join(map(str, server[1]))}"
