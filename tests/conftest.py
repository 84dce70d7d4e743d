"""The sandbox fixtures (one real replication sandbox per test session) and the ``server`` marker.

tests/unit/ holds tests that need no server; tests/server/ the ones that use the sandbox. Every test
that uses the ``sandbox`` fixture (directly or through another fixture) or lives under tests/server/
is marked ``server``, so ``pytest -m "not server"`` starts no database server.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox

_HERE = Path(__file__).parent
_UNIT, _SERVER = _HERE / "unit", _HERE / "server"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark server tests; refuse a test under tests/unit/ that needs the sandbox."""
    for item in items:
        uses_sandbox = "sandbox" in getattr(item, "fixturenames", ())
        if uses_sandbox and item.path.is_relative_to(_UNIT):
            raise pytest.UsageError(f"{item.nodeid} needs the sandbox: move it to tests/server/")
        if uses_sandbox or item.path.is_relative_to(_SERVER):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """1 primary + 2 replicas of real ``mariadbd`` processes; missing binaries fail the tests."""
    sb = Sandbox(replicas=2)
    atexit.register(sb.down)
    with sb:
        yield sb


@pytest.fixture()
def caught_up(sandbox: Sandbox) -> Callable[..., None]:
    """Wait (``MASTER_GTID_WAIT``) until the replicas applied everything the primary has."""

    def wait(timeout: float = 15.0) -> None:
        sandbox.wait_caught_up(timeout=timeout)

    return wait


@contextlib.contextmanager
def _every_replica(
    sandbox: Sandbox, apply: Callable[[int], None], undo: Callable[[int], None]
) -> Iterator[None]:
    """Apply a change to both replicas once they are caught up; undo it and catch up afterwards."""
    sandbox.wait_caught_up(timeout=15)
    try:
        for r in (1, 2):
            apply(r)
        yield
    finally:
        for r in (1, 2):
            undo(r)
        sandbox.wait_caught_up(timeout=15)


@pytest.fixture()
def stale_replicas(sandbox: Sandbox) -> Iterator[None]:
    """Both replicas apply every event 30 s late (until teardown): any read they serve is stale."""
    with _every_replica(
        sandbox, lambda r: sandbox.delay_replica(r, 30), lambda r: sandbox.delay_replica(r, 0)
    ):
        yield


@pytest.fixture()
def paused_replicas(sandbox: Sandbox) -> Iterator[None]:
    """Both replicas stop applying (SQL threads stopped) until teardown: they become ineligible."""
    with _every_replica(sandbox, sandbox.pause_replica, sandbox.resume_replica):
        yield


@pytest.fixture()
def on_primary(sandbox: Sandbox) -> Callable[..., object]:
    """Run one statement on the primary over an admin connection (autocommit): row 1, column 1."""

    def run(sql: str, *args: object) -> object:
        with sandbox.connect("primary") as conn, conn.cursor() as cur:
            cur.execute(f"USE {sandbox.database}")
            cur.execute(sql, args)
            row = cur.fetchone() if cur.description else None
            return None if row is None else row[0]

    return run
