"""Names and small helpers the tests share: server names, unique values, eligibility, the CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from waiting import wait_for

import rwsplit
import rwsplit.flavor
from rwsplit.sandbox import Sandbox

PRIMARY = "primary"
REPLICAS = ("replica1", "replica2")
SERVER_ID = "SELECT @@GLOBAL.server_id"
FAST = 0.1  # monitor_interval of the routing tests' engines
FAULT_TABLE = "app.fault_rows"  # the fault tests' table (``fault_table`` in tests/server/conftest.py)


def unique(prefix: str = "n") -> str:
    """A value no other test uses (names of rows)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def eligible(engine: rwsplit.RoutingEngine) -> set[str]:
    """The replicas the engine would read from now."""
    return {r.name for r in engine.status() if r.role == "replica" and r.eligible}


def status_of(engine: rwsplit.RoutingEngine, name: str) -> rwsplit.ServerReport:
    """``engine.status()``'s row for one server."""
    return {r.name: r for r in engine.status()}[name]


def wait_eligible(
    engine: rwsplit.RoutingEngine, names: set[str] | None = None, timeout: float = 15.0
) -> None:
    """Wait until ``names`` (default: both replicas) are eligible."""
    want = set(REPLICAS) if names is None else names
    wait_for(lambda: want <= eligible(engine), timeout, f"{sorted(want)} eligible")


def wait_ineligible(engine: rwsplit.RoutingEngine, names: set[str], timeout: float = 15.0) -> None:
    """Wait until none of ``names`` is eligible."""
    wait_for(lambda: not (names & eligible(engine)), timeout, f"{sorted(names)} not eligible")


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rwsplit.cli ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "rwsplit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def add_item(on_primary: Callable[..., Any], name: str, *labels: str) -> int:
    """Insert an Item (and its Parts) on the primary over an admin connection; return its id."""
    on_primary("INSERT INTO test_ru_item (name) VALUES (%s)", name)
    item_id = int(on_primary("SELECT id FROM test_ru_item WHERE name = %s", name))
    for label in labels:
        on_primary("INSERT INTO test_ru_part (item_id, label) VALUES (%s, %s)", item_id, label)
    return item_id


@contextlib.contextmanager
def created_tables(sandbox: Sandbox, metadata: sa.MetaData) -> Iterator[None]:
    """``metadata``'s tables on the primary, replicated (dropped first if a previous run left them),
    dropped at the end. No pooled connection is kept: tests kill and restart the primary in between."""
    eng = sa.create_engine(sandbox.primary_url, poolclass=sa.pool.NullPool)
    try:
        metadata.drop_all(eng)
        metadata.create_all(eng)
        sandbox.wait_caught_up(timeout=15)
        yield
        metadata.drop_all(eng)
    finally:
        eng.dispose()


def with_driver(url: str, driver: str) -> str:
    """A sandbox URL (password included) through another DBAPI driver: ``mysql+<driver>://…``."""
    backend = "mariadb" if driver == "mariadbconnector" else "mysql"
    return sa.make_url(url).set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def wait_on_its_own(monkeypatch: Any) -> None:
    """Causal waits run as SQLAlchemy statements of their own, as on a server without ``SET
    STATEMENT`` (MySQL): never sent with the read."""
    monkeypatch.setattr(rwsplit.flavor.Flavor, "wait_prefix", lambda self, position, timeout: None)
