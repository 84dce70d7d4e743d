"""rwsplit.policy: settings validation, Retry, the consistency state per mode."""

from __future__ import annotations

import pytest

from rwsplit.policy import ConsistencyState, Retry, RoutingPolicy


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


def test_consistency_state_modes() -> None:
    s = ConsistencyState("session", 1.0)
    assert s.primary_reason() is None
    s.wrote()
    assert "transaction" in s.primary_reason()
    s.transaction_ended()
    assert "session wrote" in s.primary_reason()
    s.reset()
    assert s.primary_reason() is None
    t = ConsistencyState("transaction", 1.0)
    t.wrote()
    t.transaction_ended()
    assert t.primary_reason() is None
    o = ConsistencyState("off", 1.0)
    o.forced += 1
    assert o.primary_reason() == "use_primary block"
