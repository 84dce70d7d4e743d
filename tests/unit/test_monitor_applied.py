"""What causal waits prove, shared through the monitor: kept for the view it refines, and no longer.

No servers: the monitor is never started; its views are published by hand.
"""

from __future__ import annotations

import time
from dataclasses import replace

from rwsplit.balancer import RoundRobinBalancer
from rwsplit.causal import applied_position
from rwsplit.consistency_state import ConsistencyState
from rwsplit.flavor import MARIADB, MYSQL
from rwsplit.gtid import parse_mariadb, parse_mysql
from rwsplit.integrations import otel
from rwsplit.monitor import Monitor
from rwsplit.policy import RoutingPolicy
from rwsplit.router import Router
from rwsplit.state import ServerSpec, ServerState

G5, G7, G9 = parse_mariadb("0-1-5"), parse_mariadb("0-1-7"), parse_mariadb("0-1-9")


def _spec(name: str, role: str, port: int) -> ServerSpec:
    return ServerSpec(name=name, role=role, url="u", host="127.0.0.1", port=port, user="x", password="")


def _monitor() -> Monitor:
    """A monitor (not started) whose replicas r1, r2 are eligible and were last seen at 0-1-5."""
    monitor = Monitor(_spec("primary", "primary", 1), [_spec("r1", "replica", 2), _spec("r2", "replica", 3)])
    monitor._publish(ServerState(name="primary", role="primary", url="u", reachable=True, position=G9))
    for name in ("r1", "r2"):
        monitor._publish(_seen(name, G5))
    return monitor


def _seen(name: str, position: object) -> ServerState:
    return ServerState(
        name=name,
        role="replica",
        url="u",
        reachable=True,
        io_running=True,
        sql_running=True,
        lag=0.0,
        position=position,  # type: ignore[arg-type]
    )


def test_the_wait_statement_also_reads_what_the_replica_applied() -> None:
    assert MARIADB.applied_wait_sql(":p", ":t") == "SELECT MASTER_GTID_WAIT(:p, :t), @@GLOBAL.gtid_slave_pos"
    assert MYSQL.applied_wait_sql() == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s), @@GLOBAL.gtid_executed"
    # The OpenTelemetry integration recognises a wait by how its statement starts.
    assert MARIADB.applied_wait_sql().startswith(otel._WAITS)
    assert MYSQL.applied_wait_sql().startswith(otel._WAITS)


def test_what_a_wait_read_is_parsed_whatever_the_driver_gave() -> None:
    assert applied_position(MARIADB, "0-1-7,1-2-3") == parse_mariadb("0-1-7,1-2-3")
    assert applied_position(MARIADB, b"0-1-7") == G7  # a driver that returns bytes
    assert applied_position(MARIADB, "0-1-5", G9) == G9  # reached: at least the position waited for
    assert applied_position(MARIADB, "0-1-9", G5) == G9
    for unreadable in (None, "", "not a gtid", 7, b"\xff"):
        assert applied_position(MARIADB, unreadable) == parse_mariadb("")
        assert applied_position(MARIADB, unreadable, G7) == G7
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert applied_position(MYSQL, f"{uuid}:1-5:7-9") == parse_mysql(f"{uuid}:1-5")  # gap-free only


def test_a_proof_holds_for_the_view_it_refines_and_grows() -> None:
    monitor = _monitor()
    r1 = monitor.snapshot().by_name["r1"]
    assert not monitor.applied_covers(r1, G7)
    monitor.applied(r1, G7)
    assert monitor.applied_covers(r1, G7)
    assert monitor.applied_covers(r1, G5)
    assert not monitor.applied_covers(r1, G9)
    monitor.applied(r1, G5)  # a lesser proof later: the greater one stands
    assert monitor.applied_covers(r1, G7)
    other = parse_mariadb("0-1-9,1-2-3")
    monitor.applied(r1, other)
    assert monitor.applied_covers(r1, other)
    assert not monitor.applied_covers(monitor.snapshot().by_name["r2"], G7)  # per replica


def test_a_probe_or_a_mark_down_ends_what_waits_proved() -> None:
    monitor = _monitor()
    r1 = monitor.snapshot().by_name["r1"]
    monitor.applied(r1, G9)
    monitor._publish(_seen("r1", G5))  # the next probe of r1 (however it saw r1)
    assert not monitor.applied_covers(monitor.snapshot().by_name["r1"], G7)
    r1 = monitor.snapshot().by_name["r1"]
    monitor.applied(r1, G9)
    monitor._publish(_seen("r2", G5))  # another replica's probe leaves r1's view, and its proof
    assert monitor.applied_covers(monitor.snapshot().by_name["r1"], G9)
    monitor.mark_down("r1", "read failed")
    assert not monitor.applied_covers(monitor.snapshot().by_name["r1"], G7)


def test_a_wait_that_outlived_its_view_proves_nothing() -> None:
    monitor = _monitor()
    before = monitor.snapshot().by_name["r1"]
    monitor._publish(_seen("r1", G5))  # probed while the wait ran
    monitor.applied(before, G9)
    assert not monitor.applied_covers(monitor.snapshot().by_name["r1"], G7)
    assert not monitor.applied_covers(before, G7)
    monitor.applied(monitor.snapshot().by_name["r1"], parse_mariadb(""))  # an empty proof is none
    assert monitor._applied == {}


def test_a_fork_forgets_the_parents_proofs() -> None:
    monitor = _monitor()
    r1 = monitor.snapshot().by_name["r1"]
    monitor.applied(r1, G9)
    monitor._after_fork()
    assert monitor._applied == {}


def _router(monitor: Monitor) -> Router:
    return Router(RoutingPolicy(read_your_writes="causal"), monitor, RoundRobinBalancer(), lambda name: 0)


def test_a_causal_read_skips_its_wait_where_another_sessions_wait_proved_the_position() -> None:
    monitor = _monitor()
    router = _router(monitor)
    state = ConsistencyState("causal", 1.0)
    state.advance(G7)
    first = router.causal_replica(state, 1.0, state.required(), "read")
    assert first.wait_for == G7  # the monitor saw both replicas at 0-1-5
    monitor.applied(monitor.snapshot().by_name["r2"], G9)  # another session's wait on r2
    state.drop_replica()
    second = router.causal_replica(state, 1.0, state.required(), "read")
    assert second.target == "r2" and second.wait_for is None
    # The session keeps r2 while the proof covers it; past the proof it waits again.
    state.advance(parse_mariadb("0-1-12"))
    third = router.causal_replica(state, 1.0, state.required(), "read")
    assert third.wait_for == parse_mariadb("0-1-12")


def test_a_proof_never_makes_an_ineligible_replica_serve() -> None:
    monitor = _monitor()
    router = _router(monitor)
    monitor._publish(replace(_seen("r1", G5), measured_at=time.time() - 3600))  # its reading went stale
    r1 = monitor.snapshot().by_name["r1"]
    monitor.applied(r1, G9)
    assert monitor.applied_covers(monitor.snapshot().by_name["r1"], G9)  # the proof stands, r1 is out
    state = ConsistencyState("causal", 1.0)
    state.advance(G7)
    decision = router.causal_replica(state, 1.0, state.required(), "read")
    assert decision.target == "r2" and decision.wait_for == G7
    state.replica_failed("r2")
    assert router.causal_replica(state, 1.0, state.required(), "read").target == "primary"
