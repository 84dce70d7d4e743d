"""Shared fixtures: one real replication sandbox per test session, torn down whatever happens."""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator

import pytest

from rwsplit.sandbox import Sandbox


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


@pytest.fixture()
def stale_replicas(sandbox: Sandbox, caught_up) -> Iterator[None]:
    """Both replicas apply every event 30 s late (until teardown): any read they serve is stale."""
    caught_up()
    try:
        for r in (1, 2):
            sandbox.delay_replica(r, 30)
        yield
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        caught_up()
