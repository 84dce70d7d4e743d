"""``create_engine`` rejects bad arguments up front, naming what is wrong and never the password."""

from __future__ import annotations

import time

import pytest

import rwsplit

PW = "s3cr3t-PW"


def _bad_cases() -> dict[str, tuple[dict[str, object], type[Exception] | tuple, tuple[str, ...]]]:
    p = f"mysql+pymysql://app:{PW}@127.0.0.1:1/app"
    r1 = f"mysql+pymysql://app:{PW}@127.0.0.1:2/app"
    r2 = f"mysql+pymysql://app:{PW}@127.0.0.1:3/app"
    both = (ValueError, TypeError)
    return {
        "invalid_url": (
            {"url": f"mysql+pymysql//app:{PW}@127.0.0.1/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "invalid_url_no_scheme": ({"url": f"app:{PW}@127.0.0.1/app", "replicas": [r1]}, both, ("mysql",)),
        "invalid_port": (
            {"url": f"mysql+pymysql://app:{PW}@127.0.0.1:33o6/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "invalid_replica_port": (
            {"url": p, "replicas": [f"mysql+pymysql://app:{PW}@127.0.0.1:x2/app"]},
            both,
            ("mysql",),
        ),
        "invalid_replica_url": ({"url": p, "replicas": [f"::{PW}::"]}, both, ("mysql",)),
        "postgresql_primary": (
            {"url": f"postgresql://app:{PW}@127.0.0.1/app", "replicas": [r1]},
            both,
            ("mysql",),
        ),
        "postgresql_replica": ({"url": p, "replicas": [f"postgresql://app:{PW}@h/app"]}, both, ("mysql",)),
        "sqlite_primary": ({"url": "sqlite://", "replicas": [r1]}, both, ("mysql",)),
        "bare_string_replicas": ({"url": p, "replicas": r1}, TypeError, ("list",)),
        "duplicate_replicas": ({"url": p, "replicas": [r1, r2, r1]}, both, ("replica",)),
        "duplicate_replicas_spelling": (
            {"url": p, "replicas": [r1, f"mysql+pymysql://other:{PW}@127.0.0.1:2/otherdb"]},
            both,
            ("replica",),
        ),
        "replica_is_primary": ({"url": p, "replicas": [r1, p]}, both, ("primary",)),
        "replica_is_primary_default_port": (
            {
                "url": f"mysql+pymysql://app:{PW}@DB1.example/app",
                "replicas": [f"mysql+pymysql://app:{PW}@db1.example:3306/app"],
            },
            both,
            ("primary",),
        ),
        "negative_max_lag": ({"url": p, "replicas": [r1], "max_lag": -1}, both, ("max_lag",)),
        "nan_max_lag": ({"url": p, "replicas": [r1], "max_lag": float("nan")}, both, ("max_lag",)),
        "string_max_lag": ({"url": p, "replicas": [r1], "max_lag": "1"}, both, ("max_lag",)),
        "unknown_read_your_writes": (
            {"url": p, "replicas": [r1], "read_your_writes": "always"},
            both,
            ("session", "transaction", "off"),
        ),
        "unknown_fallback": ({"url": p, "replicas": [r1], "fallback": "replica"}, both, ("primary", "error")),
        "unknown_balancer": (
            {"url": p, "replicas": [r1], "balancer": "fastest"},
            both,
            ("least_outstanding", "round_robin", "random", "weighted"),
        ),
        "weights_unknown_replica": (
            {"url": p, "replicas": [r1, r2], "weights": {"replica1": 1, "replica3": 2}},
            both,
            ("replica3", "replica1", "replica2"),
        ),
        "string_kernel_timeouts": (
            {"url": p, "replicas": [r1], "kernel_timeouts": "no"},
            TypeError,
            ("kernel_timeouts", "True or False"),
        ),
        "weights_keyed_by_url": (
            {"url": p, "replicas": [r1, r2], "weights": {r1: 3, r2: 1}},
            both,
            ("replica1", "replica2"),
        ),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_construction_arguments(case: str) -> None:
    kwargs, exc_type, words = BAD[case]
    kwargs = dict(kwargs)
    url = kwargs.pop("url")
    started = time.monotonic()
    with pytest.raises(exc_type) as err:
        rwsplit.create_engine(url, **kwargs)
    assert time.monotonic() - started < 1.0  # rejected up front, not after trying to connect
    message = str(err.value)
    for word in words:
        assert word in message, (word, message)
    assert PW not in message
    assert PW not in repr(err.value)
