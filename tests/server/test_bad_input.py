"""Bad input and misconfiguration against real servers: clear errors at construction, warnings at start."""

from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy as sa
from helpers import status_of as _row

import rwsplit
from rwsplit.sandbox import Sandbox


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_lag": -1}, ("max_lag",)),
        ({"max_lag": "fast"}, ("max_lag",)),
        ({"read_your_writes": "x"}, ("session", "transaction", "off")),
    ],
)
def test_bad_session_arguments(engine, sandbox: Sandbox, kwargs: dict, words: tuple[str, ...]) -> None:
    password = sa.make_url(sandbox.primary_url).password
    Session = rwsplit.sessionmaker(engine)
    with pytest.raises((ValueError, TypeError)) as err:
        Session(**kwargs)
    for word in words:
        assert word in str(err.value)
    assert password not in str(err.value)
    with pytest.raises((ValueError, TypeError)):
        engine.connect(**kwargs)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_replica_at_start_is_warned_and_skipped(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    url = sa.make_url(sandbox.replica_urls[0]).set(port=_closed_port())
    caplog.set_level(logging.WARNING, logger="rwsplit")
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[url, sandbox.replica_urls[1]])
    try:
        assert any("replica1" in m and "cannot serve reads at start" in m for m in caplog.messages)
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target == "replica2"
    finally:
        eng.dispose()


def test_a_replica_that_is_the_primary_is_refused(sandbox: Sandbox) -> None:
    alias = sa.make_url(sandbox.primary_url).set(host="localhost")
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[alias])
    try:
        row = _row(eng, "replica1")
        assert not row.eligible
        assert "primary itself" in row.error or "not a replica" in row.error
    finally:
        eng.dispose()


def test_a_writable_replica_is_warned(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rwsplit")
    with sandbox.connect(1) as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 0")
    try:
        eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls)
        eng.dispose()
        assert any("replica1" in m and "writable" in m for m in caplog.messages)
    finally:
        with sandbox.connect(1) as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 1")


@pytest.mark.parametrize(
    "build, exc, message",
    [
        (lambda p, r: rwsplit.create_engine(p, replicas=[r, r]), ValueError, "same server"),
        (lambda p, r: rwsplit.create_engine(p, replicas=[p]), ValueError, "same server as the primary"),
        (
            lambda p, r: rwsplit.create_engine("postgresql://u:S3cr3t-pw@h/db"),
            ValueError,
            "MySQL/MariaDB only",
        ),
        (lambda p, r: rwsplit.create_engine(p, replicas=r), TypeError, "not a single URL"),
        (
            lambda p, r: rwsplit.create_engine(p, replicas=[r], poolclass=sa.pool.NullPool, pool_size=5),
            TypeError,
            "pool_size",
        ),
    ],
)
def test_misconfigurations_fail_at_construction(sandbox: Sandbox, build, exc: type, message: str) -> None:
    password = sa.make_url(sandbox.primary_url).password
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(exc, match=message) as err:
        build(sandbox.primary_url, sandbox.replica_urls[0])
    assert password not in str(err.value) and "S3cr3t-pw" not in str(err.value)
    leaked = {t.name for t in threading.enumerate() if t.name.startswith("rwsplit-monitor")} - before
    assert not leaked
