"""rwsplit.policy: settings validation and Retry."""

from __future__ import annotations

import pytest

from rwsplit.policy import Retry, RoutingPolicy


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"max_lag": -1}, ValueError, "max_lag must be"),
        ({"max_lag": "1"}, TypeError, "max_lag must be a number"),
        ({"max_lag": float("nan")}, ValueError, "max_lag"),
        ({"max_lag": True}, TypeError, "max_lag"),
        ({"read_your_writes": "always"}, ValueError, "accepted: 'session', 'transaction', 'off'"),
        ({"fallback": "replica"}, ValueError, "accepted: 'primary', 'error'"),
        ({"pin_window": -0.1}, ValueError, "pin_window"),
        ({"retry": 3}, TypeError, "rwsplit.Retry"),
    ],
)
def test_policy_validation(kwargs: dict, exc: type, message: str) -> None:
    with pytest.raises(exc, match=message):
        RoutingPolicy(**kwargs)


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
