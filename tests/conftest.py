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
