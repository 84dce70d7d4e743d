"""rwsplit.timeline: lag from the primary's commit timeline, exact or a lower bound."""

from __future__ import annotations

import dataclasses
import time

import pytest

from rwsplit.gtid import Position, parse_mariadb
from rwsplit.state import ServerState, Snapshot
from rwsplit.timeline import Timeline


def _pos(n: int) -> Position:
    return parse_mariadb(f"0-1-{n}")


def test_timeline_lag_interpolates_by_transaction_number() -> None:
    tl = Timeline()
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
    assert Timeline().lag(_pos(1), now=5.0) is None


def test_timeline_takes_the_worst_domain() -> None:
    tl = Timeline()
    tl.add(10.0, parse_mariadb("0-1-5,1-1-5"))
    tl.add(11.0, parse_mariadb("0-1-6,1-1-15"))
    assert tl.lag(parse_mariadb("0-1-6,1-1-5"), now=12.0) == pytest.approx(12.0 - 10.1)


def test_a_position_older_than_the_timeline_is_only_a_lower_bound() -> None:
    timeline = Timeline()
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
    primary = ServerState(name="p", role="primary", url="u", reachable=True)
    snapshot = Snapshot(primary, (state,), stale_after=10.0)
    assert not snapshot.is_eligible("r", 300.0)  # a lower bound never makes it eligible
    exact = dataclasses.replace(state, lag_lower_bound=False)
    assert Snapshot(primary, (exact,), stale_after=10.0).is_eligible("r", 300.0)
