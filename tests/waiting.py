"""Polling with a deadline, shared by the tests that wait for servers or the monitor."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> float:
    """Seconds until ``predicate()`` became true; fails the test (naming ``what``) after ``timeout`` s."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start
