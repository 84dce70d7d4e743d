"""rwsplit.policy: RoutingPolicy validates its settings."""

from __future__ import annotations

import pytest

from rwsplit.policy import RoutingPolicy


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
