"""rwsplit.monitor without servers: the breaker forgets trips over time."""

from __future__ import annotations

from rwsplit.monitor import Monitor
from rwsplit.state import ServerSpec, ServerState


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
