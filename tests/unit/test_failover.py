"""rwsplit.failover without servers: Retry validates its bounds and is immutable."""

from __future__ import annotations

import pytest

from rwsplit.failover import Retry


@pytest.mark.parametrize(
    "kwargs",
    [{"replica_attempts": -1}, {"primary_attempts": 0}, {"backoff": -1}, {"primary_timeout": 0}],
)
def test_retry_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(**kwargs)


def test_retry_is_immutable() -> None:
    r = Retry()
    with pytest.raises(AttributeError):
        r.replica_attempts = 5  # type: ignore[misc]
