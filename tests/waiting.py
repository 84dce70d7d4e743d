"""Polling with a deadline, shared by the tests that wait for servers or the monitor."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``predicate()`` became true; fails the test after ``timeout`` seconds."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start
