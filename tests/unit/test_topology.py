"""rwsplit.topology without servers: the lag timeline, eligibility rules, the breaker."""

from __future__ import annotations

import time

import pytest

from rwsplit.gtid import Position, parse_mariadb
from rwsplit.topology import Monitor, ServerSpec, ServerState, Snapshot, _eligible, _Timeline


def _pos(n: int) -> Position:
    return parse_mariadb(f"0-1-{n}")


def test_timeline_lag_interpolates_by_transaction_number() -> None:
    tl = _Timeline()
    for t, n in [(100.0, 10), (101.0, 20), (102.0, 30)]:
        tl.add(t, _pos(n))
    assert tl.lag(_pos(30), now=102.5) == 0.0
    assert tl.lag(_pos(40), now=102.5) == 0.0
    # seq 15 applied: the primary committed 16 at ~100.6, so 2.0 s stale at 102.6
    assert tl.lag(_pos(15), now=102.6) == pytest.approx(2.0)
    assert tl.lag(_pos(20), now=102.6) == pytest.approx(102.6 - 101.1)
    # older than the whole timeline: at least its span
    assert tl.lag(_pos(5), now=102.0) == pytest.approx(2.0)
    assert tl.lag(Position(), now=102.0) == pytest.approx(2.0)
    assert _Timeline().lag(_pos(1), now=5.0) is None


def test_timeline_takes_the_worst_domain() -> None:
    tl = _Timeline()
    tl.add(10.0, parse_mariadb("0-1-5,1-1-5"))
    tl.add(11.0, parse_mariadb("0-1-6,1-1-15"))
    assert tl.lag(parse_mariadb("0-1-6,1-1-5"), now=12.0) == pytest.approx(12.0 - 10.1)


def _replica(name: str, **kw: object) -> ServerState:
    base = dict(reachable=True, io_running=True, sql_running=True, lag=0.1)
    base.update(kw)
    return ServerState(name=name, role="replica", url="u", **base)  # type: ignore[arg-type]


def test_eligibility_rules() -> None:
    primary = ServerState(name="primary", role="primary", url="u", reachable=True)
    snap = Snapshot(
        primary,
        (
            _replica("ok"),
            _replica("laggy", lag=2.0),
            _replica("unknown", lag=None),
            _replica("down", reachable=False),
            _replica("sql_stopped", sql_running=False),
            _replica("io_stopped", io_running=False),
            _replica("tripped", tripped=True),
        ),
    )
    assert [r.name for r in snap.eligible(1.0)] == ["ok"]
    assert [r.name for r in snap.eligible(5.0)] == ["ok", "laggy"]
    assert [r.name for r in snap.eligible(0.05)] == []
    primary_down = Snapshot(
        ServerState(name="primary", role="primary", url="u", reachable=False), snap.replicas
    )
    assert [r.name for r in primary_down.eligible(1.0)] == ["ok", "io_stopped"]


def test_a_position_older_than_the_timeline_is_only_a_lower_bound() -> None:
    timeline = _Timeline()
    now = time.time()
    for i in range(5):  # the window holds samples from seq 1000 on: anything older is "at least"
        timeline.add(now - 5 + i, parse_mariadb(f"0-1-{1000 + i}"))
    lag, bound = timeline.measure(parse_mariadb("0-1-10"), now)  # hours behind, say
    assert bound and lag == pytest.approx(5.0, abs=0.01)
    lag, bound = timeline.measure(parse_mariadb("0-1-1002"), now)
    assert not bound and 0.0 < lag < 3.0
    assert timeline.measure(parse_mariadb("0-1-1004"), now) == (0.0, False)
    state = ServerState(
        name="r",
        role="replica",
        url="u",
        reachable=True,
        io_running=True,
        sql_running=True,
        lag=0.05,
        measured_at=time.time(),
        lag_lower_bound=True,
    )
    assert not _eligible(state, 300.0, False, 10.0)  # a lower bound never makes it eligible


def test_breaker_trips_are_forgotten_over_time() -> None:
    now = [1000.0]
    spec = ServerSpec(
        name="primary", role="primary", url="u", host="127.0.0.1", port=1, user="x", password=""
    )
    replica = ServerSpec(name="r1", role="replica", url="u", host="127.0.0.1", port=2, user="x", password="")
    monitor = Monitor(spec, [replica], clock=lambda: now[0])
    healthy = ServerState(
        name="r1", role="replica", url="u", reachable=True, io_running=True, sql_running=True, lag=0.0
    )
    for _ in range(4):
        monitor.mark_down("r1", "read failed")
    monitor._publish(healthy)
    assert monitor.snapshot().replica("r1").tripped  # four trips just now: eight healthy probes
    now[0] += 200  # three quiet minutes: three trips forgotten, one left
    monitor._publish(healthy)
    assert not monitor.snapshot().replica("r1").tripped
